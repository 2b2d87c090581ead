"""The per-example loss weights of one training run: ``DomainWeighter`` (SPEC §5).

The train step holds one: it turns a batch of target item indices into per-example weights ω
with one gather from a cached item → ω lookup and, for ``dynamic``, moves the domain weights
toward their target with an EMA (every epoch, or every K optimiser steps from the running counts
of the targets seen). Under DDP every rank observes the whole global batch (the train step
feeds it the batch before sharding), so all ranks hold the same counts and reach the same
weights without communicating.

Importing this module never imports torch; torch is imported inside the methods that take
tensors.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from components.core.weighting.spec import WeightingSpec, resolve_spec
from components.core.weighting.targets import (
    check_bounds,
    composite_weights,
    ema_update,
    fixed_weights,
    idf_from_counts,
    inverse_weights,
    weightable,
)
from components.core.weighting.weights_file import WEIGHTS_VERSION, validate_weights
from components.errors import ConfigError
from components.schema import NO_DOMAIN, PADDING_ITEM

if TYPE_CHECKING:  # torch only for the annotations: importing this module stays torch-free
    import torch

log = logging.getLogger("dwlrec.weighting")


def _normalise_item_domains(item_domains: list[list[str]]) -> list[list[str]]:
    """Distinct domains per item; a real item without domains belongs to '(none)' (SPEC §2)."""
    out: list[list[str]] = [[]]
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

    def __init__(
        self,
        spec: WeightingSpec,
        weights: dict,
        item_domains: list[list[str]],
    ):
        spec.validate()
        validate_weights(weights)
        self.spec = spec
        self.domains: list[str] = list(weights["domains"])
        # what a run used: weights.json's params (e.g. unlabelled_domains), then the spec
        self.params = {**weights["params"], **spec.as_dict()}
        check_bounds(spec.w_min, spec.w_max)
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
        self._pending_counts: Any = None  # torch.Tensor once targets are observed
        self._weights = self._initial_weights()
        self._lookup_cache: dict = {}
        self._updates = 0
        self.history: list[dict] = []
        self._record(epoch=0, step=0, event="init")

    @classmethod
    def from_weights(
        cls,
        weights: dict,
        item_domains: list[list[str]],
        scheme: str = "none",
        **given,
    ) -> DomainWeighter:
        """The weighter of ``scheme`` with the parameters weights.json recorded, each one
        replaced by a value in ``given`` that is not None (``resolve_spec``)."""
        spec, _ = resolve_spec(scheme, validate_weights(weights)["params"], **given)
        return cls(spec, weights, item_domains)

    # -- setup -----------------------------------------------------------------------------

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

    def _active(self, counts: np.ndarray | None = None) -> np.ndarray:
        """Domains a sparsity target weighs: train interactions (in ``counts``, default the
        stats step's) and not unlabelled."""
        counts = self._stats_counts if counts is None else counts
        return weightable(self.domains, counts, self.unlabelled)

    def target_weights(self, counts: ArrayLike | None = None) -> np.ndarray:
        """The scheme's target per domain; ``counts`` (running target counts) replace the
        stats step's n_d when given (inverse: shares; composite: IDF)."""
        p = self.spec
        scheme = self.spec.scheme
        if scheme == "none":
            return np.ones(len(self.domains))
        if scheme == "fixed":
            chosen = p.fixed_domains or []
            return fixed_weights(self.domains, chosen, p.fixed_weight)
        counts = self._stats_counts if counts is None else np.asarray(counts, float)
        target = "inverse" if scheme == "inverse" else p.target
        active = self._active(counts)
        if target == "inverse":
            return inverse_weights(counts / counts.sum(), p.gamma, p.w_min, p.w_max, active=active)
        return composite_weights(
            idf_from_counts(counts),
            self._user_ratio,
            self._entropy,
            p.lambdas,
            p.alpha,
            p.w_min,
            p.w_max,
            active=active,
        )

    def _initial_weights(self) -> np.ndarray:
        if self.spec.scheme == "dynamic":
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
            if self.spec.agg == "max":
                lookup[1:] = np.maximum.reduceat(per_pair, starts)
            else:
                lookup[1:] = np.add.reduceat(per_pair, starts) / np.diff(self._item_offsets)[1:]
        if self.spec.scheme == "none":
            lookup[1:] = 1.0  # exactly 1.0, whatever floating point does to sums
        return lookup.astype(np.float32)

    def _lookup_on(self, device: torch.device | str) -> torch.Tensor:
        import torch

        key = str(device)
        if key not in self._lookup_cache:
            self._lookup_cache[key] = torch.from_numpy(self.item_lookup()).to(device)
        return self._lookup_cache[key]

    def example_weights(self, target_item_idx: torch.Tensor) -> torch.Tensor:
        """Per-example weights ω (float32, same shape and device as ``target_item_idx``)."""
        return self._lookup_on(target_item_idx.device)[target_item_idx]

    def observe(self, target_item_idx: torch.Tensor) -> None:
        """Add a batch of targets to the running counts (``dynamic`` only; padding ignored).

        One bincount on the targets' device; no host sync until the next update."""
        if self.spec.scheme != "dynamic":
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
        """Fold the targets seen since the last update into the totals."""
        if self._pending_counts is None:
            return
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
                self.spec.beta,
                self.spec.w_min,
                self.spec.w_max,
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
        k = self.spec.update_every_steps
        if self.spec.scheme != "dynamic" or k <= 0 or step <= 0 or step % k:
            return False
        return self._update(epoch, step, "step")

    def epoch_end(self, epoch: int, step: int) -> bool:
        """Call at each epoch end; updates ``dynamic`` when ``update_every_steps`` is 0."""
        if self.spec.scheme != "dynamic" or self.spec.update_every_steps > 0:
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
            "config": self.spec.as_dict(),
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
        if state.get("config", {}).get("scheme") != self.spec.scheme:
            raise ConfigError(
                f"weighter checkpoint: scheme {state.get('config', {}).get('scheme')!r} "
                f"differs from {self.spec.scheme!r}"
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


__all__ = ["DomainWeighter"]
