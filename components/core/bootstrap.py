"""Bootstrap confidence intervals over users (SPEC §7): one variant's CI and the paired
bootstrap that compares two variants on the same users. Numpy only; seeded."""

from __future__ import annotations

import zlib

import numpy as np


def stable_seed(*parts) -> int:
    """A seed derived from ``parts`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _resample_index(rng: np.random.Generator, n: int, n_boot: int, max_elements: int):
    """Yield index arrays [b, n] of users drawn with replacement, n_boot rows in all."""
    chunk = max(1, max_elements // max(n, 1))
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def _resampled_means(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, max_elements: int
) -> np.ndarray:
    """Column means of ``n_boot`` resamples (rows drawn with replacement) of values [n, m].

    Rank metrics take few distinct values (Recall@K: 2, NDCG@K: K+1), so when there are few
    distinct rows we draw how often each is picked — Multinomial(n, row frequencies), the same
    distribution as drawing n rows — instead of n indices per resample: O(distinct) not O(n).
    """
    n = len(values)
    unique, inverse = np.unique(values, axis=0, return_inverse=True)
    if 4 * len(unique) <= n:
        frequencies = np.bincount(inverse.ravel(), minlength=len(unique)) / n
        counts = rng.multinomial(n, frequencies, size=n_boot)  # [n_boot, distinct]
        # a plain sum over the distinct rows: identical columns give bit-identical means
        return (counts[:, :, None] * unique[None, :, :]).sum(axis=1) / n
    return np.concatenate(
        [values[idx].mean(axis=1) for idx in _resample_index(rng, n, n_boot, max_elements)]
    )


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_elements: int = 1 << 23,
) -> np.ndarray:
    """Percentile bootstrap CI of the mean, resampling users (rows), seeded.

    ``values`` [n] or [n, m] (m metrics of the same users, resampled together) → [2] or [m, 2]
    (low, high). Empty input → NaN bounds; n_boot = 0 → NaN bounds (CI not computed).
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.ndim == 1
    values = values[:, None] if flat else values
    n, m = values.shape
    if n == 0 or n_boot <= 0:
        out = np.full((m, 2), np.nan)
        return out[0] if flat else out
    means = _resampled_means(values, n_boot, np.random.default_rng(seed), max_elements)
    tail = (1.0 - confidence) / 2.0 * 100.0
    out = np.percentile(means, [tail, 100.0 - tail], axis=0).T  # [m, 2]
    return out[0] if flat else out


def paired_bootstrap(
    variant: np.ndarray,
    baseline: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_elements: int = 1 << 23,
) -> dict:
    """Compare two variants measured on the SAME users, resampling users jointly.

    ``variant`` and ``baseline`` are per-user metric values [n] aligned by user. Returns the
    point estimates and percentile CIs of delta = mean(variant) − mean(baseline) and of
    lift = delta / mean(baseline) (NaN where the baseline mean is 0), and ``significant``
    (the delta CI excludes 0).
    """
    variant = np.asarray(variant, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if variant.shape != baseline.shape or variant.ndim != 1:
        raise ValueError("paired_bootstrap needs two per-user arrays of the same length")
    n = len(variant)
    mean_v = float(variant.mean()) if n else np.nan
    mean_b = float(baseline.mean()) if n else np.nan
    delta = mean_v - mean_b
    lift = delta / mean_b if mean_b else np.nan
    result = {
        "n": n,
        "variant": mean_v,
        "baseline": mean_b,
        "delta": delta,
        "delta_ci": [np.nan, np.nan],
        "lift": lift,
        "lift_ci": [np.nan, np.nan],
        "significant": False,
    }
    if n == 0 or n_boot <= 0:
        return result
    pairs = np.stack([variant, baseline], axis=1)  # resampled together: the pairing
    means = _resampled_means(pairs, n_boot, np.random.default_rng(seed), max_elements)
    deltas = means[:, 0] - means[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = np.where(means[:, 1] > 0, deltas / means[:, 1], np.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(deltas, [tail, 100.0 - tail])
    result["delta_ci"] = [float(low), float(high)]
    finite = lifts[np.isfinite(lifts)]
    if len(finite) == n_boot:  # a lift CI only when every resample has a non-zero baseline
        result["lift_ci"] = [float(v) for v in np.percentile(finite, [tail, 100.0 - tail])]
    result["significant"] = bool(low > 0 or high < 0)
    return result
