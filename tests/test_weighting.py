"""The weighting library (SPEC §5): invariants of the schemes and the per-example weight lookup."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.core.weighting import (
    PARAMETER_NAMES,
    SCHEMES,
    DomainWeighter,
    composite_weights,
    default_fixed_domains,
    ema_update,
    fixed_weights,
    idf_from_counts,
    inverse_weights,
    load_weights,
    rescale_to_mean_one,
    resolve_spec,
)
from components.errors import ConfigError, InputError

torch.set_num_threads(1)

W_MIN, W_MAX = 0.5, 5.0
# the machine is shared: no per-example deadline; 60 examples keep the file fast
relaxed = settings(deadline=None, max_examples=60)
counts_lists = st.lists(st.integers(0, 10**6), min_size=1, max_size=12).filter(lambda c: sum(c) > 0)


def make_weights(counts: dict[str, int], **params) -> dict:
    """A minimal, valid weights.json document for domains with train counts ``counts``."""
    domains = list(counts)
    n = np.array([counts[d] for d in domains], dtype=float)
    share = n / n.sum()
    idf = idf_from_counts(n)
    return {
        "version": 1,
        "dataset": {"n_items": 0, "n_users": 0, "interactions_sha256": None},
        "domains": domains,
        "params": {"fixed_domains": [domains[0]], **params},
        "targets": {},
        "domain_counts": dict(counts),
        "domain_stats": {
            d: {
                "n": counts[d],
                "share": float(share[k]),
                "idf": float(idf[k]) if np.isfinite(idf[k]) else None,
                "user_ratio": 0.2 + 0.1 * k if counts[d] else 0.0,
                "entropy": 0.9 if counts[d] else None,
            }
            for k, d in enumerate(domains)
        },
        "power_thresholds": [0.5, 0.2],
    }


# Three domains, rare → common; item 1: rare, 2: mid, 3: common, 4: rare+common, 5: all three.
COUNTS = {"rare": 10, "mid": 100, "common": 1000}
ITEM_DOMAINS = [[], ["rare"], ["mid"], ["common"], ["rare", "common"], ["rare", "mid", "common"]]


def weighter(scheme: str = "inverse", counts=None, item_domains=None, **given) -> DomainWeighter:
    """The weighter of ``scheme``: weights.json's params, each replaced by one in ``given``."""
    return DomainWeighter.from_weights(
        make_weights(counts or COUNTS), item_domains or ITEM_DOMAINS, scheme, **given
    )


# ---- pure maths -----------------------------------------------------------------------------


@relaxed
@given(counts_lists, st.floats(0.0, 3.0))
def test_inverse_weights_stay_within_bounds_and_inactive_domains_get_one(counts, gamma):
    counts = np.array(counts, dtype=float)
    weights = inverse_weights(counts / counts.sum(), gamma, W_MIN, W_MAX)
    active = counts > 0
    assert np.all(weights[active] >= W_MIN) and np.all(weights[active] <= W_MAX)
    assert np.all(weights[~active] == 1.0)


@relaxed
@given(counts_lists, st.floats(0.0, 3.0))
def test_sparser_domain_never_gets_a_smaller_inverse_weight(counts, gamma):
    counts = np.array(counts, dtype=float)
    weights = inverse_weights(counts / counts.sum(), gamma, W_MIN, W_MAX)
    active = np.flatnonzero(counts > 0)
    order = active[np.argsort(counts[active], kind="stable")]  # sparsest first
    assert np.all(np.diff(weights[order]) <= 1e-12)


@relaxed
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=12), st.data())
def test_rescale_gives_an_interaction_weighted_mean_of_one(weights, data):
    counts = data.draw(
        st.lists(st.integers(1, 10**6), min_size=len(weights), max_size=len(weights))
    )
    rescaled = rescale_to_mean_one(weights, counts)
    assert np.dot(counts, rescaled) / np.sum(counts) == pytest.approx(1.0, abs=1e-9)


@relaxed
@given(counts_lists, st.floats(0.1, 2.0))
def test_inverse_weights_are_the_reclipped_mean_one_rescale(counts, gamma):
    counts = np.array(counts, dtype=float)
    active = counts > 0
    shares = counts / counts.sum()
    raw = np.clip((1.0 / active.sum() / shares[active]) ** gamma, W_MIN, W_MAX)
    before_reclip = rescale_to_mean_one(raw, counts[active])
    assert np.dot(counts[active], before_reclip) / counts.sum() == pytest.approx(1.0, abs=1e-9)
    weights = inverse_weights(shares, gamma, W_MIN, W_MAX)
    np.testing.assert_allclose(weights[active], np.clip(before_reclip, W_MIN, W_MAX), rtol=1e-12)


