"""Honesty tests of the ranking metrics and the bootstrap (SPEC §7, issue 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from components.core.bootstrap import bootstrap_ci, paired_bootstrap
from components.core.metrics import coverage_at_k, ndcg_at_k, recall_at_k
from components.core.ranking import pessimistic_ranks, rank_all, ranks_from_embeddings

torch.set_num_threads(1)


def brute_force_rank(scores: np.ndarray, target: int, excluded: set[int] = frozenset()) -> int:
    """Obviously-correct reference: real items (not padding, not excluded, not the target)
    scoring at least as high as the target."""
    return sum(
        1
        for item in range(1, len(scores))
        if item != target and item not in excluded and scores[item] >= scores[target]
    )


def brute_force_recall(rank: int, k: int) -> float:
    return 1.0 if rank < k else 0.0


def brute_force_ndcg(rank: int, k: int) -> float:
    # DCG of one relevant item at 1-based position rank+1; ideal DCG = 1
    return 1.0 / math.log2(rank + 2) if rank < k else 0.0


def test_constant_scores_rank_every_target_last():
    n_users, n_items = 50, 200
    scores = torch.zeros(n_users, n_items + 1)
    targets = torch.randint(1, n_items + 1, (n_users,))
    ranks = pessimistic_ranks(scores, targets).numpy()
    assert (ranks == n_items - 1).all()
    assert recall_at_k(ranks, 10).mean() == 0.0
    assert ndcg_at_k(ranks, 10).mean() == 0.0


def test_target_scored_highest_gets_perfect_metrics():
    n_users, n_items = 40, 100
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(n_users, n_items + 1, generator=generator)
    targets = torch.randint(1, n_items + 1, (n_users,), generator=generator)
    scores[torch.arange(n_users), targets] = 2.0
    scores[:, 0] = 10.0  # the padding item never competes, whatever its score
    ranks = pessimistic_ranks(scores, targets).numpy()
    assert (ranks == 0).all()
    assert recall_at_k(ranks, 10).mean() == 1.0
    assert ndcg_at_k(ranks, 10).mean() == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_brute_force_reference_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 60, 40
    # few distinct values → many ties, the case where rank conventions differ
    scores = rng.integers(0, 6, size=(n_users, n_items + 1)).astype(np.float32)
    targets = rng.integers(1, n_items + 1, size=n_users)
    excluded = rng.random((n_users, n_items + 1)) < 0.2
    for exclude in (None, excluded):
        got = pessimistic_ranks(
            torch.from_numpy(scores),
            torch.from_numpy(targets),
            None if exclude is None else torch.from_numpy(exclude),
        ).numpy()
        expected = [
            brute_force_rank(
                scores[u],
                targets[u],
                set() if exclude is None else set(np.flatnonzero(exclude[u])) - {targets[u]},
            )
            for u in range(n_users)
        ]
        assert got.tolist() == expected
        for k in (1, 5, 10, 20):
            assert recall_at_k(got, k).tolist() == [brute_force_recall(r, k) for r in expected]
            assert ndcg_at_k(got, k).tolist() == [brute_force_ndcg(r, k) for r in expected]


def test_permuting_item_order_changes_no_metric():
    rng = np.random.default_rng(3)
    n_users, n_items = 80, 50
    scores = rng.integers(0, 8, size=(n_users, n_items + 1)).astype(np.float32)
    targets = rng.integers(1, n_items + 1, size=n_users)
    permutation = np.concatenate([[0], rng.permutation(np.arange(1, n_items + 1))])
    # new column j holds old item permutation[j]; the target moves with its item
    inverse = np.argsort(permutation)
    permuted_scores = scores[:, permutation]
    permuted_targets = inverse[targets]

    def ranks_and_top(s, t):
        ranks, top = rank_all(
            lambda rows: torch.from_numpy(s[rows].copy()),
            torch.from_numpy(t),
            n_items + 1,
            topk=10,
        )
        return ranks.numpy(), top.numpy()

    ranks, top = ranks_and_top(scores, targets)
    permuted_ranks, permuted_top = ranks_and_top(permuted_scores, permuted_targets)
    assert ranks.tolist() == permuted_ranks.tolist()
    for k in (10, 20):
        assert recall_at_k(ranks, k).tolist() == recall_at_k(permuted_ranks, k).tolist()
        assert ndcg_at_k(ranks, k).tolist() == ndcg_at_k(permuted_ranks, k).tolist()
    # top-10 with distinct scores is a set of items: the same items after mapping back
    distinct = rng.permutation(n_users * (n_items + 1)).reshape(n_users, n_items + 1)
    _, top = ranks_and_top(distinct.astype(np.float64), targets)
    _, permuted_top = ranks_and_top(distinct[:, permutation].astype(np.float64), permuted_targets)
    assert (permutation[permuted_top] == top).all()
    assert coverage_at_k(top, n_items, 10) == coverage_at_k(permuted_top, n_items, 10)


def test_blocked_ranking_equals_one_block_for_any_block_size():
    generator = torch.Generator().manual_seed(5)
    n_users, n_items, dim = 37, 29, 6
    states = torch.randn(n_users, dim, generator=generator)
    items = torch.randn(n_items + 1, dim, generator=generator)
    targets = torch.randint(1, n_items + 1, (n_users,), generator=generator)
    reference = pessimistic_ranks(states @ items.T, targets)
    for block in (1, n_items + 1, 7 * (n_items + 1), 10**9):
        got, top = ranks_from_embeddings(states, items, targets, max_scores_per_block=block)
        assert torch.equal(got, reference) and top is None


def test_exclusion_never_removes_the_target_and_shrinks_ranks():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0]])  # items 1..4
    target = torch.tensor([3])
    assert pessimistic_ranks(scores, target).item() == 2
    exclude = torch.tensor([[False, True, False, True, False]])  # item 1 and the target itself
    assert pessimistic_ranks(scores, target, exclude).item() == 1


def test_unscorable_target_ranks_last():
    scores = torch.tensor([[0.0, 1.0, float("nan"), 3.0], [0.0, -torch.inf, 1.0, 2.0]])
    targets = torch.tensor([2, 1])
    assert pessimistic_ranks(scores, targets).tolist() == [2, 2]


def test_rank_values_at_the_cut_off():
    ranks = np.array([0, 1, 9, 10, 500])
    assert recall_at_k(ranks, 10).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    expected = [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0]
    assert ndcg_at_k(ranks, 10) == pytest.approx(expected, abs=1e-15)


def test_coverage_counts_distinct_real_items():
    top = np.array([[1, 2, 3], [1, 2, 4], [2, 5, 0]])
    assert coverage_at_k(top, 10, 3) == 0.5
    assert coverage_at_k(top, 10, 1) == 0.2


def test_bootstrap_ci_contains_point_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 500, 5000):
        values = (rng.random(n) < 0.3).astype(float)
        low, high = bootstrap_ci(values, n_boot=500, seed=1)
        assert low <= values.mean() <= high
        assert low < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # ~1/sqrt(n): 100x the users → about a tenth of the width
    assert 0.05 < widths[2] / widths[0] < 0.2


def test_bootstrap_is_seeded_and_resamples_metrics_jointly():
    rng = np.random.default_rng(1)
    values = rng.random((300, 2))
    a = bootstrap_ci(values, n_boot=200, seed=7)
    b = bootstrap_ci(values, n_boot=200, seed=7, max_elements=1000)  # other chunking, same draws
    c = bootstrap_ci(values, n_boot=200, seed=8)
    assert a.shape == (2, 2)
    np.testing.assert_allclose(a, b)
    assert not np.allclose(a, c)
    assert np.isnan(bootstrap_ci(np.array([]), n_boot=10)).all()
    assert np.isnan(bootstrap_ci(values[:, 0], n_boot=0)).all()


def test_paired_bootstrap_of_a_variant_against_itself_is_zero():
    values = (np.random.default_rng(2).random(400) < 0.2).astype(float)
    result = paired_bootstrap(values, values.copy(), n_boot=300, seed=0)
    assert result["delta"] == 0.0
    assert result["delta_ci"] == [0.0, 0.0]
    assert result["lift"] == 0.0
    assert result["lift_ci"] == [0.0, 0.0]
    assert result["significant"] is False


def test_paired_bootstrap_detects_a_consistent_gain_and_reports_lift():
    rng = np.random.default_rng(3)
    baseline = (rng.random(2000) < 0.2).astype(float)
    variant = baseline.copy()
    flip = (baseline == 0) & (rng.random(2000) < 0.1)  # the variant adds hits, loses none
    variant[flip] = 1.0
    result = paired_bootstrap(variant, baseline, n_boot=500, seed=0)
    assert result["significant"] is True
    assert result["delta_ci"][0] > 0
    assert result["lift"] == pytest.approx(variant.mean() / baseline.mean() - 1)
    assert result["lift_ci"][0] <= result["lift"] <= result["lift_ci"][1]
    # pairing matters: the shared users' noise cancels, so the delta CI is far narrower than
    # the CI of a difference of two independent means would be
    widths = [np.subtract(*bootstrap_ci(v, n_boot=500, seed=0)[::-1]) for v in (variant, baseline)]
    assert result["delta_ci"][1] - result["delta_ci"][0] < 0.6 * np.hypot(*widths)


def test_paired_bootstrap_with_zero_baseline_has_no_lift():
    result = paired_bootstrap(np.array([0.0, 1.0]), np.zeros(2), n_boot=50, seed=0)
    assert math.isnan(result["lift"])
    assert all(math.isnan(v) for v in result["lift_ci"])


def test_fast_bootstrap_matches_resampling_users_directly():
    # rank metrics have few distinct values: bootstrap_ci draws per-value counts instead of
    # user indices; its CI must match plain index resampling (same distribution)
    rng = np.random.default_rng(4)
    ranks = rng.geometric(0.08, size=3000) - 1
    values = np.stack([recall_at_k(ranks, 10), ndcg_at_k(ranks, 10)], axis=1)
    fast = bootstrap_ci(values, n_boot=4000, seed=0)
    idx = np.random.default_rng(1).integers(0, len(values), size=(4000, len(values)))
    direct = np.percentile(values[idx].mean(axis=1), [2.5, 97.5], axis=0).T
    np.testing.assert_allclose(fast, direct, atol=0.004)
    assert (fast[:, 0] < values.mean(axis=0)).all() and (values.mean(axis=0) < fast[:, 1]).all()
