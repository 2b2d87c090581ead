"""The training view (components/core/training_view.py): layout, shard assignment, checks, and
its place in the ingest output."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core.training_view import (
    VIEW_DIR,
    assign_shards,
    check_training_view,
    shard_file,
    shard_of,
    stable_hash,
    write_training_view,
)
from components.errors import ConfigError, InputError
from components.ingest import ingest
from components.ingest.cli import build_parser
from components.ingest.options import IngestOptions
from components.schema import INTERACTIONS_FILE, load_dataset


def interactions_table(n_users: int = 60, seed: int = 0) -> pa.Table:
    """A contract-ordered table: per user 0..9 train rows (ties in time too), then valid, test."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        n_train = int(rng.integers(0, 10))
        times = np.sort(rng.integers(0, 5, n_train))  # many ties: file order must survive
        rows += [(user, int(rng.integers(1, 50)), int(t), "train") for t in times]
        rows += [(user, int(rng.integers(1, 50)), 10, "valid"), (user, 7, 11, "test")]
    user, item, ts, split = zip(*rows, strict=True)
    return pa.table(
        {
            "user_idx": pa.array(user, pa.int32()),
            "item_idx": pa.array(item, pa.int32()),
            "timestamp": pa.array(ts, pa.int64()),
            "split": pa.array(split),
        }
    )


def test_stable_hash_is_splitmix64() -> None:
    # splitmix64 seeded with 0 yields 0xE220A8397B1DCDAF first: the mix is the published one
    assert int(stable_hash(np.array([0]))[0]) == 0xE220A8397B1DCDAF
    assert shard_of(np.arange(1000), 7).tolist() == shard_of(np.arange(1000), 7).tolist()
    counts = np.bincount(shard_of(np.arange(80_000), 8), minlength=8)
    assert counts.min() > 9_500  # balanced: 10,000 expected each


def test_write_groups_train_items_in_order(tmp_path) -> None:
    table = interactions_table()
    entry = write_training_view(table, tmp_path / VIEW_DIR, 4)
    rows = {}
    for i, shard in enumerate(entry["shards"]):
        part = pq.read_table(tmp_path / VIEW_DIR / shard_file(i))
        assert shard["rows"] == part.num_rows
        users = part.column("user_idx").to_numpy()
        assert (shard_of(users, 4) == i).all() and (np.diff(users) > 0).all()
        for row in part.to_pylist():
            assert row["user_idx"] not in rows  # one shard, one row per user
            rows[row["user_idx"]] = row
    train = table.filter(pa.compute.equal(table.column("split"), "train")).to_pylist()
    expected: dict[int, dict] = {}
    for r in train:  # the table's own order: time, then file order
        e = expected.setdefault(r["user_idx"], {"items": [], "timestamps": []})
        e["items"].append(r["item_idx"])
        e["timestamps"].append(r["timestamp"])
    assert {u: {k: v for k, v in r.items() if k != "user_idx"} for u, r in rows.items()} == expected
    assert entry["rows"] == len(expected)
    assert entry["train_interactions"] == len(train)
    assert entry["trainable_rows"] == sum(len(e["items"]) >= 2 for e in expected.values())
    assert check_training_view(tmp_path, entry) == [
        tmp_path / VIEW_DIR / shard_file(i) for i in range(4)
    ]


@pytest.mark.parametrize("world_size,num_workers,n_shards", [(1, 0, 8), (2, 2, 8), (3, 1, 12)])
def test_assign_shards_disjoint_and_covering(world_size, num_workers, n_shards) -> None:
    readers = [
        assign_shards(n_shards, world_size, rank, num_workers, worker)
        for rank, worker in itertools.product(range(world_size), range(max(num_workers, 1)))
    ]
    flat = sorted(s for shards in readers for s in shards)
    assert flat == list(range(n_shards))  # each shard to exactly one reader
    assert len({len(shards) for shards in readers}) == 1  # and as many to each
    assert readers == [
        assign_shards(n_shards, world_size, rank, num_workers, worker)
        for rank, worker in itertools.product(range(world_size), range(max(num_workers, 1)))
    ]