def test_inverse_weights_hand_computed():
    shares = np.array([0.1, 0.3, 0.6])
    raw = np.sqrt((1 / 3) / shares)  # 1.8257, 1.0541, 0.7454: inside the bounds
    expected = raw / np.dot(shares, raw)
    np.testing.assert_allclose(inverse_weights(shares, 0.5, W_MIN, W_MAX), expected, rtol=1e-12)
    # a tight upper bound clips the rare domain before and after the rescale
    clipped = inverse_weights(shares, 0.5, W_MIN, 1.2)
    assert clipped.max() == 1.2 and clipped[0] == 1.2


@relaxed
@given(counts_lists, st.lists(counts_lists, min_size=1, max_size=8), st.floats(0.0, 0.99))
def test_dynamic_weights_stay_within_bounds_after_every_update(start, updates, beta):
    n = len(start)
    weights = np.ones(n)
    for counts in updates:
        counts = np.resize(np.array(counts, dtype=float), n)
        counts[0] += 1  # a positive total; other domains may be unseen (count 0)
        target = inverse_weights(counts / counts.sum(), 2.0, 0.0001, 1e6)  # wild targets
        weights = ema_update(weights, target, beta, W_MIN, W_MAX)
        assert np.all(weights >= W_MIN) and np.all(weights <= W_MAX)


@relaxed
@given(st.floats(W_MIN, W_MAX), st.floats(0.0, 0.99), st.integers(1, 60))
def test_ema_approaches_the_target_geometrically(target, beta, steps):
    w = np.array([1.0])
    for k in range(1, steps + 1):
        w = ema_update(w, np.array([target]), beta, W_MIN, W_MAX)
        assert abs(w[0] - target) <= beta**k * abs(1.0 - target) + 1e-12


@relaxed
@given(st.floats(1e-3, 50.0), st.floats(0.0, 0.99), st.integers(1, 60))
def test_ema_with_loose_bounds_is_exactly_geometric(target, beta, steps):
    w = np.array([1.0])
    for _ in range(steps):
        w = ema_update(w, np.array([target]), beta, 1e-6, 1e6)
    assert w[0] - target == pytest.approx(beta**steps * (1.0 - target), abs=1e-9)


def test_composite_weights_hand_computed():
    idf = np.array([np.log(10), np.log(2), np.log(10 / 7)])
    user_ratio = np.array([0.1, 0.5, 0.9])
    entropy = np.array([0.5, 0.8, 0.9])
    # every term normalises to (1, x, 0), so S is a weighted sum of known values
    idf_hat = (idf - idf.min()) / (idf.max() - idf.min())
    s = 0.6 * idf_hat + 0.3 * np.array([1.0, 0.5, 0.0]) + 0.1 * np.array([1.0, 0.25, 0.0])
    expected = np.clip(1 + 0.5 * (s - s.mean()) / s.std(), W_MIN, W_MAX)
    np.testing.assert_allclose(composite_weights(idf, user_ratio, entropy), expected, rtol=1e-12)
    # inactive domains get 1 and do not enter the z-scores
    four = composite_weights(np.r_[idf, np.inf], np.r_[user_ratio, 0.0], np.r_[entropy, np.nan])
    np.testing.assert_allclose(four, np.r_[expected, 1.0], rtol=1e-12)


@relaxed
@given(counts_lists)
def test_composite_on_idf_alone_is_monotone_and_bounded(counts):
    counts = np.array(counts, dtype=float)
    idf = idf_from_counts(counts)
    n = len(counts)
    weights = composite_weights(idf, np.zeros(n), np.zeros(n), (1.0, 0.0, 0.0), 0.5)
    active = np.flatnonzero(counts > 0)
    order = active[np.argsort(counts[active], kind="stable")]
    assert np.all(np.diff(weights[order]) <= 1e-12)
    assert np.all((weights >= W_MIN) & (weights <= W_MAX))


def test_fixed_weights_and_unknown_domain_lists_the_existing_ones():
    np.testing.assert_array_equal(fixed_weights(["a", "b", "c"], ["b"], 2.0), [1.0, 2.0, 1.0])
    with pytest.raises(ConfigError, match=r"unknown domain\(s\) \['zzz'\].*\['a', 'b', 'c'\]"):
        fixed_weights(["a", "b", "c"], ["zzz"])


def test_default_fixed_domains_are_the_clearly_sparse_ones():
    names = ["a", "b", "c", "d", "e"]
    assert default_fixed_domains(names, [1, 2, 100, 100, 0]) == ["a", "b"]
    # balanced domains: none below half the uniform share, so the single sparsest
    assert default_fixed_domains(names[:3], [30, 31, 32]) == ["a"]


# ---- the weighter ---------------------------------------------------------------------------


