"""The ``dynamic-user`` gate (SPEC §5 "Beyond DWL", the power-user framing of PinnerFormerLite):
which targets are in a domain that holds ≥ θ of their USER's train history.

The user's share of domain d is the one of the stats step's power users (SPEC §4): the user's
train interactions whose item is in d over all the user's train interactions (an interaction
counts once in each domain of its item, so shares can sum above 1). It is computed once, at
training start, from the train sequences' CSR (``TrainWindows.offsets`` / ``item_idx``), and
kept as the sorted keys user·|D| + d of the qualifying (user, domain) pairs: a per-example test
is one gather of the target's domains and one ``searchsorted``, whatever the number of users
and domains. A multi-domain target passes when ANY of its domains qualifies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from components.core.weighting.incidence import NO_CODE, ItemDomains
from components.errors import ConfigError

if TYPE_CHECKING:
    import torch


def qualifying_keys(
    offsets: np.ndarray, item_idx: np.ndarray, incidence: ItemDomains, theta: float
) -> np.ndarray:
    """Sorted int64 keys user·|D| + d of every (user, domain) with share ≥ ``theta``.

    ``offsets`` [n_users + 1] and ``item_idx`` [interactions]: each user's train items (CSR)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    if len(item_idx) != offsets[-1] or (len(item_idx) and item_idx.max() > incidence.n_items):
        raise ConfigError(
            f"user history: {len(item_idx)} items for CSR offsets ending at {offsets[-1]}, "
            f"items up to {item_idx.max(initial=0)} (the catalogue has {incidence.n_items})"
        )
    lengths = np.diff(offsets)
    user_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    owner, codes = incidence.pairs_of(item_idx)  # one row per (interaction, domain)
    keys, counts = np.unique(user_of[owner] * incidence.n_domains + codes, return_counts=True)
    shares = counts / lengths[keys // incidence.n_domains]
    return keys[shares >= theta]


class UserDomainGate:
    """``passes(targets, users)``: True where a domain of the target holds ≥ θ of the user's
    train history."""

    def __init__(
        self, offsets: np.ndarray, item_idx: np.ndarray, incidence: ItemDomains, theta: float
    ):
        self.n_domains = incidence.n_domains
        self.keys = qualifying_keys(offsets, item_idx, incidence, theta)
        self._padded = incidence.padded()  # [n_items + 1, m] domain codes, NO_CODE unused
        self._tables: dict = {}  # device → (keys, padded)

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        key = str(device)
        if key not in self._tables:
            self._tables[key] = (
                torch.from_numpy(self.keys).to(device),
                torch.from_numpy(self._padded).to(device),
            )
        return self._tables[key]

    def passes(self, targets: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """Bool, the shape of ``targets``; ``users`` gives the user of each target (same shape)."""
        import torch

        if users.shape != targets.shape:
            raise ValueError(
                f"users {tuple(users.shape)} must match targets {tuple(targets.shape)}"
            )
        keys, padded = self._on(targets.device)
        if keys.numel() == 0:
            return torch.zeros_like(targets, dtype=torch.bool)
        codes = padded[targets]  # [..., m]
        wanted = users.to(targets.device, torch.int64).unsqueeze(-1) * self.n_domains + codes
        at = torch.searchsorted(keys, wanted.reshape(-1)).clamp_max(keys.numel() - 1)
        found = (keys[at].reshape(wanted.shape) == wanted) & (codes != NO_CODE)
        return found.any(dim=-1)


__all__ = ["UserDomainGate", "qualifying_keys"]
