"""The training view: each user's train-split sequence as a sharded Parquet dataset (issue 15).

Written by the ingest step next to ``interactions.parquet`` and read by a streaming trainer
(``components.train.streaming``) that never holds the whole dataset. The layout, owned here:

- ``train_view/part-00000.parquet`` … ``part-{S-1:05d}.parquet``, one row per user with at least
  one train interaction: ``user_idx`` int32, ``items`` list<int32> (the user's train items in
  time order, the order of ``interactions.parquet``), ``timestamps`` list<int64>; rows sorted by
  user, written in row groups of at most ``ROW_GROUP_ROWS`` users so a reader's memory is bounded.
- user u lives in shard ``stable_hash(u) % S``: a fixed integer mix (splitmix64's finaliser), the
  same on every machine and Python version, unlike ``hash()``.
- ``manifest.json["training_view"]``: the entry ``write_training_view`` returns (shard files, their
  rows, trainable rows, train interactions and sha256), checked by ``check_training_view``.

Sharding rule: a run with ``world_size`` ranks and ``num_workers`` data-loader workers per rank has
``world_size * max(num_workers, 1)`` readers; S must be a multiple of that, so every reader gets
the same number of shards (``assign_shards``). Pick S with many divisors (8, 16, 48…).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.errors import ConfigError, InputError
from components.io import sha256_file

VIEW_DIR = "train_view"
VIEW_FORMAT = 1
ROW_GROUP_ROWS = 8192  # users per Parquet row group: what one read holds at most
# How every writer of a shard encodes it (this module and the out-of-core stream writer, so the
# bytes are the same): zstd like interactions.parquet, and no dictionary — on integer lists
# pyarrow builds one, finds it too large and falls back (20M rows: -11% write time, -33% size
# against pyarrow's default snappy + dictionary)
SHARD_WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": False}
HASH_NAME = "splitmix64"
VIEW_SCHEMA = pa.schema(
    [
        pa.field("user_idx", pa.int32(), nullable=False),
        pa.field("items", pa.list_(pa.int32()), nullable=False),
        pa.field("timestamps", pa.list_(pa.int64()), nullable=False),
    ]
)


def shard_file(shard: int) -> str:
    """The file name of shard ``shard``: part-00000.parquet …"""
    return f"part-{shard:05d}.parquet"


def stable_hash(user_idx: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of each id, as uint64: a fixed, well-mixed integer hash."""
    x = np.asarray(user_idx).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # wraps mod 2**64, as meant
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shard_of(user_idx: np.ndarray, n_shards: int) -> np.ndarray:
    """The shard of each user: ``stable_hash(user_idx) % n_shards`` (int64)."""
    return (stable_hash(user_idx) % np.uint64(n_shards)).astype(np.int64)


def check_n_shards(n_shards: int, option: str = "--train-shards") -> None:
    """ConfigError unless ``n_shards`` is an integer >= 1."""
    if isinstance(n_shards, bool) or not isinstance(n_shards, int | np.integer) or n_shards < 1:
        raise ConfigError(f"{option} {n_shards!r}: expected an integer >= 1")


def assign_shards(
    n_shards: int, world_size: int, rank: int, num_workers: int, worker_id: int
) -> list[int]:
    """The shards reader (``rank``, ``worker_id``) reads: every R-th shard from its reader index,
    R = world_size × max(num_workers, 1) (num_workers 0 = the main process, one reader).

    Disjoint across readers, covering all shards, the same on every machine. ConfigError when
    n_shards is not a multiple of R (readers would get different numbers of shards).
    """
    check_n_shards(n_shards, "n_shards")
    workers = max(num_workers, 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} / world_size {world_size}: expected 0 <= rank < world_size")
    if not 0 <= worker_id < workers:
        raise ConfigError(f"worker_id {worker_id}: expected 0 <= worker_id < {workers}")
    readers = world_size * workers
    if n_shards % readers:
        multiples = ", ".join(str(readers * k) for k in range(1, 4))
        raise ConfigError(
            f"training view: {n_shards} shards (--train-shards) is not a multiple of "
            f"world_size × num_workers = {world_size} × {workers} = {readers}; re-ingest with "
            f"--train-shards {multiples}…, or change the number of ranks or workers"
        )
    return list(range(rank * workers + worker_id, n_shards, readers))


def write_training_view(interactions: pa.Table, out_dir: str | Path, n_shards: int) -> dict:
    """Write the train-split rows of ``interactions`` (SPEC §3 columns) as the view's S shards
    into ``out_dir``; return the manifest entry. Users keep the table's (user, time, file) order."""
    check_n_shards(n_shards)
    # numpy on the columns (zero-copy for the one-chunk table ingest builds) instead of a table
    # filter, combine and boolean-indexed checks (3.1 s on a 20M-row table read from Parquet)
    is_train = pc.equal(interactions.column("split"), "train").to_numpy(zero_copy_only=False)
    user, item, time = (
        np.asarray(interactions.column(name))[is_train]
        for name in ("user_idx", "item_idx", "timestamp")
    )
    user_step = np.diff(user)
    if (user_step < 0).any() or ((user_step == 0) & (np.diff(time) < 0)).any():
        # stable: ties in time keep their file order (a contract table is sorted already)
        order = np.lexsort((time, user))
        user, item, time = user[order], item[order], time[order]
    del user_step
    # each user's rows are one run: list offsets straight from the run starts, no group-by
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else user[:0]
    offsets = pa.array(np.r_[starts, len(user)].astype(np.int32))
    items, times = pa.array(item, pa.int32()), pa.array(time, pa.int64())
    return write_user_rows(
        user[starts],
        pa.ListArray.from_arrays(offsets, items),
        pa.ListArray.from_arrays(offsets, times),
        out_dir,
        n_shards,
    )


