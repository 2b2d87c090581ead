"""Training windows streamed from the sharded training view, in bounded memory (issue 15).

``StreamingWindows`` is an ``IterableDataset`` for ``DataLoader(ds, batch_size=None,
num_workers=cfg.num_workers)``. Each reader — one (rank, data-loader worker) — reads only its
shards (``components.core.training_view.assign_shards``) with ``ParquetFile.iter_batches``, cuts
each user's window with ``TrainWindows.batch`` (the in-memory path's own code, so the windows are
identical), shuffles through a bounded buffer and yields full batches of ``batch_size`` (this
rank's share of the global batch).

- **Equal steps.** Every reader yields exactly ``steps_per_reader = ceil(max trainable rows of
  any reader / batch_size)`` batches per epoch (from the manifest's per-shard counts), so every
  rank yields ``steps_per_reader × readers per rank`` batches and DDP never waits on a rank that
  ran out: a reader with fewer users wraps around its own shards (a new pass, reshuffled) until
  its count is reached. Every trainable user is seen at least once per epoch; the users of the
  smaller readers are repeated (like ``DistributedSampler`` padding). Nothing is dropped.
- **Deterministic.** Shard order, row-group order and the buffer are drawn from
  ``numpy.random.default_rng([seed, epoch, rank, worker])``: the same (seed, epoch) gives the same
  batches, so a run resumes at an epoch boundary with the same data (``set_epoch``), or mid-epoch
  (``set_epoch(epoch, start_batch=k)``: the batches after the rank's first k, by regenerating and
  dropping those k, so it costs reading them again but not training on them).
- **Bounded memory.** A reader holds one record batch (``read_rows`` users, in the row groups of
  ``ROW_GROUP_ROWS``) and ``shuffle_buffer`` windows of 2 × max_len int64, whatever the dataset's
  size. Users with fewer than 2 train items are skipped, as in memory.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from components.core.training_view import assign_shards, check_training_view
from components.errors import ConfigError, InputError
from components.options import Checked
from components.schema import MANIFEST_FILE
from components.train.data import TrainWindows

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]  # users [n], inputs [n, L], targets [n, L]


@dataclass(frozen=True)
class StreamingConfig(Checked):
    """How one rank streams the view. ``batch_size`` is this rank's (local) batch."""

    batch_size: int
    max_len: int
    seed: int
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0  # the DataLoader's; 0 = iterate in the main process (one reader)
    shuffle_buffer: int = 8192  # windows held for shuffling; 0 = the shards' order
    read_rows: int = 1024  # users per record batch read from a shard
    with_users: bool = False  # yield (users, inputs, targets) instead of (inputs, targets)

    def validate(self) -> None:
        for name in ("batch_size", "max_len", "read_rows", "world_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"streaming {name} {getattr(self, name)}: expected >= 1")
        for name in ("num_workers", "shuffle_buffer"):
            if getattr(self, name) < 0:
                raise ConfigError(f"streaming {name} {getattr(self, name)}: expected >= 0")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"streaming rank {self.rank}: expected 0..{self.world_size - 1}")

    @property
    def workers(self) -> int:
        """Readers per rank."""
        return max(self.num_workers, 1)


