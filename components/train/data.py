"""Training windows: each user's train-split sequence as dense next-item examples (SPEC §6).

A user's last ``max_len + 1`` train items w give input = w[:-1] and targets = w[1:], both
LEFT-padded with 0 to ``max_len`` (the same layout as ``UserSequences.prefixes``), so every
non-padded input position t predicts the item after it. Windows are cut from the CSR arrays
per batch, so memory does not grow with max_len × users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainWindows:
    offsets: np.ndarray  # [n_users + 1] CSR offsets of the train sequences
    item_idx: np.ndarray  # [n_train_interactions] int64
    max_len: int

    @property
    def users(self) -> np.ndarray:
        """Users with at least two train items (one input, one target)."""
        return np.flatnonzero(np.diff(self.offsets) >= 2)

    @property
    def lengths(self) -> np.ndarray:
        """Train items per user [n_users]."""
        return np.diff(self.offsets)

    @property
    def targets_per_user(self) -> float:
        """Mean next-item targets per training user (min(length - 1, max_len) each)."""
        lengths = self.lengths[self.users]
        return float(np.minimum(lengths - 1, self.max_len).mean())

    def batch(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """users [B] → (inputs [B, max_len], targets [B, max_len]) int64, left-padded with 0."""
        ends = self.offsets[users + 1]  # one past each user's last train item
        cols = ends[:, None] - (self.max_len + 1) + np.arange(self.max_len + 1)[None, :]
        inside = cols >= self.offsets[users][:, None]
        window = np.where(inside, self.item_idx[np.clip(cols, 0, None)], 0)  # [B, max_len + 1]
        inputs, targets = window[:, :-1], window[:, 1:]
        targets = np.where(inputs > 0, targets, 0)  # the first item is a target of nothing
        return inputs, targets


def epoch_batches(
    users: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    lengths: np.ndarray | None = None,
    bucket: int = 0,
) -> list[np.ndarray]:
    """Users shuffled by (seed, epoch) — reproducible after a resume — cut into batches.

    ``bucket`` > 1 (with ``lengths`` [n_users]): within each run of ``bucket`` batches, users are
    sorted by length before cutting, then the batch order is shuffled. Batches of similar
    lengths carry less padding, which is most of the work when sequences are short.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(users)
    if bucket <= 1 or lengths is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    chunk = batch_size * bucket
    runs = [order[i : i + chunk] for i in range(0, len(order), chunk)]
    order = np.concatenate([r[np.argsort(lengths[r], kind="stable")] for r in runs])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This process's share of a global batch (contiguous, sizes differ by at most one)."""
    return np.array_split(batch, world_size)[rank]
