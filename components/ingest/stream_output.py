"""The contract's interactions file and the training view written from a stream of sorted
batches (the out-of-core path, ``components.ingest.native``), never the whole table at once.

The bytes are those of the in-memory path (``components.io.write_parquet_atomic`` and
``components.core.training_view.write_training_view``), so ``manifest.json``'s sha256 are the
same whichever engine wrote them: the same writer options, and the same row groups —
``interactions.parquet`` in groups of ``INTERACTIONS_ROW_GROUP`` rows (``pq.write_table``'s
default), each view shard in groups of ``ROW_GROUP_ROWS`` users, each group written from one
contiguous table.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.training_view import (
    ROW_GROUP_ROWS,
    SHARD_WRITE_OPTIONS,
    VIEW_SCHEMA,
    check_n_shards,
    shard_file,
    shard_of,
    view_entry,
)
from components.ingest.engines.base import LABEL_NAMES
from components.io import atomic_file, sha256_file
from components.schema import INTERACTIONS_SCHEMA

INTERACTIONS_ROW_GROUP = 1024 * 1024  # pq.write_table's row groups when none is given
SCAN_BATCH_ROWS = 1 << 20  # rows per batch fetched from DuckDB
_LABELS = pa.array(list(LABEL_NAMES))


@dataclass
class Written:
    """What the stream held: its rows, the splits' counts in order of first appearance, and
    each item's train interactions (item_idx 1..n at positions 1..n)."""

    rows: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)
    train_per_item: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    view: dict | None = None  # the manifest's training_view entry


def write_stream(
    batches: Iterable[pa.RecordBatch],
    interactions_path: Path,
    view_dir: Path | None,
    n_shards: int,
    n_items: int,
    spool: Path,
) -> Written:
    """Write ``batches`` (user_idx, item_idx, timestamp, label: 0 train, 1 valid, 2 test; sorted
    by user, time, file order) as ``interactions_path`` and, when ``view_dir``, the training view
    of ``n_shards`` shards; return the counts the manifest needs. ``spool``: a scratch directory
    (not the output) for the view's rows waiting for their row group."""
    view = _ViewWriter(view_dir, n_shards, spool) if view_dir is not None else None
    try:
        return _write_stream(batches, interactions_path, view, n_items)
    finally:
        if view is not None:
            view.discard()


def _write_stream(
    batches: Iterable[pa.RecordBatch],
    interactions_path: Path,
    view: _ViewWriter | None,
    n_items: int,
) -> Written:
    written = Written(train_per_item=np.zeros(n_items + 1, np.int64))
    label_counts = np.zeros(len(LABEL_NAMES), np.int64)
    first_seen: list[int] = []
    group = _RowGroup()
    with atomic_file(interactions_path, "wb") as handle:
        writer = pq.ParquetWriter(
            handle,
            INTERACTIONS_SCHEMA,
            compression="zstd",
            write_statistics=True,
            use_dictionary=["split"],
        )
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                user, item, time, label = (
                    batch.column(k).to_numpy(zero_copy_only=False) for k in range(4)
                )
                label = label.astype(np.int8, copy=False)
                counts = np.bincount(label, minlength=len(LABEL_NAMES))
                for code in np.flatnonzero(counts).tolist():
                    if code not in first_seen:  # the order pc.value_counts reports
                        first_seen.append(code)
                label_counts += counts
                train = label == 0
                written.train_per_item += np.bincount(item[train], minlength=n_items + 1)
                if view is not None:
                    view.add(user[train], item[train], time[train])
                written.rows += batch.num_rows
                at = 0
                while at < len(user):
                    at += group.fill(user[at:], item[at:], time[at:], label[at:])
                    if group.full():
                        group.write(writer)
            if group.size or written.rows == 0:
                group.write(writer)
        finally:
            writer.close()
    written.split_counts = {LABEL_NAMES[c]: int(label_counts[c]) for c in first_seen}
    if view is not None:
        written.view = view.close()
    return written


class _RowGroup:
    """One row group of ``interactions.parquet`` being filled: preallocated columns, written as
    one contiguous table (as ``pq.write_table`` slices a single-chunk table)."""

    def __init__(self) -> None:
        rows = INTERACTIONS_ROW_GROUP
        self.columns: list[np.ndarray] = [
            np.empty(rows, np.int32),
            np.empty(rows, np.int32),
            np.empty(rows, np.int64),
            np.empty(rows, np.int8),
        ]
        self.size = 0

    def fill(self, *values: np.ndarray) -> int:
        """Append as many of ``values``' rows as fit; return how many."""
        n = min(len(values[0]), INTERACTIONS_ROW_GROUP - self.size)
        for column, value in zip(self.columns, values, strict=True):
            column[self.size : self.size + n] = value[:n]
        self.size += n
        return n

    def full(self) -> bool:
        return self.size == INTERACTIONS_ROW_GROUP

    def write(self, writer) -> None:
        user, item, time, label = (column[: self.size] for column in self.columns)
        writer.write_table(
            pa.table(
                [
                    pa.array(user, pa.int32()),
                    pa.array(item, pa.int32()),
                    pa.array(time, pa.int64()),
                    _LABELS.take(pa.array(label)),
                ],
                schema=INTERACTIONS_SCHEMA,
            )
        )
        self.size = 0


