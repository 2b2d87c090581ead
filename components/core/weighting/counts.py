"""The running counts of the training targets seen, per item and per domain: what ``dynamic``
(and ``dynamic-user``) recompute their sparsity target from at each update (SPEC §5).

Totals agreed at the last update are numpy; the targets added since are one torch tensor on the
targets' device (one bincount per batch, no host sync until the next update). Importing this
module never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from components.core.weighting.incidence import ItemDomains
from components.errors import ConfigError
from components.schema import PADDING_ITEM

if TYPE_CHECKING:
    import torch


class TargetCounts:
    """Targets seen per item_idx (``add``), folded into numpy totals by ``sync``."""

    def __init__(self, incidence: ItemDomains):
        self.incidence = incidence
        self.totals = np.zeros(incidence.n_items + 1, dtype=np.int64)
        self._pending: Any = None  # torch.Tensor once targets are added

    def add(self, target_item_idx: torch.Tensor) -> None:
        """Count a batch of targets (padding is counted at item 0 and ignored later)."""
        import torch

        flat = target_item_idx.reshape(-1)
        size = self.incidence.n_items + 1
        if self._pending is None or self._pending.device != flat.device:
            previous = self._pending
            self._pending = torch.zeros(size, dtype=torch.int64, device=flat.device)
            if previous is not None:
                self._pending += previous.to(flat.device)
        self._pending += torch.bincount(flat, minlength=size)

    def sync(self) -> None:
        """Fold the targets added since the last sync into the totals."""
        if self._pending is None:
            return
        self.totals += self._pending.cpu().numpy()
        self._pending.zero_()

    def per_item(self) -> np.ndarray:
        """Every target seen so far per item_idx (int64, pending ones included)."""
        counts = self.totals.copy()
        if self._pending is not None:
            counts += self._pending.cpu().numpy()
        return counts

    def per_domain(self) -> np.ndarray | None:
        """Targets seen per domain (an item counts once in each of its domains); None if none."""
        if self._pending is None and not self.totals.any():
            return None
        item_counts = self.per_item().astype(np.float64)
        item_counts[PADDING_ITEM] = 0.0
        per_pair = np.repeat(item_counts, self.incidence.lengths)
        return np.bincount(
            self.incidence.codes, weights=per_pair, minlength=self.incidence.n_domains
        )

    def load(self, counts: list[int] | None) -> None:
        """Restore the totals a checkpoint saved (``per_item``); None: nothing seen."""
        self._pending = None
        self.totals = np.zeros(self.incidence.n_items + 1, dtype=np.int64)
        if counts is None:
            return
        if len(counts) != len(self.totals):
            raise ConfigError(
                f"weighter checkpoint: counts for {len(counts) - 1} items, "
                f"the catalogue has {self.incidence.n_items}"
            )
        self.totals[:] = counts


__all__ = ["TargetCounts"]
