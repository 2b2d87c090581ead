"""Per-domain loss weights: the four schemes of SPEC §5 and the per-example weight lookup.

Pure maths first (numpy, one value per domain, aligned with a domain list), then ``DomainWeighter``,
the object the train step holds: it turns a batch of target item indices into per-example weights
ω with one gather and, for ``dynamic``, moves the weights toward their target with an EMA.

Importing this module never imports torch; torch is imported inside the methods that take tensors.

Conventions shared by every function here:
- a domain with no train interactions (share 0 / count 0) is left out of every target computation
  (p̄, rescale, z-scores) and gets weight 1.0;
- so is an *unlabelled* domain (``(none)``: items the source gave no domain, MovieLens'
  ``unknown`` genre, ``(no genres listed)``) unless the stats step was told to boost it: it is
  not a niche interest, only missing metadata (the stats step records the names it held at 1 in
  weights.json ``params.unlabelled_domains``; the train step applies the same);
- "interaction-weighted mean" = Σ_d n_d·w_d / Σ_d n_d, with n_d counted once per domain of an item.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.errors import ConfigError, InputError
from components.schema import NO_DOMAIN, PADDING_ITEM

log = logging.getLogger(__name__)

WEIGHTS_VERSION = 1
WEIGHTS_FILE = "weights.json"
SCHEMES = ("none", "fixed", "inverse", "dynamic")
TARGETS = ("inverse", "composite")
AGGS = ("mean", "max")

# Defaults of the scheme parameters (SPEC §5); the stats step records the values it used.
DEFAULT_PARAMS = {
    "fixed_weight": 2.0,
    "gamma": 0.5,
    "w_min": 0.5,
    "w_max": 5.0,
    "beta": 0.9,
    "target": "inverse",
    "lambdas": [0.6, 0.3, 0.1],
    "alpha": 0.5,
    "agg": "mean",
}
# Rule for ``fixed`` when no domains are named: domains whose share is below this fraction of the
# uniform share 1/|D| (the clearly sparse ones); if none is, the single sparsest domain.
FIXED_DEFAULT_SHARE_FRACTION = 0.5
# Domain names that mean "no domain known" rather than a niche interest: the contract's "(none)"
# (items a source gave no domain), MovieLens 100K's "unknown" genre and ML-20M/25M's
# "(no genres listed)" (when a dataset carries it literally). Weight 1 under every scheme and
# out of every target's normalisation by default (stats: --boost-unlabelled / --unlabelled-domains).
UNLABELLED_DOMAINS = (NO_DOMAIN, "(no genres listed)", "unknown")


# ---------------------------------------------------------------------------------------------
# Pure maths (numpy arrays aligned with a list of domains)
# ---------------------------------------------------------------------------------------------


def _as_float_array(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ConfigError(f"{name}: expected one value per domain, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ConfigError(f"{name}: values must be finite and >= 0, got {array.tolist()}")
    return array


def check_bounds(w_min: float, w_max: float) -> None:
    if not (0 < w_min <= w_max) or not math.isfinite(w_max):
        raise ConfigError(f"w_min/w_max: need 0 < w_min <= w_max < inf, got {w_min}, {w_max}")


def weightable(domains: list[str], counts, unlabelled=()) -> np.ndarray:
    """Boolean mask of the domains a sparsity target weighs: train interactions and labelled."""
    skip = set(unlabelled)
    labelled = np.array([d not in skip for d in domains], dtype=bool)
    return (np.asarray(counts, dtype=np.float64) > 0) & labelled


def rescale_to_mean_one(weights, counts) -> np.ndarray:
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
    shares,
    gamma: float = 0.5,
    w_min: float = 0.5,
    w_max: float = 5.0,
    counts=None,
    active=None,
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
    idf,
    user_ratio,
    entropy,
    lambdas=(0.6, 0.3, 0.1),
    alpha: float = 0.5,
    w_min: float = 0.5,
    w_max: float = 5.0,
    active=None,
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


def fixed_weights(domains: list[str], fixed_domains, fixed_weight: float = 2.0) -> np.ndarray:
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


def default_fixed_domains(domains: list[str], counts, unlabelled=()) -> list[str]:
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


def ema_update(weights, target, beta: float = 0.9, w_min: float = 0.5, w_max: float = 5.0):
    """One DWL update: w ← clip(β·w + (1−β)·ŵ, w_min, w_max)."""
    if not 0 <= beta < 1:
        raise ConfigError(f"beta: must be in [0, 1), got {beta}")
    weights = np.asarray(weights, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    return np.clip(beta * weights + (1.0 - beta) * target, w_min, w_max)


def idf_from_counts(counts) -> np.ndarray:
    """IDF_d = log(Σn / n_d); +inf where n_d = 0."""
    counts = _as_float_array(counts, "counts")
    total = counts.sum()
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, np.log(total / np.where(counts > 0, counts, 1)), np.inf)


# ---------------------------------------------------------------------------------------------
# weights.json
# ---------------------------------------------------------------------------------------------

_REQUIRED_KEYS = (
    "version",
    "dataset",
    "domains",
    "params",
    "targets",
    "domain_counts",
    "domain_stats",
    "power_thresholds",
)
_REQUIRED_STATS = ("n", "share", "idf", "user_ratio", "entropy")


def validate_weights(weights: dict, source: str = WEIGHTS_FILE) -> dict:
    """Check a parsed weights.json; ConfigError naming ``source`` and what is wrong."""
    if not isinstance(weights, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    version = weights.get("version")
    if version != WEIGHTS_VERSION:
        raise ConfigError(
            f"{source}: weights version {version!r}, this dwlrec reads version "
            f"{WEIGHTS_VERSION}; re-run `python -m components.stats` to regenerate it"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in weights]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {missing}")
    domains = weights["domains"]
    if not isinstance(domains, list) or not domains or len(set(domains)) != len(domains):
        raise ConfigError(f"{source}: 'domains' must be a non-empty list of distinct names")
    for key in ("domain_counts", "domain_stats"):
        absent = [d for d in domains if d not in weights[key]]
        if absent:
            raise ConfigError(f"{source}: {key!r} lacks domain(s) {absent}")
    for d in domains:
        lacking = [k for k in _REQUIRED_STATS if k not in weights["domain_stats"][d]]
        if lacking:
            raise ConfigError(f"{source}: domain_stats[{d!r}] lacks {lacking}")
    if not isinstance(weights["params"], dict):
        raise ConfigError(f"{source}: 'params' must be a JSON object")
    unlabelled = weights["params"].get("unlabelled_domains", [])
    if not isinstance(unlabelled, list) or not all(isinstance(d, str) for d in unlabelled):
        raise ConfigError(f"{source}: params.unlabelled_domains must be a list of domain names")
    return weights


def load_weights(path) -> dict:
    """Parse and validate a weights.json (a file, or a stats output dir holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    try:
        weights = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file (run `python -m components.stats` first)") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc})") from exc
    return validate_weights(weights, str(path))