def test_none_gives_exactly_one_for_every_real_item_and_zero_for_padding():
    targets = torch.tensor([[0, 1, 2, 3], [4, 5, 0, 1]])
    omega = weighter("none").example_weights(targets)
    assert omega.dtype == torch.float32 and omega.shape == targets.shape
    assert torch.equal(omega, (targets != 0).float())


def test_example_weights_are_the_mean_or_max_of_the_item_domains():
    for agg, combine in (("mean", np.mean), ("max", np.max)):
        w = weighter("inverse", agg=agg)
        domain_w = w.current_weights()
        targets = torch.arange(len(ITEM_DOMAINS)).reshape(2, 3)
        omega = w.example_weights(targets).flatten().tolist()
        expected = [0.0] + [combine([domain_w[d] for d in ds]) for ds in ITEM_DOMAINS[1:]]
        np.testing.assert_allclose(omega, expected, rtol=1e-6)
    assert domain_w["rare"] > domain_w["mid"] > domain_w["common"]


def test_example_weights_keep_shape_and_device_and_reuse_the_lookup():
    w = weighter("fixed")
    targets = torch.tensor([[1, 3, 0], [4, 2, 5]], dtype=torch.long)
    first = w.example_weights(targets)
    assert first.shape == (2, 3) and first.device == targets.device
    expected = torch.tensor([[2.0, 1.0, 0.0], [1.5, 1.0, 4 / 3]])  # fixed 2.0 on "rare"
    assert torch.equal(first, expected)
    lookup = w._lookup_on(targets.device)
    w.example_weights(targets[0])
    assert w._lookup_on(targets.device) is lookup  # cached: no rebuild when weights unchanged


def test_dynamic_starts_at_one_and_moves_toward_the_target_each_epoch():
    w = weighter("dynamic", beta=0.5)
    assert all(v == 1.0 for v in w.current_weights().values())
    target = dict(zip(w.domains, w.target_weights(), strict=True))
    before = w.example_weights(torch.tensor([1]))
    assert w.step_end(epoch=1, step=10) is False  # per-epoch mode: steps do nothing
    assert w.epoch_end(epoch=1, step=10) is True
    for d, value in w.current_weights().items():
        assert value == pytest.approx(0.5 * 1.0 + 0.5 * target[d])
    after = w.example_weights(torch.tensor([1]))
    assert after.item() == pytest.approx(w.current_weights()["rare"]) and after != before
    assert [h["event"] for h in w.history] == ["init", "epoch"]
    assert w.history[1]["weights"] == w.current_weights()


def test_dynamic_every_k_steps_uses_the_running_counts_of_targets_seen():
    w = weighter("dynamic", beta=0.5, update_every_steps=2)
    # targets seen: items 1 (rare) ×5, 2 (mid) ×5, 3 (common) ×10, padding ignored
    w.observe(torch.tensor([[0, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 0]]))
    w.observe(torch.full((10,), 3))
    np.testing.assert_array_equal(w.running_domain_counts(), [5, 5, 10])
    assert w.step_end(epoch=0, step=1) is False
    assert w.step_end(epoch=0, step=2) is True
    assert w.epoch_end(epoch=0, step=2) is False  # K-step mode: epochs do nothing
    target = inverse_weights(np.array([5, 5, 10]) / 20, 0.5, W_MIN, W_MAX)
    np.testing.assert_allclose(list(w.current_weights().values()), 0.5 + 0.5 * target)
    assert w.history[-1]["step"] == 2 and w.history[-1]["event"] == "step"


def test_dynamic_uses_the_stats_target_until_every_domain_was_seen():
    w = weighter("dynamic", beta=0.0, update_every_steps=1)
    w.observe(torch.tensor([3, 3, 3]))  # only "common" seen so far
    w.step_end(epoch=0, step=1)
    np.testing.assert_allclose(list(w.current_weights().values()), w.target_weights())


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=20), min_size=1, max_size=10),
    st.sampled_from(["inverse", "composite"]),
)
def test_weighter_dynamic_stays_within_bounds_for_any_targets_seen(batches, target):
    w = weighter("dynamic", update_every_steps=1, beta=0.3, target=target, w_min=0.8, w_max=1.5)
    for step, batch in enumerate(batches, start=1):
        w.observe(torch.tensor(batch))
        w.step_end(epoch=0, step=step)
        values = np.array(list(w.current_weights().values()))
        assert np.all((values >= 0.8) & (values <= 1.5))
        omega = w.example_weights(torch.arange(1, len(ITEM_DOMAINS)))
        assert torch.all((omega >= 0.8 - 1e-6) & (omega <= 1.5 + 1e-6))


def test_domain_without_train_interactions_keeps_weight_one():
    counts = {"rare": 10, "common": 1000, "empty": 0}
    items = [[], ["rare"], ["common"], ["empty"]]
    for scheme in ("inverse", "dynamic"):
        for target in ("inverse", "composite"):
            w = weighter(
                scheme, counts=counts, item_domains=items, target=target, update_every_steps=1
            )
            w.observe(torch.tensor([1, 2, 3]))
            w.step_end(0, 1)
            assert w.current_weights()["empty"] == 1.0
            assert w.example_weights(torch.tensor([3])).item() == 1.0