def write_user_rows(
    user_idx: pa.Array | np.ndarray,
    items: pa.Array,
    timestamps: pa.Array,
    out_dir: str | Path,
    n_shards: int,
) -> dict:
    """Write rows already grouped by user (one per user, in user order) into their shards;
    return the manifest entry. Used by ``write_training_view`` and by generators of big views."""
    check_n_shards(n_shards)
    table = pa.table(
        {"user_idx": pa.array(user_idx, pa.int32()), "items": items, "timestamps": timestamps}
    ).cast(VIEW_SCHEMA)
    shards = shard_of(table.column("user_idx").to_numpy(), n_shards)
    order = np.argsort(shards, kind="stable")  # shard by shard, users still in order
    bounds = np.searchsorted(shards[order], np.arange(n_shards + 1))
    lengths = pc.list_value_length(table.column("items")).to_numpy(zero_copy_only=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def write(shard: int) -> dict:
        rows = order[bounds[shard] : bounds[shard + 1]]
        path = out / shard_file(shard)
        pq.write_table(
            table.take(pa.array(rows)), path, row_group_size=ROW_GROUP_ROWS, **SHARD_WRITE_OPTIONS
        )
        return {
            "file": path.name,
            "rows": len(rows),
            "trainable_rows": int(np.count_nonzero(lengths[rows] >= 2)),
            "train_interactions": int(lengths[rows].sum()),
            "sha256": sha256_file(path),
        }

    # shards at once: Parquet encoding and hashing release the GIL (each file is the same)
    with ThreadPoolExecutor(max_workers=min(n_shards, os.cpu_count() or 1)) as pool:
        entries = list(pool.map(write, range(n_shards)))
    return view_entry(out.name, entries)


def view_entry(dir_name: str, entries: list[dict]) -> dict:
    """The manifest's ``training_view`` entry for the shards' ``entries`` (one per shard, in
    shard order) written under ``dir_name`` (relative to the dataset directory)."""
    return {
        "format": VIEW_FORMAT,
        "dir": dir_name,
        "n_shards": len(entries),
        "hash": HASH_NAME,
        "row_group_rows": ROW_GROUP_ROWS,
        "rows": sum(e["rows"] for e in entries),
        "trainable_rows": sum(e["trainable_rows"] for e in entries),
        "train_interactions": sum(e["train_interactions"] for e in entries),
        "shards": entries,
    }


def _check_entry(entry: Any, where: str) -> list[dict]:
    """The entry's shard list, or InputError naming what is wrong with the entry."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: training_view is missing or not an object")
    if entry.get("format") != VIEW_FORMAT or entry.get("hash") != HASH_NAME:
        raise InputError(
            f"{where}: training_view format {entry.get('format')!r} / hash "
            f"{entry.get('hash')!r} is not {VIEW_FORMAT} / {HASH_NAME}; re-run the ingest step"
        )
    shards = entry.get("shards")
    n = entry.get("n_shards")
    if not isinstance(shards, list) or not isinstance(n, int) or len(shards) != n or n < 1:
        raise InputError(f"{where}: training_view.shards does not list n_shards ({n!r}) shards")
    for i, shard in enumerate(shards):
        ok = isinstance(shard, dict) and shard.get("file") == shard_file(i)
        counts = [shard.get(k) for k in ("rows", "trainable_rows")] if ok else []
        if not ok or not all(isinstance(c, int) and c >= 0 for c in counts):
            raise InputError(f"{where}: training_view.shards[{i}] is malformed ({shard!r})")
    return shards


def view_paths(dataset_dir: str | Path, entry: dict) -> list[Path]:
    """The shard files of the view ``entry`` describes, in shard order (not checked)."""
    root = Path(dataset_dir) / str(entry.get("dir", VIEW_DIR))
    return [root / shard["file"] for shard in _check_entry(entry, str(dataset_dir))]


def check_training_view(
    dataset_dir: str | Path, entry: dict, *, verify_sha256: bool = True
) -> list[Path]:
    """Check the view against its manifest entry; return the shard paths.

    InputError naming the file: a missing shard, one whose footer is unreadable, a schema other
    than ``VIEW_SCHEMA``, a row count other than the entry's, or (``verify_sha256``) other bytes
    than were written. Only footers are read, plus the bytes when hashing.
    """
    paths = view_paths(dataset_dir, entry)
    for path, shard in zip(paths, entry["shards"], strict=True):
        if not path.is_file():
            raise InputError(f"{path}: training view shard is missing; re-run the ingest step")
        try:
            meta = pq.ParquetFile(path)
            schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"{path}: not a readable Parquet file ({reason}); re-run the ingest step"
            ) from exc
        if not schema.equals(VIEW_SCHEMA):
            raise InputError(
                f"{path}: schema {schema.to_string(show_schema_metadata=False)!r} is not the "
                f"training view's ({VIEW_SCHEMA.names}: int32, list<int32>, list<int64>)"
            )
        if rows != shard["rows"]:
            raise InputError(f"{path}: holds {rows} rows, the manifest says {shard['rows']}")
        if verify_sha256 and sha256_file(path) != shard.get("sha256"):
            raise InputError(
                f"{path}: sha256 does not match manifest.json: modified after ingest; "
                f"re-run the ingest step"
            )
    return paths