def check_dataset(weights: dict, fingerprint: dict) -> None:
    """ConfigError if ``weights`` was computed on another dataset than ``fingerprint``'s."""
    recorded = weights.get("dataset", {})
    diffs = {k: (recorded.get(k), v) for k, v in fingerprint.items() if recorded.get(k) != v}
    if diffs:
        raise ConfigError(
            f"weights.json was computed on another dataset (recorded vs given: {diffs}); "
            f"re-run the stats step on this dataset"
        )


# ---------------------------------------------------------------------------------------------
# The weighter used by the train step
# ---------------------------------------------------------------------------------------------


@dataclass
class WeightingConfig:
    """How the train step weights its loss. ``None`` means "the value recorded in weights.json"."""

    scheme: str = "none"  # none | fixed | inverse | dynamic
    beta: float = 0.9  # EMA factor of dynamic
    update_every_steps: int = 0  # 0 = update once per epoch; K > 0 = every K optimiser steps
    agg: str = "mean"  # how an item's domain weights combine: mean | max
    target: str | None = None  # dynamic's target: inverse | composite
    w_min: float | None = None
    w_max: float | None = None
    gamma: float | None = None
    fixed_weight: float | None = None
    fixed_domains: list[str] | None = None
    lambdas: list[float] | None = None
    alpha: float | None = None
    # True when each DDP rank observe()s only its own shard of the batch: the running counts are
    # then summed over ranks at each update. False (default) when every rank observes the whole
    # global batch (as the train step does): counts already agree, no collective is needed.
    all_reduce_counts: bool = False

    def validate(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"weighting scheme: {self.scheme!r} is not one of {list(SCHEMES)}")
        if self.agg not in AGGS:
            raise ConfigError(f"weighting agg: {self.agg!r} is not one of {list(AGGS)}")
        if self.target is not None and self.target not in TARGETS:
            raise ConfigError(f"weighting target: {self.target!r} is not one of {list(TARGETS)}")
        if not 0 <= self.beta < 1:
            raise ConfigError(f"weighting beta: must be in [0, 1), got {self.beta}")
        if self.update_every_steps < 0:
            raise ConfigError(
                f"weighting update_every_steps: must be >= 0, got {self.update_every_steps}"
            )


