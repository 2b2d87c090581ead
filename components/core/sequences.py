"""User sequences from the interactions table (SPEC §3), shared by the train and evaluate steps.

Numpy only. The interactions table is sorted by (user_idx, timestamp, original order), so each
user's interactions are one contiguous, time-ordered run: we keep them as CSR arrays. Model
inputs are LEFT-padded with item 0 (the most recent item is the last column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import InputError
from components.schema import SPLITS

SPLIT_CODE = {name: code for code, name in enumerate(SPLITS)}  # train 0, valid 1, test 2


@dataclass(frozen=True)
class UserSequences:
    """Every user's item sequence in time order, as CSR arrays."""

    offsets: np.ndarray  # [n_users + 1] int64: user u's interactions are [offsets[u], offsets[u+1])
    item_idx: np.ndarray  # [n_interactions] int64
    split_code: np.ndarray  # [n_interactions] int8: 0 train, 1 valid, 2 test
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_interactions(cls, interactions: pa.Table, n_items: int) -> UserSequences:
        users = interactions.column("user_idx").to_numpy()
        if len(users) and np.any(np.diff(users) < 0):
            raise InputError("interactions.parquet: rows are not sorted by user_idx (SPEC §3)")
        n_users = int(users.max()) + 1 if len(users) else 0
        counts = np.bincount(users, minlength=n_users)
        offsets = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        split = interactions.column("split")
        codes = np.full(len(users), -1, dtype=np.int8)
        for name, code in SPLIT_CODE.items():
            codes[pc.equal(split, name).to_numpy(zero_copy_only=False)] = code
        if np.any(codes < 0):
            raise InputError(f"interactions.parquet: 'split' values outside {list(SPLITS)}")
        item_idx = interactions.column("item_idx").to_numpy().astype(np.int64)
        return cls(offsets=offsets, item_idx=item_idx, split_code=codes, n_items=n_items)

    def train_sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets, item_idx) of each user's train-split interactions, in time order."""
        keep = self.split_code == SPLIT_CODE["train"]
        users = np.repeat(np.arange(self.n_users), np.diff(self.offsets))[keep]
        counts = np.bincount(users, minlength=self.n_users)
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return offsets, self.item_idx[keep]

    def first_of_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(position, user) of each user's first interaction of ``split``, in user order."""
        positions = np.flatnonzero(self.split_code == SPLIT_CODE[split])
        users = np.searchsorted(self.offsets, positions, side="right") - 1
        first = np.ones(len(positions), dtype=bool)
        first[1:] = users[1:] != users[:-1]
        return positions[first], users[first]

    def history(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets, item_idx) of what each user interacted with before their first
        ``split`` interaction. Rows are the users with a ``split`` interaction, in user order
        (the rows of ``prefixes``)."""
        positions, users = self.first_of_split(split)
        starts = self.offsets[users]
        lengths = positions - starts
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        return offsets, self.item_idx[np.repeat(starts, lengths) + within]

    def prefixes(self, split: str, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each user with an interaction in ``split``: (user_idx, prefix, target).

        target = the user's first interaction of ``split``; prefix = the ``max_len`` interactions
        before it (any split), left-padded with 0. With leave-one-out, the valid prefix is the
        train items and the test prefix is train + valid: the target is never in its prefix.
        """
        positions, users = self.first_of_split(split)
        # columns j = 0..max_len-1 read positions (target - max_len + j); before the user's start → pad
        cols = positions[:, None] - max_len + np.arange(max_len)[None, :]
        valid = cols >= self.offsets[users][:, None]
        prefix = np.where(valid, self.item_idx[np.clip(cols, 0, None)], 0)
        return users.astype(np.int64), prefix.astype(np.int64), self.item_idx[positions]


def trim_left_padding(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop the leading columns that are padding in every row of ``arrays[0]``.

    The model's output does not depend on leading padding (padded keys are masked, positions are
    counted from the right), so this only saves work: short-sequence batches get short.
    """
    used = np.flatnonzero((arrays[0] != 0).any(axis=0))
    first = int(used[0]) if len(used) else arrays[0].shape[1] - 1
    return tuple(a[:, first:] for a in arrays)