def read_view_entry(dataset_dir: str | Path) -> dict:
    """The ``training_view`` entry of a dataset's manifest; InputError when there is none."""
    path = Path(dataset_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from exc
    entry = manifest.get("training_view") if isinstance(manifest, dict) else None
    if entry is None:
        raise InputError(
            f"{path}: no training_view; re-run the ingest step with --train-shards S (S >= 1)"
        )
    return entry


class StreamingWindows(IterableDataset):
    """Batches of (inputs [B, max_len], targets [B, max_len]) int64 tensors streamed from the
    training view; every rank yields ``len(self)`` batches per epoch (see the module doc)."""

    def __init__(
        self, dataset_dir: str | Path, entry: dict, cfg: StreamingConfig, *, verify: bool = True
    ) -> None:
        self.cfg = cfg
        self.epoch = 0
        self.start_batch = 0
        self.paths = check_training_view(dataset_dir, entry, verify_sha256=verify)
        n_shards = len(self.paths)
        self.readers = {  # worker → its shards, for this rank (ConfigError on a bad S first)
            w: assign_shards(n_shards, cfg.world_size, cfg.rank, cfg.num_workers, w)
            for w in range(cfg.workers)
        }
        trainable = [shard["trainable_rows"] for shard in entry["shards"]]
        all_readers = [
            assign_shards(n_shards, cfg.world_size, r, cfg.num_workers, w)
            for r in range(cfg.world_size)
            for w in range(cfg.workers)
        ]
        rows = [sum(trainable[s] for s in shards) for shards in all_readers]
        if min(rows) == 0:  # it could not wrap around anything: it would stall every rank
            empty = [self.paths[s].name for s, n in enumerate(trainable) if n == 0]
            raise InputError(
                f"{self.paths[0].parent}: a reader's shards ({', '.join(empty[:5])}…) hold no "
                f"user with 2+ train items; re-ingest with fewer --train-shards"
            )
        self.steps_per_reader = math.ceil(max(rows) / cfg.batch_size)

    @classmethod
    def from_dataset(
        cls, dataset_dir: str | Path, cfg: StreamingConfig, *, verify: bool = True
    ) -> StreamingWindows:
        """The view of the ingest output ``dataset_dir`` (its manifest's training_view)."""
        return cls(dataset_dir, read_view_entry(dataset_dir), cfg, verify=verify)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Batches of ``epoch`` next, from the rank's batch ``start_batch`` on (a resume; call
        before creating the DataLoader iterator: ``persistent_workers`` would keep old values)."""
        total = self.steps_per_reader * self.cfg.workers
        if not 0 <= start_batch <= total:
            raise ConfigError(f"start_batch {start_batch}: expected 0..{total} (batches per epoch)")
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches this rank yields this epoch (all of them unless resumed mid-epoch): the same
        on every rank."""
        return self.steps_per_reader * self.cfg.workers - self.start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        info = get_worker_info()
        got = 1 if info is None else info.num_workers
        if got != self.cfg.workers:
            raise ConfigError(
                f"StreamingWindows was built for num_workers={self.cfg.num_workers} but runs "
                f"in a DataLoader with num_workers={0 if info is None else got}"
            )
        for batch in self.reader_batches(0 if info is None else info.id):
            yield tuple(torch.from_numpy(a) for a in batch)

    def reader_batches(self, worker: int) -> Iterator[tuple[np.ndarray, ...]]:
        """The numpy batches of reader (this rank, ``worker``) this epoch: ``steps_per_reader``,
        less those before ``start_batch``. A DataLoader takes its workers' batches in turn, so
        the rank's batch i is worker i % W's batch i // W."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, self.epoch, cfg.rank, worker])
        stream = self._passes(self.readers[worker], rng)
        skip = max(0, -(-(self.start_batch - worker) // cfg.workers))  # its i < start_batch
        batches = _batches(stream, cfg.batch_size, self.steps_per_reader)
        for users, inputs, targets in itertools.islice(batches, skip, None):
            yield (users, inputs, targets) if cfg.with_users else (inputs, targets)

    def _passes(self, shards: list[int], rng: np.random.Generator) -> Iterator[Chunk]:
        """Shuffled windows of the reader's trainable users, pass after pass (the wrap-around),
        each pass in a new random shard and row-group order and drained before the next, so the
        first pass is complete before any user repeats. Stopped by the consumer."""
        while True:
            produced = 0
            for chunk in _shuffle(self._one_pass(shards, rng), self.cfg.shuffle_buffer, rng):
                produced += len(chunk[0])
                yield chunk
            if produced == 0:  # the manifest promised rows (checked in __init__): a stale view
                names = ", ".join(self.paths[s].name for s in shards)
                raise InputError(f"{names}: no user with 2+ train items, unlike the manifest")

    def _one_pass(self, shards: list[int], rng: np.random.Generator) -> Iterator[Chunk]:
        for shard in rng.permutation(shards):
            yield from self._read_shard(self.paths[shard], rng)

    def _read_shard(self, path: Path, rng: np.random.Generator) -> Iterator[Chunk]:
        try:
            handle = pq.ParquetFile(path)
            groups = rng.permutation(handle.num_row_groups).tolist()
            batches = handle.iter_batches(
                batch_size=self.cfg.read_rows, row_groups=groups, columns=["user_idx", "items"]
            )
            for batch in batches:
                yield windows_of(batch, self.cfg.max_len)
        except OSError as exc:  # ArrowIOError/ArrowInvalid derive from it: a corrupt page
            raise InputError(f"{path}: cannot read the training view shard ({exc})") from exc


def windows_of(batch, max_len: int) -> Chunk:
    """(users, inputs, targets) of the users with 2+ items of a record batch of the view, cut by
    ``TrainWindows.batch`` from the batch's own list offsets (no copy of the lists)."""
    items = batch.column(batch.schema.get_field_index("items"))
    offsets = items.offsets.to_numpy().astype(np.int64)  # into .values, also when sliced
    values = items.values.to_numpy().astype(np.int64)
    local = TrainWindows(offsets=offsets, item_idx=values, max_len=max_len)
    rows = local.users  # 2+ train items
    users = batch.column(batch.schema.get_field_index("user_idx")).to_numpy()
    inputs, targets = local.batch(rows)
    return users[rows].astype(np.int64), inputs, targets


def _shuffle(chunks: Iterator[Chunk], capacity: int, rng: np.random.Generator) -> Iterator[Chunk]:
    """Shuffle a finite stream through a buffer of ``capacity`` rows: each incoming row takes
    the slot of a random buffered row, which goes out; at the end the buffer goes out in a random
    order. Holds ``capacity`` rows and one chunk at most."""
    if capacity == 0:
        yield from chunks
        return
    buffer: list[np.ndarray] = []
    filled = 0
    for chunk in chunks:
        if not buffer:
            buffer = [np.zeros((capacity, *a.shape[1:]), dtype=a.dtype) for a in chunk]
        n = len(chunk[0])
        start = min(capacity - filled, n)  # while filling: append what fits
        for slot, a in zip(buffer, chunk, strict=True):
            slot[filled : filled + start] = a[:start]
        filled += start
        while start < n:  # every further row evicts a random one
            k = min(n - start, capacity)
            slots = rng.choice(capacity, size=k, replace=False)
            yield tuple(slot[slots] for slot in buffer)  # type: ignore[misc]
            for slot, a in zip(buffer, chunk, strict=True):
                slot[slots] = a[start : start + k]
            start += k
    if filled:
        order = rng.permutation(filled)
        yield tuple(slot[order] for slot in buffer)  # type: ignore[misc]


def _batches(chunks: Iterator[Chunk], batch_size: int, steps: int) -> Iterator[Chunk]:
    """Exactly ``steps`` full batches of ``batch_size`` rows cut from an endless stream."""
    pending: list[Chunk] = []
    held = 0
    made = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk[0])
        if held < batch_size:
            continue
        rows = tuple(np.concatenate(parts) for parts in zip(*pending, strict=True))
        cut = 0
        while held - cut >= batch_size:
            yield tuple(a[cut : cut + batch_size] for a in rows)  # type: ignore[misc]
            cut += batch_size
            made += 1
            if made == steps:
                return
        pending = [tuple(a[cut:] for a in rows)]  # type: ignore[list-item]
        held -= cut