def _normalise_item_domains(item_domains: list[list[str]]) -> list[list[str]]:
    """Distinct domains per item; a real item without domains belongs to '(none)' (SPEC §2)."""
    out = [[]]
    for domains in item_domains[1:]:
        out.append(list(dict.fromkeys(domains)) if domains else [NO_DOMAIN])
    return out


class DomainWeighter:
    """Per-domain weights w_d and per-example weights ω for one training run.

    ``example_weights`` maps target item indices to ω with one gather from a cached
    item→ω lookup tensor (padding item 0 → 0.0). ``observe`` accumulates the targets seen (one
    bincount); ``step_end``/``epoch_end`` update the ``dynamic`` weights and return True when
    they changed. ``history`` records the weights after every update, initial weights first.
    """

    def __init__(self, config: WeightingConfig, weights: dict, item_domains: list[list[str]]):
        config.validate()
        validate_weights(weights)
        self.config = config
        self.domains: list[str] = list(weights["domains"])
        self.params = self._resolve_params(config, weights["params"])
        # what the stats step held at weight 1 as "no domain known" (absent in older files: none)
        self.unlabelled: list[str] = [
            d for d in self.params.get("unlabelled_domains") or [] if d in self.domains
        ]
        stats = weights["domain_stats"]
        self._stats_counts = np.array([weights["domain_counts"][d] for d in self.domains], float)
        self._user_ratio = np.array([stats[d]["user_ratio"] for d in self.domains], float)
        self._entropy = np.array(
            [np.nan if stats[d]["entropy"] is None else stats[d]["entropy"] for d in self.domains]
        )
        self._build_incidence(item_domains)
        # targets seen per item_idx: totals agreed at the last update (numpy) + pending since then
        # (a torch tensor on the targets' device, created on the first observe())
        self._total_counts = np.zeros(self.n_items + 1, dtype=np.int64)
        self._pending_counts = None
        self._weights = self._initial_weights()
        self._lookup_cache: dict = {}
        self._updates = 0
        self.history: list[dict] = []
        self._record(epoch=0, step=0, event="init")

    # -- setup -----------------------------------------------------------------------------

    @staticmethod
    def _resolve_params(config: WeightingConfig, recorded: dict) -> dict:
        params = {**DEFAULT_PARAMS, **recorded}
        for key in (
            "target",
            "w_min",
            "w_max",
            "gamma",
            "fixed_weight",
            "fixed_domains",
            "lambdas",
            "alpha",
        ):
            value = getattr(config, key)
            if value is not None:
                params[key] = value
        params["beta"], params["agg"] = config.beta, config.agg
        check_bounds(params["w_min"], params["w_max"])
        if params["target"] not in TARGETS:
            raise ConfigError(f"weighting target: {params['target']!r} not in {list(TARGETS)}")
        return params

    def _build_incidence(self, item_domains: list[list[str]]) -> None:
        """CSR item → domain codes, for the lookup (agg over domains) and the running counts."""
        if not item_domains or item_domains[0]:
            raise ConfigError("item_domains: index 0 must be the padding item with no domains")
        code = {d: i for i, d in enumerate(self.domains)}
        normalised = _normalise_item_domains(item_domains)
        unknown = sorted({d for ds in normalised for d in ds if d not in code})
        if unknown:
            raise ConfigError(
                f"item_domains: domain(s) {unknown[:10]} are not in weights.json "
                f"(it was computed on another dataset?); weights.json has {self.domains}"
            )
        lengths = np.array([len(ds) for ds in normalised], dtype=np.int64)
        self._item_offsets = np.zeros(len(normalised) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._item_offsets[1:])
        self._item_domain_codes = np.array([code[d] for ds in normalised for d in ds], np.int64)
        self.n_items = len(normalised) - 1

    def _active(self, counts=None) -> np.ndarray:
        """Domains a sparsity target weighs: train interactions (in ``counts``, default the
        stats step's) and not unlabelled."""
        counts = self._stats_counts if counts is None else counts
        return weightable(self.domains, counts, self.unlabelled)

    def target_weights(self, counts=None) -> np.ndarray:
        """The scheme's target per domain; ``counts`` (running target counts) replace the
        stats step's n_d when given (inverse: shares; composite: IDF)."""
        p = self.params
        scheme = self.config.scheme
        if scheme == "none":
            return np.ones(len(self.domains))
        if scheme == "fixed":
            chosen = p.get("fixed_domains") or []
            return fixed_weights(self.domains, chosen, p["fixed_weight"])
        counts = self._stats_counts if counts is None else np.asarray(counts, float)
        target = "inverse" if scheme == "inverse" else p["target"]
        active = self._active(counts)
        if target == "inverse":
            return inverse_weights(
                counts / counts.sum(), p["gamma"], p["w_min"], p["w_max"], active=active
            )
        return composite_weights(
            idf_from_counts(counts),
            self._user_ratio,
            self._entropy,
            p["lambdas"],
            p["alpha"],
            p["w_min"],
            p["w_max"],
            active=active,
        )

    def _initial_weights(self) -> np.ndarray:
        if self.config.scheme == "dynamic":
            return np.ones(len(self.domains))
        return self.target_weights()

    # -- per step --------------------------------------------------------------------------

    def current_weights(self) -> dict[str, float]:
        return {d: float(w) for d, w in zip(self.domains, self._weights, strict=True)}

    def item_lookup(self) -> np.ndarray:
        """ω per item_idx (float32 [n_items + 1]): agg of w_d over the item's domains; 0 = 0.0."""
        per_pair = self._weights[self._item_domain_codes]
        starts = self._item_offsets[1:-1]  # real items 1..n (each has >= 1 domain)
        lookup = np.zeros(self.n_items + 1, dtype=np.float64)
        if self.n_items:
            if self.params["agg"] == "max":
                lookup[1:] = np.maximum.reduceat(per_pair, starts)
            else:
                lookup[1:] = np.add.reduceat(per_pair, starts) / np.diff(self._item_offsets)[1:]
        if self.config.scheme == "none":
            lookup[1:] = 1.0  # exactly 1.0, whatever floating point does to sums
        return lookup.astype(np.float32)

    def _lookup_on(self, device):
        import torch

        key = str(device)
        if key not in self._lookup_cache:
            self._lookup_cache[key] = torch.from_numpy(self.item_lookup()).to(device)
        return self._lookup_cache[key]

    def example_weights(self, target_item_idx):
        """Per-example weights ω (float32, same shape and device as ``target_item_idx``)."""
        return self._lookup_on(target_item_idx.device)[target_item_idx]

    def observe(self, target_item_idx) -> None:
        """Add a batch of targets to the running counts (``dynamic`` only; padding ignored).

        One bincount on the targets' device; no host sync until the next update."""
        if self.config.scheme != "dynamic":
            return
        import torch

        flat = target_item_idx.reshape(-1)
        if self._pending_counts is None or self._pending_counts.device != flat.device:
            previous = self._pending_counts
            self._pending_counts = torch.zeros(
                self.n_items + 1, dtype=torch.int64, device=flat.device
            )
            if previous is not None:
                self._pending_counts += previous.to(flat.device)
        self._pending_counts += torch.bincount(flat, minlength=self.n_items + 1)

    def _sync_counts(self) -> None:
        """Fold the targets seen since the last update into the totals. With
        ``all_reduce_counts`` under torch.distributed, the pending counts are first summed over
        every rank so all ranks compute the same weights (each rank must reach the same
        updates, as DDP training does)."""
        if self._pending_counts is None:
            return
        import torch.distributed as dist

        if (
            self.config.all_reduce_counts
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            dist.all_reduce(self._pending_counts)
        self._total_counts += self._pending_counts.cpu().numpy()
        self._pending_counts.zero_()

    def running_domain_counts(self) -> np.ndarray | None:
        """Targets seen per domain so far (an item counts once in each of its domains)."""
        if self._pending_counts is None and not self._total_counts.any():
            return None
        item_counts = self._total_counts.astype(np.float64)
        if self._pending_counts is not None:
            item_counts += self._pending_counts.cpu().numpy()
        item_counts[PADDING_ITEM] = 0.0
        per_pair = np.repeat(item_counts, np.diff(self._item_offsets))
        return np.bincount(self._item_domain_codes, weights=per_pair, minlength=len(self.domains))

    def _dynamic_target(self) -> np.ndarray:
        """Target from the running counts once every domain with train data has been seen;
        until then (e.g. early in epoch 1 with K-step updates) from the stats step's counts."""
        counts = self.running_domain_counts()
        if counts is not None and np.all(counts[self._active()] > 0):
            counts = np.where(self._active(), counts, 0.0)
            return self.target_weights(counts)
        return self.target_weights()

    def _update(self, epoch: int, step: int, event: str) -> bool:
        self._sync_counts()
        target = self._dynamic_target()
        new = np.where(
            self._active(),
            ema_update(
                self._weights,
                target,
                self.params["beta"],
                self.params["w_min"],
                self.params["w_max"],
            ),
            1.0,
        )
        changed = not np.array_equal(new, self._weights)
        self._weights = new
        self._updates += 1
        if changed:
            self._lookup_cache.clear()
        self._record(epoch, step, event)
        # epoch updates are few: log them; K-step updates only at debug level
        log.log(
            logging.INFO if event == "epoch" else logging.DEBUG,
            "dynamic weights after %s update (epoch %d, step %d): %s",
            event,
            epoch,
            step,
            ", ".join(f"{d} {w:.3f}" for d, w in self.current_weights().items()),
        )
        return changed

    def step_end(self, epoch: int, step: int) -> bool:
        """Call after each optimiser step (``step`` = optimiser steps done so far, global)."""
        k = self.config.update_every_steps
        if self.config.scheme != "dynamic" or k <= 0 or step <= 0 or step % k:
            return False
        return self._update(epoch, step, "step")

    def epoch_end(self, epoch: int, step: int) -> bool:
        """Call at each epoch end; updates ``dynamic`` when ``update_every_steps`` is 0."""
        if self.config.scheme != "dynamic" or self.config.update_every_steps > 0:
            return False
        return self._update(epoch, step, "epoch")

    def _record(self, epoch: int, step: int, event: str) -> None:
        self.history.append(
            {
                "epoch": int(epoch),
                "step": int(step),
                "event": event,
                "weights": self.current_weights(),
            }
        )

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        counts = self._total_counts.copy()
        if self._pending_counts is not None:
            counts += self._pending_counts.cpu().numpy()
        return {
            "version": WEIGHTS_VERSION,
            "config": asdict(self.config),
            "domains": list(self.domains),
            "weights": self._weights.tolist(),
            "updates": self._updates,
            "item_counts": counts.tolist(),
            "history": [dict(h, weights=dict(h["weights"])) for h in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("domains") != self.domains:
            raise ConfigError(
                f"weighter checkpoint: domains {state.get('domains')} differ from {self.domains}"
            )
        if state.get("config", {}).get("scheme") != self.config.scheme:
            raise ConfigError(
                f"weighter checkpoint: scheme {state.get('config', {}).get('scheme')!r} "
                f"differs from {self.config.scheme!r}"
            )
        self._weights = np.asarray(state["weights"], dtype=np.float64)
        self._updates = int(state["updates"])
        self.history = [dict(h, weights=dict(h["weights"])) for h in state["history"]]
        self._pending_counts = None
        counts = state.get("item_counts")
        self._total_counts = np.zeros(self.n_items + 1, dtype=np.int64)
        if counts is not None:
            if len(counts) != self.n_items + 1:
                raise ConfigError(
                    f"weighter checkpoint: counts for {len(counts) - 1} items, "
                    f"the catalogue has {self.n_items}"
                )
            self._total_counts[:] = counts
        self._lookup_cache.clear()


__all__ = [
    "AGGS",
    "DEFAULT_PARAMS",
    "SCHEMES",
    "TARGETS",
    "UNLABELLED_DOMAINS",
    "WEIGHTS_FILE",
    "WEIGHTS_VERSION",
    "DomainWeighter",
    "WeightingConfig",
    "check_dataset",
    "composite_weights",
    "default_fixed_domains",
    "ema_update",
    "fixed_weights",
    "idf_from_counts",
    "inverse_weights",
    "load_weights",
    "rescale_to_mean_one",
    "validate_weights",
    "weightable",
]
