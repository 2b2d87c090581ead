"""The per-example loss weights of one training run: ``DomainWeighter`` (SPEC §5).

The train step holds one: it turns a batch of target item indices into per-example weights ω
with one gather from a cached item → ω lookup and, for ``dynamic``, moves the domain weights
toward their target with an EMA (every epoch, or every K optimiser steps from the running counts
of the targets seen). Under DDP every rank observes the whole global batch (the train step
feeds it the batch before sharding), so all ranks hold the same counts and reach the same
weights without communicating.

``dynamic-user`` is ``dynamic`` (same weights, same updates) whose ω applies only to targets in
a domain holding ≥ user_theta of the user's train history (``user_gate``; 1 otherwise): the step
passes each target's user, and ``set_user_history`` the train sequences once. ``dro`` weighs the
batch's groups by online group DRO (``dro``): its ω needs the global batch's targets, and
``observe_losses`` (after each optimiser step) updates q from the detached per-example losses.

Importing this module never imports torch; torch is imported inside the methods that take
tensors.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from components.core.weighting.counts import TargetCounts
from components.core.weighting.dro import GroupDRO
from components.core.weighting.incidence import ItemDomains
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
from components.core.weighting.user_gate import UserDomainGate
from components.core.weighting.weights_file import WEIGHTS_VERSION, validate_weights
from components.errors import ConfigError
from components.schema import PADDING_ITEM

if TYPE_CHECKING:  # torch only for the annotations: importing this module stays torch-free
    import torch

log = logging.getLogger("dwlrec.weighting")

# the schemes whose domain weights move toward a sparsity target with an EMA (SPEC §5)
DYNAMIC_SCHEMES = ("dynamic", "dynamic-user")


class DomainWeighter:
    """Per-domain weights w_d and per-example weights ω for one training run.

    ``example_weights`` maps target item indices to ω with one gather from a cached
    item→ω lookup tensor (padding item 0 → 0.0). ``observe`` accumulates the targets seen (one
    bincount); ``step_end``/``epoch_end`` update the ``dynamic`` weights and return True when
    they changed. ``history`` records the weights after every update, initial weights first
    (``dro``: |G|·q_g per group after each epoch, and q itself under "q").
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
        self._incidence = ItemDomains.from_lists(item_domains, self.domains)
        self.n_items = self._incidence.n_items
        self._dynamic = spec.scheme in DYNAMIC_SCHEMES
        # dro: groups = the weightable domains; dynamic-user: the gate, once given the history
        self._dro = (
            GroupDRO(self._incidence, self._active(), spec.eta, spec.beta)
            if spec.scheme == "dro"
            else None
        )
        self._gate: UserDomainGate | None = None
        self._counts = TargetCounts(self._incidence)  # the targets seen (dynamic schemes)
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

    @property
    def needs_global_targets(self) -> bool:
        """Whether ``observe`` / ``example_weights`` need every target of the global batch
        (dynamic counts them; dro weighs by their group masses): a rank streaming only its
        local batch gathers them from the others first (the train step)."""
        return self._dynamic or self._dro is not None

    @property
    def needs_users(self) -> bool:
        """Whether ``example_weights`` needs the user of each target (``dynamic-user``)."""
        return self.spec.scheme == "dynamic-user"

    def set_user_history(self, offsets: np.ndarray, item_idx: np.ndarray) -> None:
        """The users' train items as CSR (``offsets`` [n_users + 1], ``item_idx``), for the
        ``dynamic-user`` gate; computed once, a no-op for the other schemes."""
        if self.needs_users:
            self._gate = UserDomainGate(offsets, item_idx, self._incidence, self.spec.user_theta)

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
        if scheme in ("none", "dro"):  # dro: no sparsity target, q starts uniform
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
        if self._dynamic:
            return np.ones(len(self.domains))
        return self.target_weights()

    # -- per step --------------------------------------------------------------------------

    def current_weights(self) -> dict[str, float]:
        return {d: float(w) for d, w in zip(self.domains, self._weights, strict=True)}

    def group_weights(self) -> dict[str, float] | None:
        """``dro``: q per group (the weightable domains; sums to 1); None for other schemes."""
        if self._dro is None:
            return None
        groups = [self.domains[g] for g in self._dro.group_domains]
        return dict(zip(groups, self._dro.q.tolist(), strict=True))

    def item_lookup(self) -> np.ndarray:
        """ω per item_idx (float32 [n_items + 1]): agg of w_d over the item's domains; 0 = 0.0."""
        offsets = self._incidence.offsets
        per_pair = self._weights[self._incidence.codes]
        starts = offsets[1:-1]  # real items 1..n (each has >= 1 domain)
        lookup = np.zeros(self.n_items + 1, dtype=np.float64)
        if self.n_items:
            if self.spec.agg == "max":
                lookup[1:] = np.maximum.reduceat(per_pair, starts)
            else:
                lookup[1:] = np.add.reduceat(per_pair, starts) / np.diff(offsets)[1:]
        if self.spec.scheme == "none":
            lookup[1:] = 1.0  # exactly 1.0, whatever floating point does to sums
        return lookup.astype(np.float32)

    def _lookup_on(self, device: torch.device | str) -> torch.Tensor:
        import torch

        key = str(device)
        if key not in self._lookup_cache:
            self._lookup_cache[key] = torch.from_numpy(self.item_lookup()).to(device)
        return self._lookup_cache[key]

    def example_weights(
        self,
        target_item_idx: torch.Tensor,
        users: torch.Tensor | None = None,
        batch: ArrayLike | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-example weights ω (float32, same shape and device as ``target_item_idx``).

        ``users``: the user of each target (``dynamic-user``). ``batch``: every target of the
        global batch that ``target_item_idx`` is part of (``dro``'s group masses; default
        ``target_item_idx`` itself, right for one process)."""
        import torch

        if self._dro is not None:
            whole = target_item_idx if batch is None else torch.as_tensor(batch)
            return self._dro.example_weights(target_item_idx, whole)
        omega = self._lookup_on(target_item_idx.device)[target_item_idx]
        if not self.needs_users:
            return omega
        if self._gate is None or users is None:
            raise ValueError("dynamic-user: needs set_user_history() and the users of the targets")
        passes = self._gate.passes(target_item_idx, users) | (target_item_idx == PADDING_ITEM)
        return torch.where(passes, omega, torch.ones_like(omega))  # padding: lookup's 0

    def observe_losses(self, target_item_idx: torch.Tensor, per_example: torch.Tensor) -> None:
        """After each optimiser step: this process's targets and their per-example losses
        (detached here); ``dro`` updates q (all-reduced under DDP), the others do nothing."""
        if self._dro is None:
            return
        self._dro.observe(target_item_idx, per_example.detach())
        self._weights = self._dro.domain_weights(len(self.domains))

    def observe(self, target_item_idx: torch.Tensor) -> None:
        """Add a batch of targets to the running counts (``dynamic`` only; padding ignored).

        One bincount on the targets' device; no host sync until the next update."""
        if self._dynamic:
            self._counts.add(target_item_idx)

    def running_domain_counts(self) -> np.ndarray | None:
        """Targets seen per domain so far (an item counts once in each of its domains)."""
        return self._counts.per_domain()

    def _dynamic_target(self) -> np.ndarray:
        """Target from the running counts once every domain with train data has been seen;
        until then (e.g. early in epoch 1 with K-step updates) from the stats step's counts."""
        counts = self.running_domain_counts()
        if counts is not None and np.all(counts[self._active()] > 0):
            counts = np.where(self._active(), counts, 0.0)
            return self.target_weights(counts)
        return self.target_weights()

    def _update(self, epoch: int, step: int, event: str) -> bool:
        self._counts.sync()
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
        if not self._dynamic or k <= 0 or step <= 0 or step % k:
            return False
        return self._update(epoch, step, "step")

    def epoch_end(self, epoch: int, step: int) -> bool:
        """Call at each epoch end; updates ``dynamic`` when ``update_every_steps`` is 0 and
        records ``dro``'s q (updated at every step by ``observe_losses``)."""
        if self._dro is not None:
            self._record(epoch, step, "epoch")
            return False
        if not self._dynamic or self.spec.update_every_steps > 0:
            return False
        return self._update(epoch, step, "epoch")

    def _record(self, epoch: int, step: int, event: str) -> None:
        entry = {"epoch": int(epoch), "step": int(step), "event": event}
        entry["weights"] = self.current_weights()
        q = self.group_weights()
        if q is not None:
            entry["q"] = q
        self.history.append(entry)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "version": WEIGHTS_VERSION,
            "config": self.spec.as_dict(),
            "domains": list(self.domains),
            "weights": self._weights.tolist(),
            "updates": self._updates,
            "item_counts": self._counts.per_item().tolist(),
            "history": [_copy_entry(h) for h in self.history],
            "dro": self._dro.state_dict() if self._dro is not None else None,
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
        self.history = [_copy_entry(h) for h in state["history"]]
        if self._dro is not None:
            self._dro.load_state_dict(state["dro"])
        self._counts.load(state.get("item_counts"))
        self._lookup_cache.clear()


def _copy_entry(entry: dict) -> dict:
    """A history entry with its own dicts (weights, and dro's q)."""
    return {k: dict(v) if isinstance(v, dict) else v for k, v in entry.items()}


__all__ = ["DYNAMIC_SCHEMES", "DomainWeighter"]