class _ViewWriter:
    """The training view's shards, filled user by user (users arrive in order; one user's train
    rows may span two batches), each shard written in row groups of ``ROW_GROUP_ROWS`` users.

    A shard's rows waiting for their row group are appended to two raw files in ``spool``
    (items int32, timestamps int64) and read back when the group is complete, so memory holds
    one group at a time, not up to shards x ROW_GROUP_ROWS users' histories."""

    def __init__(self, out_dir: Path, n_shards: int, spool: Path) -> None:
        check_n_shards(n_shards)
        self.out = out_dir
        self.out.mkdir(parents=True, exist_ok=True)
        self.n_shards = n_shards
        self.writers: list[Any] = [
            pq.ParquetWriter(out_dir / shard_file(s), VIEW_SCHEMA, **SHARD_WRITE_OPTIONS)
            for s in range(n_shards)
        ]
        self.spool = Path(tempfile.mkdtemp(prefix="view-", dir=spool))
        self.spooled: list[tuple[Any, Any]] = [
            (open(self._path(s, "items"), "wb"), open(self._path(s, "times"), "wb"))
            for s in range(n_shards)
        ]
        self.users: list[list[np.ndarray]] = [[] for _ in range(n_shards)]
        self.lengths: list[list[np.ndarray]] = [[] for _ in range(n_shards)]
        self.n_pending = np.zeros(n_shards, np.int64)
        self.stats = np.zeros((n_shards, 3), np.int64)  # rows, trainable rows, interactions
        self.written_groups = np.zeros(n_shards, np.int64)
        self.carry: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _path(self, shard: int, what: str) -> Path:
        return self.spool / f"{shard}.{what}"

    def add(self, user: np.ndarray, item: np.ndarray, time: np.ndarray) -> None:
        if self.carry is not None:  # the previous batch's last user may go on here
            user, item, time = (
                np.concatenate([a, b]) for a, b in zip(self.carry, (user, item, time), strict=True)
            )
            self.carry = None
        if len(user) == 0:
            return
        last_start = int(np.flatnonzero(np.r_[True, user[1:] != user[:-1]])[-1])
        self.carry = (user[last_start:], item[last_start:], time[last_start:])
        self._users(user[:last_start], item[:last_start], time[:last_start])

    def _users(self, user: np.ndarray, item: np.ndarray, time: np.ndarray) -> None:
        """Complete users' rows (runs of equal user_idx) into their shards' pending groups."""
        if len(user) == 0:
            return
        starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
        lengths = np.diff(np.r_[starts, len(user)])
        users = user[starts]
        shards = shard_of(users, self.n_shards)
        # users and their rows shard by shard, each shard's in user order
        user_order = np.argsort(shards, kind="stable")
        row_order = np.argsort(np.repeat(shards, lengths), kind="stable")
        user_bounds = np.searchsorted(shards[user_order], np.arange(self.n_shards + 1))
        row_bounds = np.r_[0, np.cumsum(lengths[user_order])][user_bounds]
        for s in np.flatnonzero(np.diff(user_bounds)).tolist():
            picked = user_order[user_bounds[s] : user_bounds[s + 1]]
            rows = row_order[row_bounds[s] : row_bounds[s + 1]]
            self._append(s, users[picked], lengths[picked], item[rows], time[rows])

    def _append(self, s: int, users, lengths, items, times) -> None:
        """Queue complete users of shard ``s``; write every row group they complete."""
        while len(users):
            take = min(len(users), ROW_GROUP_ROWS - int(self.n_pending[s]))
            rows = int(lengths[:take].sum())
            self.users[s].append(users[:take])
            self.lengths[s].append(lengths[:take])
            items_file, times_file = self.spooled[s]
            items[:rows].astype(np.int32, copy=False).tofile(items_file)
            times[:rows].astype(np.int64, copy=False).tofile(times_file)
            self.stats[s] += (take, int(np.count_nonzero(lengths[:take] >= 2)), rows)
            self.n_pending[s] += take
            if self.n_pending[s] == ROW_GROUP_ROWS:
                self._flush(s)
            users, lengths, items, times = users[take:], lengths[take:], items[rows:], times[rows:]

    def _flush(self, s: int) -> None:
        """Write shard ``s``'s pending users as one row group (one contiguous table)."""
        for handle in self.spooled[s]:
            handle.close()
        items = np.fromfile(self._path(s, "items"), np.int32)
        times = np.fromfile(self._path(s, "times"), np.int64)
        lengths = np.concatenate(self.lengths[s])
        offsets = pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32))
        table = pa.table(
            {
                "user_idx": pa.array(np.concatenate(self.users[s]), pa.int32()),
                "items": pa.ListArray.from_arrays(offsets, pa.array(items)),
                "timestamps": pa.ListArray.from_arrays(offsets, pa.array(times)),
            }
        ).cast(VIEW_SCHEMA)
        self.writers[s].write_table(table)
        self.written_groups[s] += 1
        self.spooled[s] = (open(self._path(s, "items"), "wb"), open(self._path(s, "times"), "wb"))
        self.users[s], self.lengths[s] = [], []
        self.n_pending[s] = 0

    def close(self) -> dict:
        if self.carry is not None:
            self._users(*self.carry)
            self.carry = None
        entries = []
        for s in range(self.n_shards):
            if self.n_pending[s]:
                self._flush(s)
            elif not self.written_groups[s]:
                # a shard without users still gets one empty row group, as pq.write_table does
                self.writers[s].write_table(VIEW_SCHEMA.empty_table())
            for handle in self.spooled[s]:
                handle.close()
            self.writers[s].close()
            path = self.out / shard_file(s)
            rows, trainable, interactions = (int(v) for v in self.stats[s])
            entries.append(
                {
                    "file": path.name,
                    "rows": rows,
                    "trainable_rows": trainable,
                    "train_interactions": interactions,
                    "sha256": sha256_file(path),
                }
            )
        return view_entry(self.out.name, entries)

    def discard(self) -> None:
        """Close every file and remove the spool (on success and on failure)."""
        for pair in self.spooled:
            for handle in pair:
                handle.close()
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()
        shutil.rmtree(self.spool, ignore_errors=True)