def test_state_dict_round_trip_resumes_identically():
    a = weighter("dynamic", update_every_steps=1)
    a.observe(torch.tensor([1, 2, 3, 3]))
    a.step_end(0, 1)
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints may store it as JSON
    b = weighter("dynamic", update_every_steps=1)
    b.load_state_dict(state)
    assert b.current_weights() == a.current_weights() and b.history == a.history
    for w in (a, b):
        w.observe(torch.tensor([4, 5]))
        w.step_end(0, 2)
    assert b.current_weights() == a.current_weights()
    with pytest.raises(ConfigError, match="scheme"):
        weighter("inverse").load_state_dict(state)


def test_every_scheme_builds_and_records_its_initial_weights():
    for scheme in SCHEMES:
        w = weighter(scheme)
        uniform = {"q": dict.fromkeys(COUNTS, 1 / 3)} if scheme == "dro" else {}  # dro's q too
        assert w.history[0] == {
            "epoch": 0,
            "step": 0,
            "event": "init",
            "weights": w.current_weights(),
            **uniform,
        }


def test_a_given_value_wins_over_the_recorded_one_which_wins_over_the_default():
    weights = make_weights(COUNTS, beta=0.5, agg="max", fixed_weight=3.0)
    spec, sources = resolve_spec("dynamic", weights["params"], beta=0.7, agg=None)
    assert (spec.beta, spec.agg, spec.fixed_weight, spec.gamma) == (0.7, "max", 3.0, 0.5)
    recorded = dict.fromkeys(("agg", "fixed_weight", "fixed_domains"), "weights.json")
    assert sources == {
        **dict.fromkeys(PARAMETER_NAMES, "default"),
        **recorded,
        "beta": "train option",
    }
    # the weighter applies the resolved spec: 3.0 (recorded) on the recorded fixed domain "rare"
    w = DomainWeighter.from_weights(weights, ITEM_DOMAINS, "fixed")
    assert w.current_weights() == {"rare": 3.0, "mid": 1.0, "common": 1.0}
    assert w.params["fixed_weight"] == 3.0 and w.params["agg"] == "max"
    given = DomainWeighter.from_weights(weights, ITEM_DOMAINS, "fixed", fixed_weight=1.5)
    assert given.current_weights()["rare"] == 1.5
    with pytest.raises(ConfigError, match=r"existing domains: \['common', 'mid', 'rare'\]"):
        DomainWeighter.from_weights(weights, ITEM_DOMAINS, "fixed", fixed_domains=["nope"])
    with pytest.raises(ConfigError, match="weighting: unknown option"):
        resolve_spec("dynamic", weights["params"], betta=0.7)


def test_a_bad_recorded_value_names_the_file_a_bad_given_one_the_option():
    with pytest.raises(ConfigError, match=r"^w.json: recorded params: --beta: must be in \[0, 1\)"):
        resolve_spec("dynamic", {"beta": 1.5}, "w.json")
    with pytest.raises(ConfigError, match=r"^--beta: must be in \[0, 1\)"):
        resolve_spec("dynamic", {"beta": 0.5}, "w.json", beta=1.0)


def test_bad_config_and_mismatched_items_are_clear_errors():
    with pytest.raises(ConfigError, match="scheme"):
        weighter("magic")
    with pytest.raises(ConfigError, match="agg"):
        weighter("inverse", agg="median")
    with pytest.raises(ConfigError, match=r"\['other'\] are not in weights.json"):
        weighter("inverse", item_domains=[[], ["other"]])


def test_load_weights_rejects_another_version_and_broken_files(tmp_path):
    good = make_weights(COUNTS)
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(good))
    assert load_weights(path)["domains"] == list(COUNTS)
    assert load_weights(tmp_path)["domains"] == list(COUNTS)  # a stats output dir works too
    path.write_text(json.dumps({**good, "version": 2}))
    with pytest.raises(InputError, match=rf"{path}: weights version 2.*version 1"):
        load_weights(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "domain_stats"}))
    with pytest.raises(InputError, match=r"missing key\(s\) \['domain_stats'\]"):
        load_weights(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        load_weights(path)


def test_importing_the_library_does_not_import_torch():
    code = (
        "import sys, components.core.weighting, components.stats, components.stats.cli, "
        "components.train.cli; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_static_schemes_do_not_count_targets():
    w = weighter("inverse")
    w.observe(torch.tensor([1, 2, 3]))
    assert w.running_domain_counts() is None
    assert w.step_end(0, 1) is False and w.epoch_end(0, 1) is False
