"""The frontier (SPEC §7): each variant's overall NDCG@K lift over the baseline against its mean
lift over the sparse domains (and over the dense ones), with paired bootstrap 95% CIs, the
Pareto-optimal variants, and a one-line verdict.

The sparse (dense) statistic is the relative lift of the MACRO mean over the domains: every
sparse (dense, labelled) domain with test users weighs the same, M = mean_d (mean over d's test
users of the metric), lift = M_variant / M_baseline − 1. Chosen over the mean of per-domain
lifts because one domain with a tiny baseline makes its own ratio explode; this one is defined
whenever the baseline's macro mean is > 0. Domains too small for a CI of their own still count:
the statistic's sample is the union of their users. Its CI is a paired bootstrap like
``compare``'s: each resample draws users with replacement once (a user counts in every domain of
its target; a domain drawn empty is left out of that resample's mean), variant and baseline
scored on the same draw; percentile 95%. Significant: the CI of the difference excludes 0 (one
that touches 0 does not) and the union has at least ``min_users`` users, as for a cohort.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from components.core.bootstrap import stable_seed
from components.core.cohorts import Domains

CONFIDENCE = 0.95
UP, DOWN, FLAT = 1, -1, 0
SIDES = ("overall", "sparse", "dense")


def resample_counts(
    rng: np.random.Generator, n: int, n_boot: int, max_elements: int = 1 << 23
) -> Iterator[np.ndarray]:
    """[c, n] arrays: how often each of n users is drawn in each resample, n_boot rows in all
    (c · n <= ``max_elements`` where n allows)."""
    chunk = max(1, max_elements // max(n, 1))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        index = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        yield np.bincount(index.ravel(), minlength=rows * n).reshape(rows, n)


def macro_bootstrap(
    variant: np.ndarray,
    baseline: np.ndarray,
    masks: Sequence[np.ndarray],
    n_boot: int,
    seed: int,
    max_elements: int = 1 << 23,
) -> dict:
    """Lift of the macro mean over the domains ``masks`` (bool over users, each non-empty).

    Returns ``paired_bootstrap``'s fields: variant, baseline (macro means), delta, delta_ci,
    lift, lift_ci (NaN unless every resample's baseline macro mean is > 0), significant (the
    delta CI excludes 0), plus n_domains. No masks → NaN, not significant."""
    variant = np.asarray(variant, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    result: dict = {
        "n_domains": len(masks),
        "variant": np.nan,
        "baseline": np.nan,
        "delta": np.nan,
        "delta_ci": [np.nan, np.nan],
        "lift": np.nan,
        "lift_ci": [np.nan, np.nan],
        "significant": False,
    }
    if not masks:
        return result
    members = [np.flatnonzero(m) for m in masks]
    if any(len(m) == 0 for m in members):
        raise ValueError("macro_bootstrap: every domain needs at least one user")
    mean_v = float(np.mean([variant[m].mean() for m in members]))
    mean_b = float(np.mean([baseline[m].mean() for m in members]))
    result.update(variant=mean_v, baseline=mean_b, delta=mean_v - mean_b)
    result["lift"] = (mean_v - mean_b) / mean_b if mean_b else np.nan
    if n_boot <= 0:
        return result
    # (user, domain) pairs grouped by domain: a resample's domain sums are segment sums
    users = np.concatenate(members)
    starts = np.cumsum([0, *(len(m) for m in members[:-1])])
    # a user in k domains is k pairs: the [c, pairs] blocks stay within k × max_elements
    macro_v, macro_b = [], []
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a domain drawn empty: left out
        rng = np.random.default_rng(seed)
        for counts in resample_counts(rng, len(variant), n_boot, max_elements):
            drawn = counts[:, users].astype(np.float64)  # [c, pairs]
            size = np.add.reduceat(drawn, starts, axis=1)
            sum_v = np.add.reduceat(drawn * variant[users], starts, axis=1)
            sum_b = np.add.reduceat(drawn * baseline[users], starts, axis=1)
            macro_v.append(np.nanmean(sum_v / size, axis=1))
            macro_b.append(np.nanmean(sum_b / size, axis=1))
    boot_v, boot_b = np.concatenate(macro_v), np.concatenate(macro_b)
    tail = (1 - CONFIDENCE) / 2 * 100
    deltas = boot_v - boot_b
    low, high = np.percentile(deltas, [tail, 100 - tail])
    result["delta_ci"] = [float(low), float(high)]
    if np.all(boot_b > 0):
        lifts = deltas / boot_b
        result["lift_ci"] = [float(v) for v in np.percentile(lifts, [tail, 100 - tail])]
    result["significant"] = bool(low > 0 or high < 0)
    return result


def eligible_domains(domains: Domains, masks: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """{"sparse": […], "dense": […]}: the labelled domains with test users (sparsest first)."""
    sparse = set(domains.sparse_domains())
    present = [
        d for d in domains.domains if d not in domains.unlabelled and d in masks and masks[d].any()
    ]
    return {
        "sparse": [d for d in present if d in sparse],
        "dense": [d for d in present if d not in sparse],
    }


def direction(significant: bool, delta: float) -> int:
    """UP / DOWN when significant, else FLAT."""
    if not significant or not np.isfinite(delta):
        return FLAT
    return UP if delta > 0 else DOWN


VERDICT_RULES = """first match wins (↑/↓: significant gain/loss, the 95% CI excludes 0):
sparse ↑, nothing ↓ → "dominates {baseline}"; sparse ↑, dense or overall ↓ → "trades dense for sparse";
overall ↓ → "worse"; nothing ↑ or ↓ → "no significant change"; nothing ↑ → "worse";
sparse ↓ → "trades sparse for dense"; nothing ↓ → "better, but not in sparse domains";
else "mixed"."""


def verdict(overall: int, sparse: int, dense: int, baseline: str) -> str:
    """The one-line verdict from the three directions (``VERDICT_RULES``)."""
    moves = (overall, sparse, dense)
    if sparse == UP:
        return f"dominates {baseline}" if DOWN not in moves else "trades dense for sparse"
    if overall == DOWN:
        return "worse"
    if UP not in moves:
        return "no significant change" if DOWN not in moves else "worse"
    if sparse == DOWN:
        return "trades sparse for dense"
    return "better, but not in sparse domains" if DOWN not in moves else "mixed"


def pareto(points: Mapping[str, tuple[float, float]]) -> set[str]:
    """Names of the points no other point weakly beats on both coordinates and strictly on one
    (maximising both); points with a NaN coordinate are never Pareto-optimal."""
    finite = {n: p for n, p in points.items() if np.isfinite(p[0]) and np.isfinite(p[1])}

    def beaten(p: tuple[float, float]) -> bool:
        return any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in finite.values())

    return {n for n, p in finite.items() if not beaten(p)}


def _stat(result: dict) -> dict:
    keys = ("lift", "lift_ci", "delta", "delta_ci", "significant")
    return {**{k: result[k] for k in keys}, "n_domains": result.get("n_domains")}


def frontier_points(
    variants: Sequence,
    base,
    masks: Mapping[str, np.ndarray],
    eligible: Mapping[str, list[str]],
    overall_rows: Mapping[str, dict],
    metric: str,
    bootstrap: int,
    seed: int,
    min_users: int,
) -> dict[str, dict]:
    """{variant: {"overall", "sparse", "dense": {lift, lift_ci, delta, delta_ci, significant},
    "pareto_sparse", "pareto_dense", "verdict"}} for every non-baseline variant.

    ``overall_rows``: each variant's overall comparison row for ``metric`` (its CI is the
    tables'); ``masks``: each domain's test users; ``eligible``: ``eligible_domains``."""
    base_values = base.values(metric)
    points: dict[str, dict] = {}
    for variant in variants:
        values = variant.values(metric)
        row = overall_rows[variant.name]
        point: dict[str, Any] = {
            "overall": {
                "lift": row["lift"],
                "lift_ci": [row["lift_low"], row["lift_high"]],
                "delta": row["delta"],
                "delta_ci": [row["delta_low"], row["delta_high"]],
                "significant": row["significant"],
                "n_domains": None,
                "n": row["n"],
            },
        }
        for side in ("sparse", "dense"):
            # one seed per side: every variant is scored on the same resampled users
            side_seed = stable_seed(seed, f"frontier:{side}:{metric}")
            side_masks = [masks[d] for d in eligible[side]]
            stat = _stat(macro_bootstrap(values, base_values, side_masks, bootstrap, side_seed))
            stat["n"] = int(np.logical_or.reduce(side_masks).sum()) if side_masks else 0
            stat["significant"] = stat["significant"] and stat["n"] >= min_users
            point[side] = stat
        overall, sparse, dense = (
            direction(point[s]["significant"], point[s]["delta"]) for s in SIDES
        )
        point["verdict"] = verdict(overall, sparse, dense, base.name)
        points[variant.name] = point
    for side in ("sparse", "dense"):
        coords = {n: (p["overall"]["lift"], p[side]["lift"]) for n, p in points.items()}
        best = pareto({**coords, base.name: (0.0, 0.0)})
        for name, point in points.items():
            point[f"pareto_{side}"] = name in best
    return points
