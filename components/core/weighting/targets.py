"""Per-domain target weights of the schemes (SPEC §5): pure numpy, one value per domain.

Every function takes arrays aligned with one list of domains and returns one weight per domain.
Conventions:
- a domain with no train interactions (share 0 / count 0) is left out of every target computation
  (p̄, rescale, z-scores) and gets weight 1.0;
- so is an *unlabelled* domain (``(none)``: items the source gave no domain, MovieLens'
  ``unknown`` genre, ``(no genres listed)``) unless the stats step was told to boost it: it is
  not a niche interest, only missing metadata (the stats step records the names it held at 1 in
  weights.json ``params.unlabelled_domains``; the train step applies the same);
- "interaction-weighted mean" = Σ_d n_d·w_d / Σ_d n_d, with n_d counted once per domain of an item.

The default parameter values are those of ``spec.DEFAULTS`` (written once, in ``spec.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from components.core.weighting.spec import DEFAULTS
from components.errors import ConfigError

# Rule for ``fixed`` when no domains are named: domains whose share is below this fraction of the
# uniform share 1/|D| (the clearly sparse ones); if none is, the single sparsest domain.
FIXED_DEFAULT_SHARE_FRACTION = 0.5


def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ConfigError(f"{name}: expected one value per domain, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ConfigError(f"{name}: values must be finite and >= 0, got {array.tolist()}")
    return array


def check_bounds(w_min: float, w_max: float) -> None:
    if not (0 < w_min <= w_max) or not math.isfinite(w_max):
        raise ConfigError(f"w_min/w_max: need 0 < w_min <= w_max < inf, got {w_min}, {w_max}")


def weightable(domains: list[str], counts: ArrayLike, unlabelled: Iterable[str] = ()) -> np.ndarray:
    """Boolean mask of the domains a sparsity target weighs: train interactions and labelled."""
    skip = set(unlabelled)
    labelled = np.array([d not in skip for d in domains], dtype=bool)
    return (np.asarray(counts, dtype=np.float64) > 0) & labelled


def rescale_to_mean_one(weights: ArrayLike, counts: ArrayLike) -> np.ndarray:
    """Scale ``weights`` so that the count-weighted mean Σ c·w / Σ c is exactly 1.

    Domains with count 0 are left unchanged (they do not enter the mean)."""
    weights = np.asarray(weights, dtype=np.float64).copy()
    counts = _as_float_array(counts, "counts")
    active = counts > 0
    if not active.any():
        return weights
    mean = float(np.dot(counts[active], weights[active]) / counts[active].sum())
    weights[active] = weights[active] / mean
    return weights


def inverse_weights(
    shares: ArrayLike,
    gamma: float = DEFAULTS.gamma,
    w_min: float = DEFAULTS.w_min,
    w_max: float = DEFAULTS.w_max,
    counts: ArrayLike | None = None,
    active: ArrayLike | None = None,
) -> np.ndarray:
    """Static inverse-frequency weights (SPEC §5), one per domain.

    w_d = clip((p̄ / p_d)^γ, w_min, w_max) with p̄ = 1/|D| over the domains with p_d > 0, then
    rescaled so that the interaction-weighted mean weight is 1 (weights of the mean: ``counts``,
    default ``shares``), then clipped again. Domains with p_d = 0 get 1.0.

    ``active`` (bool mask) leaves further domains out (e.g. the unlabelled one): they get 1.0 and
    the shares are renormalised over the rest, exactly as if those domains did not exist.
    """
    check_bounds(w_min, w_max)
    if not gamma >= 0 or not math.isfinite(gamma):
        raise ConfigError(f"gamma: must be a finite number >= 0, got {gamma}")
    shares = _as_float_array(shares, "shares")
    counts = shares if counts is None else _as_float_array(counts, "counts")
    weights = np.ones_like(shares)
    positive = shares > 0
    active = positive if active is None else positive & np.asarray(active, dtype=bool)
    if not active.any():
        return weights
    if not np.array_equal(active, positive):  # some domains left out: shares over the rest
        shares = np.where(active, shares / shares[active].sum(), 0.0)
    uniform = 1.0 / active.sum()
    weights[active] = np.clip((uniform / shares[active]) ** gamma, w_min, w_max)
    weights[active] = rescale_to_mean_one(weights[active], counts[active])
    weights[active] = np.clip(weights[active], w_min, w_max)
    return weights


def _min_max(values: np.ndarray) -> np.ndarray:
    spread = values.max() - values.min()
    return np.zeros_like(values) if spread <= 0 else (values - values.min()) / spread


def composite_weights(
    idf: ArrayLike,
    user_ratio: ArrayLike,
    entropy: ArrayLike,
    lambdas: ArrayLike = DEFAULTS.lambdas,
    alpha: float = DEFAULTS.alpha,
    w_min: float = DEFAULTS.w_min,
    w_max: float = DEFAULTS.w_max,
    active: ArrayLike | None = None,
) -> np.ndarray:
    """Composite sparsity target (SPEC §5), one weight per domain.

    S_d = λ1·IDF̂_d + λ2·(1 − user_ratio)̂_d + λ3·(1 − H)̂_d (each term min-max normalised over
    the active domains), ŵ_d = clip(1 + α·z(S)_d, w_min, w_max) with z the z-score over the
    active domains (0 when every S_d is equal). Inactive domains (``active`` False) get 1.0.
    """
    check_bounds(w_min, w_max)
    lambdas = np.asarray(lambdas, dtype=np.float64)
    if (
        lambdas.shape != (3,)
        or not np.all(np.isfinite(lambdas))
        or np.any(lambdas < 0)
        or lambdas.sum() <= 0
    ):
        raise ConfigError(
            f"lambdas: need three finite values >= 0 with a positive sum, got {lambdas}"
        )
    if not alpha >= 0 or not math.isfinite(alpha):
        raise ConfigError(f"alpha: must be a finite number >= 0, got {alpha}")
    idf = np.asarray(idf, dtype=np.float64)
    user_ratio = np.asarray(user_ratio, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    active = np.isfinite(idf) if active is None else np.asarray(active, dtype=bool)
    weights = np.ones_like(idf)
    if not active.any():
        return weights
    score = (
        lambdas[0] * _min_max(idf[active])
        + lambdas[1] * _min_max(1.0 - user_ratio[active])
        + lambdas[2] * _min_max(1.0 - entropy[active])
    )
    std = score.std()
    z = np.zeros_like(score) if std <= 1e-12 else (score - score.mean()) / std
    weights[active] = np.clip(1.0 + alpha * z, w_min, w_max)
    return weights


def fixed_weights(
    domains: list[str], fixed_domains: Iterable[str], fixed_weight: float = DEFAULTS.fixed_weight
) -> np.ndarray:
    """PinnerFormerLite: ``fixed_weight`` on the named domains, 1.0 elsewhere."""
    if not fixed_weight > 0 or not math.isfinite(fixed_weight):
        raise ConfigError(f"fixed_weight: must be a finite number > 0, got {fixed_weight}")
    unknown = sorted(set(fixed_domains) - set(domains))
    if unknown:
        raise ConfigError(
            f"fixed_domains: unknown domain(s) {unknown}; existing domains: {sorted(domains)}"
        )
    chosen = set(fixed_domains)
    return np.array([fixed_weight if d in chosen else 1.0 for d in domains], dtype=np.float64)


def default_fixed_domains(
    domains: list[str], counts: ArrayLike, unlabelled: Iterable[str] = ()
) -> list[str]:
    """The documented default target set of ``fixed``: the clearly sparse domains.

    Domains whose train share is below ``FIXED_DEFAULT_SHARE_FRACTION`` × 1/|D| (|D| = domains
    with train interactions); if there is none, the single sparsest domain. Domains without
    train interactions and the ``unlabelled`` ones are never chosen (nor counted in |D| and the
    shares).
    """
    counts = _as_float_array(counts, "counts")
    active = np.flatnonzero(weightable(domains, counts, unlabelled))
    if len(active) == 0:
        return []
    shares = counts / counts[active].sum()
    threshold = FIXED_DEFAULT_SHARE_FRACTION / len(active)
    chosen = [domains[i] for i in active if shares[i] < threshold]
    if not chosen:
        sparsest = min(active, key=lambda i: (counts[i], domains[i]))
        chosen = [domains[sparsest]]
    return sorted(chosen)


def ema_update(
    weights: ArrayLike,
    target: ArrayLike,
    beta: float = DEFAULTS.beta,
    w_min: float = DEFAULTS.w_min,
    w_max: float = DEFAULTS.w_max,
) -> np.ndarray:
    """One DWL update: w ← clip(β·w + (1−β)·ŵ, w_min, w_max)."""
    if not 0 <= beta < 1:
        raise ConfigError(f"beta: must be in [0, 1), got {beta}")
    weights = np.asarray(weights, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    return np.clip(beta * weights + (1.0 - beta) * target, w_min, w_max)


def idf_from_counts(counts: ArrayLike) -> np.ndarray:
    """IDF_d = log(Σn / n_d); +inf where n_d = 0."""
    counts = _as_float_array(counts, "counts")
    total = counts.sum()
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, np.log(total / np.where(counts > 0, counts, 1)), np.inf)


__all__ = [
    "FIXED_DEFAULT_SHARE_FRACTION",
    "check_bounds",
    "composite_weights",
    "default_fixed_domains",
    "ema_update",
    "fixed_weights",
    "idf_from_counts",
    "inverse_weights",
    "rescale_to_mean_one",
    "weightable",
]