def test_assign_shards_refuses_bad_layouts() -> None:
    with pytest.raises(ConfigError, match=r"8 shards \(--train-shards\) is not a multiple .* 3"):
        assign_shards(8, 3, 0, 1, 0)
    with pytest.raises(ConfigError, match="rank 2"):
        assign_shards(8, 2, 2, 1, 0)
    with pytest.raises(ConfigError, match="worker_id 2"):
        assign_shards(8, 1, 0, 2, 2)
    with pytest.raises(ConfigError, match="--train-shards 0"):
        write_training_view(interactions_table(5), "unused", 0)


@pytest.fixture
def view(tmp_path):
    entry = write_training_view(interactions_table(), tmp_path / VIEW_DIR, 2)
    return tmp_path, entry, tmp_path / VIEW_DIR / shard_file(1)


def test_missing_shard_named(view) -> None:
    root, entry, path = view
    path.unlink()
    with pytest.raises(InputError, match=rf"{path}: training view shard is missing"):
        check_training_view(root, entry)


def test_truncated_shard_named(view) -> None:
    root, entry, path = view
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(InputError, match=rf"{path}: not a readable Parquet file"):
        check_training_view(root, entry)


def test_modified_shard_named(view) -> None:
    root, entry, path = view
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # same size, valid footer: only the hash can tell
    path.write_bytes(bytes(data))
    check_training_view(root, entry, verify_sha256=False)
    with pytest.raises(InputError, match=rf"{path}: sha256 does not match"):
        check_training_view(root, entry)


def test_schema_and_rows_mismatch_named(view) -> None:
    root, entry, path = view
    wrong = pq.read_table(path)
    wrong = wrong.set_column(0, "user_idx", wrong.column("user_idx").cast(pa.int64()))
    pq.write_table(wrong, path)
    with pytest.raises(InputError, match=rf"{path}: schema .* is not the training view's"):
        check_training_view(root, entry, verify_sha256=False)
    pq.write_table(wrong.slice(1).cast(pq.read_table(root / VIEW_DIR / shard_file(0)).schema), path)
    with pytest.raises(InputError, match=rf"{path}: holds \d+ rows, the manifest says"):
        check_training_view(root, entry, verify_sha256=False)


def test_malformed_entry(view) -> None:
    root, entry, _ = view
    with pytest.raises(InputError, match="training_view.shards does not list"):
        check_training_view(root, {**entry, "n_shards": 3})
    with pytest.raises(InputError, match="format"):
        check_training_view(root, {**entry, "hash": "python"})


TINY = {"num_users": 120, "num_items": 80}


def test_ingest_writes_the_view_without_changing_the_contract(tmp_path) -> None:
    with_view = ingest("synthetic", tmp_path / "a", train_shards=4, **TINY)
    without = ingest("synthetic", tmp_path / "b", train_shards=0, **TINY)
    assert with_view["files"] == without["files"]  # same bytes: the fingerprint is unchanged
    assert "training_view" not in without and not (tmp_path / "b" / VIEW_DIR).exists()
    entry = with_view["training_view"]
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["training_view"] == entry
    assert entry["n_shards"] == 4 and entry["rows"] == with_view["counts"]["users"]
    assert entry["train_interactions"] == with_view["counts"]["train_interactions"]
    check_training_view(tmp_path / "a", entry)
    dataset = load_dataset(tmp_path / "a")  # the contract checks still pass with the dir there
    assert dataset.manifest["files"][INTERACTIONS_FILE] == without["files"][INTERACTIONS_FILE]
    # a re-run replaces its own output, train_view/ included (the marker lists it)
    again = ingest("synthetic", tmp_path / "a", train_shards=2, **TINY)
    assert again["training_view"]["n_shards"] == 2
    assert sorted(p.name for p in (tmp_path / "a" / VIEW_DIR).iterdir()) == [
        shard_file(0),
        shard_file(1),
    ]


def test_train_shards_option() -> None:
    assert IngestOptions().train_shards == 8  # the one default
    args = build_parser().parse_args(["--source", "synthetic", "--output", "x"])
    assert args.train_shards == IngestOptions().train_shards
    args = build_parser().parse_args(
        ["--source", "synthetic", "--output", "x", "--train-shards", "0"]
    )
    assert args.train_shards == 0
    with pytest.raises(ConfigError, match="--train-shards -1"):
        IngestOptions(train_shards=-1)
    with pytest.raises(ConfigError, match="--train-shards 2.5"):
        IngestOptions(train_shards=2.5)  # type: ignore[arg-type]
