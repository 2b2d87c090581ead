"""StreamingWindows (components/train/streaming.py): the same windows as the in-memory path,
disjoint readers, equal steps on every rank, determinism, bounded shuffling, bad views."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
import torch

from components.core.sequences import UserSequences
from components.core.training_view import (
    VIEW_DIR,
    assign_shards,
    shard_file,
    shard_of,
    write_training_view,
)
from components.errors import ConfigError, InputError
from components.train.data import TrainWindows
from components.train.streaming import StreamingConfig, StreamingWindows, _batches

MAX_LEN = 6


def make_interactions(users: np.ndarray, seed: int = 0) -> pa.Table:
    """Contract-ordered interactions for ``users``: 1..14 train rows (some users 1), valid, test."""
    rng = np.random.default_rng(seed)
    n_train = rng.integers(1, 15, len(users))
    user = np.repeat(users, n_train + 2)
    split = np.concatenate([["train"] * n + ["valid", "test"] for n in n_train])
    return pa.table(
        {
            "user_idx": pa.array(user, pa.int32()),
            "item_idx": pa.array(rng.integers(1, 40, len(user)), pa.int32()),
            "timestamp": pa.array(np.arange(len(user)), pa.int64()),
            "split": pa.array(split),
        }
    )


def in_memory(table: pa.Table) -> TrainWindows:
    seqs = UserSequences.from_interactions(table, 40)
    return TrainWindows(*seqs.train_sequences(), MAX_LEN)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An uneven view: 4 shards, users picked so that shard 0 holds far more than the others."""
    root = tmp_path_factory.mktemp("view")
    candidates = np.arange(2000)
    shard = shard_of(candidates, 4)
    users = np.sort(
        np.concatenate(
            [candidates[shard == 0][:150]] + [candidates[shard == s][: 20 * s] for s in (1, 2, 3)]
        )
    )
    table = make_interactions(users)
    entry = write_training_view(table, root / VIEW_DIR, 4)
    return root, entry, in_memory(table)


def config(**kwargs) -> StreamingConfig:
    base = {"batch_size": 16, "max_len": MAX_LEN, "seed": 3, "shuffle_buffer": 32, "read_rows": 8}
    return StreamingConfig(**{**base, "with_users": True, **kwargs})


def rank_batches(data, epoch: int = 0, **kwargs) -> list[tuple[np.ndarray, ...]]:
    root, entry, _ = data
    ds = StreamingWindows(root, entry, config(**kwargs))
    ds.set_epoch(epoch)
    out = [b for w in range(ds.cfg.workers) for b in ds.reader_batches(w)]
    assert len(out) == len(ds)
    return out


def test_windows_match_the_in_memory_path(data) -> None:
    windows = data[2]
    for users, inputs, targets in rank_batches(data):
        assert users.dtype == inputs.dtype == targets.dtype == np.int64
        assert inputs.shape == targets.shape == (16, MAX_LEN)
        expected_inputs, expected_targets = windows.batch(users)
        np.testing.assert_array_equal(inputs, expected_inputs)
        np.testing.assert_array_equal(targets, expected_targets)


