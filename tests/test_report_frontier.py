"""The report's frontier: the macro-mean paired bootstrap against a slow reference, the Pareto
set, the verdict rules, and the frontier in a report (chart, PNG, summary.json)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from report_fixtures import base_ranks, ndcg10, synthetic_population, write_eval

from components.core.bootstrap import paired_bootstrap
from components.report.frontier import (
    DOWN,
    FLAT,
    UP,
    macro_bootstrap,
    pareto,
    resample_counts,
    verdict,
)
from components.report.report import report


def overlapping_domains(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """Variant and baseline values of n users and 4 domains, some users in two of them."""
    rng = np.random.default_rng(seed)
    baseline = rng.random(n) * (rng.random(n) < 0.4)
    variant = np.clip(baseline + rng.normal(0.05, 0.2, n), 0, 1) * (rng.random(n) < 0.5)
    label = rng.integers(0, 4, n)
    masks = [label == d for d in range(4)]
    masks[0] = masks[0] | (rng.random(n) < 0.1)  # a second domain for some users
    return variant, baseline, masks


def slow_macro(variant, baseline, masks, n_boot, seed, max_elements):
    """The same statistic, one resample at a time from the drawn user list (float64)."""
    rng = np.random.default_rng(seed)
    n = len(variant)
    deltas, lifts = [], []
    for counts in resample_counts(rng, n, n_boot, max_elements):
        for row in counts:
            drawn = np.repeat(np.arange(n), row)  # the resampled users, with repeats
            v_means, b_means = [], []
            for mask in masks:
                picked = drawn[mask[drawn]]
                if len(picked):
                    v_means.append(variant[picked].mean())
                    b_means.append(baseline[picked].mean())
            mv, mb = float(np.mean(v_means)), float(np.mean(b_means))
            deltas.append(mv - mb)
            lifts.append((mv - mb) / mb)
    return np.percentile(deltas, [2.5, 97.5]), np.percentile(lifts, [2.5, 97.5])


def test_macro_bootstrap_matches_a_slow_reference():
    variant, baseline, masks = overlapping_domains(300)
    max_elements = 3000  # several chunks of resamples
    result = macro_bootstrap(variant, baseline, masks, 60, seed=7, max_elements=max_elements)
    delta_ci, lift_ci = slow_macro(variant, baseline, masks, 60, 7, max_elements)
    np.testing.assert_allclose(result["delta_ci"], delta_ci, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result["lift_ci"], lift_ci, rtol=1e-12, atol=1e-15)
    macro_v = np.mean([variant[m].mean() for m in masks])
    macro_b = np.mean([baseline[m].mean() for m in masks])
    assert result["variant"] == pytest.approx(macro_v, abs=1e-15)
    assert result["lift"] == pytest.approx(macro_v / macro_b - 1, abs=1e-12)
    assert result["significant"] == bool(delta_ci[0] > 0 or delta_ci[1] < 0)
    # the counts are draws of n users with replacement
    chunks = list(resample_counts(np.random.default_rng(0), 50, 8, max_elements=150))
    assert [c.shape for c in chunks] == [(3, 50), (3, 50), (2, 50)]
    assert all((c.sum(axis=1) == 50).all() for c in chunks)


def test_macro_bootstrap_invariants():
    variant, baseline, masks = overlapping_domains(400, seed=3)
    same = macro_bootstrap(baseline, baseline, masks, 100, seed=0)
    assert same["delta_ci"] == [0.0, 0.0] and same["lift_ci"] == [0.0, 0.0]
    assert not same["significant"]  # a CI that touches 0 is not significant
    scaled = macro_bootstrap(1.25 * baseline, baseline, masks, 100, seed=0)
    np.testing.assert_allclose(scaled["lift_ci"], [0.25, 0.25], atol=1e-12)
    assert scaled["significant"]
    # one domain: the macro mean is that domain's mean, as the paired bootstrap's
    one = macro_bootstrap(variant, baseline, masks[:1], 0, seed=0)
    paired = paired_bootstrap(variant[masks[0]], baseline[masks[0]], 0)
    assert one["lift"] == pytest.approx(paired["lift"], abs=1e-12)
    assert np.isnan(one["delta_ci"]).all()  # no resamples, no CI
    empty = macro_bootstrap(variant, baseline, [], 100, seed=0)
    assert np.isnan(empty["lift"]) and not empty["significant"]
    with pytest.raises(ValueError, match="at least one user"):
        macro_bootstrap(variant, baseline, [np.zeros(400, bool)], 10, seed=0)


def test_pareto_set_is_exactly_the_undominated_points():
    rng = np.random.default_rng(1)
    points = {f"v{i}": tuple(rng.normal(size=2)) for i in range(40)}
    points["tie"] = points["v0"]
    points["nan"] = (np.nan, 5.0)
    best = pareto(points)

    def dominates(q, p):
        return q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1])

    finite = {n: p for n, p in points.items() if n != "nan"}
    for name, p in finite.items():
        beaten = any(dominates(q, p) for q in finite.values())
        assert (name in best) == (not beaten)
    assert "nan" not in best
    assert pareto({"base": (0.0, 0.0), "worse": (-0.1, -0.05)}) == {"base"}


def test_verdict_rules():
    moves = (UP, FLAT, DOWN)
    for overall, sparse, dense in itertools.product(moves, repeat=3):
        v = verdict(overall, sparse, dense, "none")
        some_down = DOWN in (overall, sparse, dense)
        assert (v == "dominates none") == (sparse == UP and not some_down)
        assert (v == "trades dense for sparse") == (sparse == UP and some_down)
        assert (v == "no significant change") == (overall == sparse == dense == FLAT)
        if overall == DOWN and sparse != UP:
            assert v == "worse"
        if UP not in (overall, sparse, dense) and some_down:
            assert v == "worse"
    assert verdict(UP, DOWN, UP, "none") == "trades sparse for dense"
    assert verdict(FLAT, DOWN, UP, "none") == "trades sparse for dense"
    assert verdict(UP, FLAT, FLAT, "none") == "better, but not in sparse domains"
    assert verdict(UP, FLAT, DOWN, "none") == "mixed"


@pytest.fixture(scope="module")
def frontier_report(tmp_path_factory):
    """none, a variant that trades dense for sparse, one that only helps sparse, a copy."""
    root = tmp_path_factory.mktemp("frontier")
    population = synthetic_population(40, 2500)
    base = base_ranks(population)
    sparse = population["shares"][population["target"]] < 1 / 40
    ranks = {
        "none": base,
        "trade": np.where(sparse, base // 3, base + 4),
        "good": np.where(sparse, base // 3, base),
        "copy": base,
    }
    evals = {name: write_eval(root / name, population, r) for name, r in ranks.items()}
    summary = report(evals, root / "rep", bootstrap=200)
    return root / "rep", summary, population, ranks, sparse


def test_report_verdicts_frontier_numbers_and_chart(frontier_report):
    out, summary, population, ranks, sparse = frontier_report
    assert summary["verdicts"] == {
        "trade": "trades dense for sparse",
        "good": "dominates none",
        "copy": "no significant change",
    }
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["verdicts"] == summary["verdicts"]
    frontier = on_disk["frontier"]
    # the sparse mean: every sparse domain with test users weighs the same (float64, again)
    names = np.array(population["names"])[population["target"]]
    sparse_domains = frontier["domains"]["sparse"]
    assert sparse_domains == sorted({n for n, s in zip(names, sparse, strict=True) if s})

    def macro(values):
        return np.mean([values[names == d].mean() for d in sparse_domains])

    good = frontier["variants"]["good"]
    expected = macro(ndcg10(ranks["good"])) / macro(ndcg10(ranks["none"])) - 1
    assert good["sparse"]["lift"] == pytest.approx(expected, rel=1e-12)
    low, high = good["sparse"]["lift_ci"]
    assert low <= good["sparse"]["lift"] <= high and low > 0
    assert good["dense"]["delta_ci"] == [0.0, 0.0]  # dense ranks unchanged
    overall = np.mean(ndcg10(ranks["good"])) / np.mean(ndcg10(ranks["none"])) - 1
    assert good["overall"]["lift"] == pytest.approx(overall, rel=1e-12)
    # good beats trade on both panels and both beat the baseline on the sparse one
    assert good["pareto_sparse"] and good["pareto_dense"]
    assert not frontier["variants"]["trade"]["pareto_dense"]
    html = (out / "report.html").read_text()
    assert "Frontier: overall vs sparse / dense ndcg@10" in html
    assert "relative lift of the macro mean" in html  # the statistic, stated in the caption
    assert html.count("<svg") == 2  # the frontier and the domain bars
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("- trade: "))
    assert line.startswith("- trade: trades dense for sparse (ndcg@10 vs none: overall ")
    n_sparse, n_dense = len(sparse_domains), len(frontier["domains"]["dense"])
    assert f"sparse mean of {n_sparse} ▲" in line and f"dense mean of {n_dense} ▼" in line
    assert "- copy: no significant change" in md
