"""Online group DRO over target domains: the ``dro`` scheme's state and maths (SPEC §5 "Beyond
DWL"; Sagawa et al., arXiv 1911.08731, streaming form as in arXiv 2501.18117).

Groups G: the weightable domains (train interactions, not unlabelled). A target item i counts in
each of its groups G_i = domains(i) ∩ G with share s_ig = 1/|G_i|; a target in no group (only
unlabelled domains) keeps ω = 1 and enters no group loss: missing metadata is not a group.

The weights of one GLOBAL batch. n_g = Σ_i s_ig (the mass of g), M = Σ_g n_g (the grouped
targets), B = {g : n_g > 0} (the groups present), Q = Σ_{g∈B} q_g:

    ω_i = (M / Q) · Σ_g s_ig · q_g / n_g     (grouped targets; 1 for the others; 0 for padding)

so the train step's Σ_i ω_i·ℓ_i / N is (M/N)·Σ_{g∈B} q_g·ℓ_g / Q + (1/N)·Σ_{ungrouped} ℓ_i with
ℓ_g = Σ_i s_ig·ℓ_i / n_g: exactly Σ_g q_g·ℓ_g when every target is grouped and every group is in
the batch. Always Σ_i ω_i = N (mean weight 1, like every scheme); uniform q on a batch with equal
group masses, or any q on a one-group batch, gives ω ≡ 1. Renormalising by Q keeps the loss an
average when a sparse group is absent from a batch (Σ_g q_g·ℓ_g would shrink by its q_g).

The update, after each optimiser step, from the DETACHED per-example losses of the global batch
(under DDP each rank has its shard's: the per-group sums and masses are all-reduced, so every
rank computes the same q in float64):

    ℓ̃_g ← β·ℓ̃_g + (1−β)·ℓ_g        for g ∈ B; ℓ̃_g = ℓ_g the first time g is seen (an EMA
                                      started at 0 would make a group first seen late, often a
                                      sparse one, look easy during the warm-up)
    log q_g ← log q_g + η·ℓ̃_g,  log q ← log q − logsumexp(log q)      (every g; unseen: ℓ̃_g = 0)

q starts uniform (1/|G|). log q is kept within ``LOG_Q_SPAN`` of its largest entry, so every q_g
stays a positive float64 however long the run. Parameters: ``eta`` and ``beta`` (the EMA factor
shared with ``dynamic``: one default per idea); ``agg``, ``w_min``/``w_max`` and
``update_every_steps`` do not apply (the shares are fixed, ω is not clipped so that Σω·ℓ/N stays
the DRO loss, and q moves at every step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from components.core.weighting.incidence import NO_CODE, ItemDomains
from components.errors import ConfigError

if TYPE_CHECKING:
    import torch

# e^-700 ≈ 1e-304 is still a normal float64 (e^-745 underflows to 0)
LOG_Q_SPAN = 700.0


def log_normalise(log_q: np.ndarray) -> np.ndarray:
    """``log_q`` floored at max − LOG_Q_SPAN and shifted so that Σ exp = 1."""
    if log_q.size == 0:
        return log_q
    shifted = np.maximum(log_q - log_q.max(), -LOG_Q_SPAN)  # shift first: exact at the top
    return shifted - np.log(np.exp(shifted).sum())


class GroupDRO:
    """q over the groups, the EMA group losses ℓ̃, the per-example ω of a batch, the update."""

    def __init__(self, incidence: ItemDomains, groups: np.ndarray, eta: float, beta: float):
        groups = np.asarray(groups, dtype=bool)
        self.group_domains = np.flatnonzero(groups)  # domain code of each group
        k = self.k = len(self.group_domains)
        self.eta, self.beta = float(eta), float(beta)
        column = np.full(len(groups), k, dtype=np.int64)  # domain code → group column (k: none)
        column[self.group_domains] = np.arange(k)
        padded = incidence.padded(keep=groups)  # [n_items + 1, m] group domains per item
        in_group = padded != NO_CODE
        n_groups = in_group.sum(axis=1)
        self._columns = np.where(in_group, column[np.maximum(padded, 0)], k)  # k: empty slot
        self._shares = np.where(in_group, 1.0 / np.maximum(n_groups, 1)[:, None], 0.0)
        self._grouped = n_groups > 0  # padding item 0: False
        self.log_q = np.full(k, -np.log(k) if k else 0.0)
        self.loss_ema = np.zeros(k)
        self.seen = np.zeros(k, dtype=bool)
        self.updates = 0
        self._tables: dict = {}  # device → (columns, shares, grouped)
        self._q_on: dict = {}  # device → q as a float64 tensor, until the next update

    @property
    def q(self) -> np.ndarray:
        return np.exp(self.log_q)

    # -- torch side: one gather per batch, no per-example Python -------------------------------

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        key = str(device)
        if key not in self._tables:
            self._tables[key] = (
                torch.from_numpy(self._columns).to(device),
                torch.from_numpy(self._shares).to(device),
                torch.from_numpy(self._grouped).to(device),
            )
        return self._tables[key]

    def _group_sums(self, items: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
        """Σ_i s_ig (and Σ_i s_ig·values_i when ``values``) per group: [k] or [2, k] float64."""
        import torch

        columns, shares, _ = self._on(items.device)
        flat = items.reshape(-1)
        cols, share = columns[flat].reshape(-1), shares[flat]  # [n·m], [n, m]
        out = torch.zeros(2, self.k + 1, dtype=torch.float64, device=items.device)
        out[0].index_add_(0, cols, share.reshape(-1))
        if values is None:
            return out[0, : self.k]
        weighted = share * values.detach().reshape(-1, 1).to(torch.float64)
        out[1].index_add_(0, cols, weighted.reshape(-1))
        return out[:, : self.k].contiguous()  # all_reduce needs a dense tensor

    def example_weights(self, targets: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """ω of ``targets`` (float32, same shape), with the group masses of the global
        ``batch`` (every target of the step, padding allowed; ``targets`` is a part of it)."""
        import torch

        device = targets.device
        columns, shares, grouped = self._on(device)
        mass = self._group_sums(batch.to(device))  # n_g
        key = str(device)
        if key not in self._q_on:
            self._q_on[key] = torch.from_numpy(self.q).to(device)
        q = self._q_on[key]
        present = mass > 0
        q_present = torch.where(present, q, torch.zeros_like(q))
        scale = mass.sum() / q_present.sum().clamp_min(torch.finfo(torch.float64).tiny)
        factor = torch.zeros(self.k + 1, dtype=torch.float64, device=device)
        factor[: self.k] = scale * q_present / torch.where(present, mass, torch.ones_like(mass))
        omega = (shares[targets] * factor[columns[targets]]).sum(dim=-1)
        omega = torch.where(grouped[targets], omega, torch.ones_like(omega))
        return torch.where(targets > 0, omega, torch.zeros_like(omega)).to(torch.float32)

    def observe(self, targets: torch.Tensor, losses: torch.Tensor) -> None:
        """Update q from this process's targets and their detached losses (all-reduced over
        the processes first when torch.distributed runs with more than one)."""
        import torch.distributed as dist

        sums = self._group_sums(targets, losses)  # [2, k]: masses, loss sums
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)
        mass, loss_sum = sums.cpu().numpy()
        self.update(loss_sum, mass)

    def update(self, loss_sums: np.ndarray, masses: np.ndarray) -> None:
        """One step of the module docstring's update from a batch's per-group Σ s·ℓ and Σ s."""
        present = np.asarray(masses) > 0
        batch = np.where(present, loss_sums / np.where(present, masses, 1.0), 0.0)
        again = present & self.seen
        ema = self.beta * self.loss_ema + (1.0 - self.beta) * batch
        self.loss_ema = np.where(again, ema, np.where(present, batch, self.loss_ema))
        self.seen = self.seen | present
        self.log_q = log_normalise(self.log_q + self.eta * self.loss_ema)
        self.updates += 1
        self._q_on.clear()

    def domain_weights(self, n_domains: int) -> np.ndarray:
        """Per domain: |G|·q_g for a group (1 = uniform, the neutral weight), 1 otherwise."""
        weights = np.ones(n_domains)
        weights[self.group_domains] = self.k * self.q
        return weights

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "log_q": self.log_q.tolist(),
            "loss_ema": self.loss_ema.tolist(),
            "seen": self.seen.tolist(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["log_q"]) != self.k:
            raise ConfigError(
                f"weighter checkpoint: dro state for {len(state['log_q'])} groups, "
                f"this run has {self.k}"
            )
        self.log_q = np.asarray(state["log_q"], dtype=np.float64)
        self.loss_ema = np.asarray(state["loss_ema"], dtype=np.float64)
        self.seen = np.asarray(state["seen"], dtype=bool)
        self.updates = int(state["updates"])
        self._q_on.clear()


__all__ = ["LOG_Q_SPAN", "GroupDRO", "log_normalise"]