@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (2, 1), (2, 2), (1, 4)])
def test_equal_steps_and_every_user_seen(data, world_size, num_workers) -> None:
    root, entry, windows = data
    rows = [s["trainable_rows"] for s in entry["shards"]]
    assert max(rows) > 3 * min(rows)  # the shards really are uneven
    seen: Counter = Counter()
    lengths = set()
    for rank in range(world_size):
        batches = rank_batches(data, rank=rank, world_size=world_size, num_workers=num_workers)
        lengths.add(len(batches))
        for users, _, _ in batches:
            seen.update(users.tolist())
    assert len(lengths) == 1  # the same number of steps on every rank: no DDP hang
    readers = [
        sum(rows[s] for s in assign_shards(4, world_size, r, num_workers, w))
        for r, w in itertools.product(range(world_size), range(max(num_workers, 1)))
    ]
    steps = -(-max(readers) // 16)
    assert lengths == {steps * max(num_workers, 1)}
    assert set(seen) == set(windows.users.tolist())  # every trainable user, no other
    assert sum(seen.values()) == steps * 16 * len(readers)  # full batches; the rest repeats


def test_the_largest_reader_repeats_nobody_before_its_pass_ends(data) -> None:
    # 1 rank, 4 workers: worker 0 reads shard 0 alone, the largest; its rows past one pass
    # (the padding of its last batch) come only after every one of its users
    root, entry, _ = data
    ds = StreamingWindows(root, entry, config(num_workers=4))
    users = np.concatenate([b[0] for b in ds.reader_batches(0)])
    first_pass = entry["shards"][0]["trainable_rows"]
    assert len(users) == ds.steps_per_reader * 16 > first_pass
    assert len(set(users[:first_pass].tolist())) == first_pass


def test_deterministic_per_seed_and_epoch(data) -> None:
    first, again = rank_batches(data, epoch=1), rank_batches(data, epoch=1)
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    other_epoch = rank_batches(data, epoch=2)
    other_seed = rank_batches(data, epoch=1, seed=4)
    assert not np.array_equal(first[0][0], other_epoch[0][0])
    assert not np.array_equal(first[0][0], other_seed[0][0])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch(data, num_workers) -> None:
    root, entry, _ = data
    ds = StreamingWindows(root, entry, config(num_workers=num_workers))
    ds.set_epoch(1)
    workers = ds.cfg.workers
    per = [list(ds.reader_batches(w)) for w in range(workers)]
    full = [per[i % workers][i // workers] for i in range(len(ds))]  # the DataLoader's order
    ds.set_epoch(1, start_batch=5)
    assert len(ds) == len(full) - 5
    # the resumed DataLoader goes on taking the workers in turn, from worker 5 % W
    resumed = [ds.reader_batches(w) for w in range(workers)]
    got = [next(resumed[i % workers]) for i in range(5, len(full))]
    assert all(next(r, None) is None for r in resumed)  # nothing left over
    for a, b in zip(got, full[5:], strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ConfigError, match="start_batch"):
        ds.set_epoch(1, start_batch=len(full) + 1)


def test_shuffle_buffer_mixes_users(data) -> None:
    unshuffled = np.concatenate([b[0] for b in rank_batches(data, shuffle_buffer=0)])
    shuffled = np.concatenate([b[0] for b in rank_batches(data)])
    first_pass = len(data[2].users)
    # without a buffer, each row group comes out in user order; with one, not
    assert (np.diff(unshuffled[:first_pass]) < 0).sum() <= 2 * 4  # only at shard/pass joins
    assert (np.diff(shuffled[:first_pass]) < 0).sum() > first_pass // 4


def test_dataloader_workers(data) -> None:
    root, entry, windows = data
    ds = StreamingWindows(root, entry, config(num_workers=2, with_users=False))
    batches = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert len(batches) == len(ds)
    inputs, targets = batches[0]
    assert inputs.dtype == torch.int64 and inputs.shape == (16, MAX_LEN)
    expected = [b for w in range(2) for b in ds.reader_batches(w)]  # workers alternate
    order = [expected[i // 2 + (i % 2) * (len(ds) // 2)] for i in range(len(ds))]
    for (got_in, got_tg), (exp_in, exp_tg) in zip(batches, order, strict=True):
        np.testing.assert_array_equal(got_in.numpy(), exp_in)
        np.testing.assert_array_equal(got_tg.numpy(), exp_tg)
    with pytest.raises(ConfigError, match="num_workers=2 but runs in a DataLoader"):
        next(iter(ds))  # in the main process: built for 2 workers


def test_bad_layouts_and_views(data, tmp_path) -> None:
    root, entry, _ = data
    with pytest.raises(ConfigError, match="not a multiple of world_size × num_workers = 3"):
        StreamingWindows(root, entry, config(world_size=3))
    with pytest.raises(ConfigError, match="streaming rank 2"):
        config(rank=2, world_size=2)
    with pytest.raises(ConfigError, match="streaming batch_size 0"):
        config(batch_size=0)
    # a view whose shard holds nobody trainable would stall its rank: refused up front
    sparse = write_training_view(make_interactions(np.arange(3)), tmp_path / VIEW_DIR, 8)
    with pytest.raises(InputError, match="hold no user with 2\\+ train items"):
        StreamingWindows(tmp_path, sparse, config(num_workers=8))


def test_corrupt_shard_is_an_input_error(data, tmp_path) -> None:
    root, entry, _ = data
    copy = tmp_path / VIEW_DIR
    copy.mkdir()
    for i in range(4):
        (copy / shard_file(i)).write_bytes((root / VIEW_DIR / shard_file(i)).read_bytes())
    path = copy / shard_file(2)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(InputError, match=rf"{path}: not a readable Parquet file"):
        StreamingWindows(tmp_path, entry, config())


def test_batches_cut_exactly() -> None:
    chunks = iter([(np.arange(n), np.zeros((n, 2)), np.ones((n, 2))) for n in (5, 0, 7, 30)])
    out = list(_batches(chunks, 4, 6))
    assert len(out) == 6 and all(len(b[0]) == 4 for b in out)
    assert np.concatenate([b[0] for b in out]).tolist() == [*range(5), *range(7), *range(12)]


def test_from_an_ingest_output(tmp_path) -> None:
    from components.ingest import ingest
    from components.schema import load_dataset

    ingest("synthetic", tmp_path / "ds", num_users=120, num_items=80, train_shards=2)
    dataset = load_dataset(tmp_path / "ds")
    seqs = UserSequences.from_interactions(dataset.interactions, dataset.n_items)
    windows = TrainWindows(*seqs.train_sequences(), MAX_LEN)
    ds = StreamingWindows.from_dataset(tmp_path / "ds", config())
    seen = set()
    for users, inputs, targets in ds.reader_batches(0):
        np.testing.assert_array_equal(np.stack([inputs, targets]), np.stack(windows.batch(users)))
        seen.update(users.tolist())
    assert seen == set(windows.users.tolist())
    ingest("synthetic", tmp_path / "none", num_users=120, num_items=80, train_shards=0)
    with pytest.raises(InputError, match="no training_view; re-run the ingest step"):
        StreamingWindows.from_dataset(tmp_path / "none", config())
