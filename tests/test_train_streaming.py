"""The trainer on the streaming training view (``--data stream``, issue 15): it trains and writes
the artifact, two gloo ranks take the same number of steps and observe the whole global batch,
an epoch-boundary resume equals a straight run, and the bad combinations are one ConfigError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from components.errors import ConfigError
from components.ingest import ingest
from components.stats import compute_stats
from components.train import cli
from components.train.config import TrainConfig
from components.train.distributed import Process
from components.train.inputs import check_stream_options
from components.train.streaming import StreamingConfig, StreamingWindows
from components.train.trainer import train
from tests.kfp_helpers import TIMINGS, TINY_INGEST, TINY_MODEL

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SHARDS = 4  # fits 1 and 2 ranks
MAX_LEN = TINY_MODEL["max_len"]
TINY = {**TINY_MODEL, "device": "cpu"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    ingest("synthetic", root / "dataset", train_shards=SHARDS, **TINY_INGEST)
    ingest("synthetic", root / "no-view", train_shards=0, **TINY_INGEST)
    compute_stats(root / "dataset", root / "stats")
    return root / "dataset", root / "stats" / "weights.json", root / "no-view"


def _log(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]


def _rank_stream(dataset: Path, rank: int, world: int, batch_size: int) -> StreamingWindows:
    cfg = StreamingConfig(
        batch_size=batch_size // world,
        max_len=MAX_LEN,
        seed=TrainConfig.seed,
        rank=rank,
        world_size=world,
    )
    return StreamingWindows.from_dataset(dataset, cfg)


def test_stream_trains_and_writes_the_artifact(data, tmp_path):
    dataset, weights, _ = data
    out = tmp_path / "m"
    summary = train(
        dataset,
        weights,
        out,
        scheme="inverse",
        data="stream",
        epochs=4,
        lr=0.01,
        dropout=0.0,
        patience=0,
        **TINY,
    )
    log = _log(out)
    losses = [r["train_loss"] for r in log]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] - 0.1, losses
    steps = len(_rank_stream(dataset, 0, 1, TINY["batch_size"]))
    assert [r["step"] for r in log] == [steps * e for e in (1, 2, 3, 4)]
    assert summary["steps"] == 4 * steps and summary["world_size"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["data"] == "stream" and config["train"]["data_workers"] == 0
    assert (out / "model.pt").is_file() and config["best_epoch"] == summary["best_epoch"] > 0
    assert 0 < summary["best_val"]["ndcg@10"] <= 1  # validated on the in-memory prefixes


@pytest.mark.parametrize(
    ("scheme", "extra"),
    [("dro", {"loss": "sampled"}), ("dynamic-user", {"aux_domain": 0.5})],
)
def test_every_kind_of_weighter_trains_on_the_stream(data, tmp_path, scheme, extra):
    dataset, weights, _ = data
    options = dict(scheme=scheme, data="stream", epochs=1, **extra, **TINY)
    summary = train(dataset, weights, tmp_path / "m", **options)
    loss = _log(tmp_path / "m")[0]["train_loss"]
    assert summary["epochs_run"] == 1 and np.isfinite(loss) and loss > 0


def test_a_data_loader_worker_gives_the_same_model(data, tmp_path):
    """Reader (rank 0, worker 0) is the same with 0 workers (in process) and 1 (a subprocess)."""
    dataset, weights, _ = data
    options = dict(scheme="dynamic", data="stream", epochs=1, **TINY)
    train(dataset, weights, tmp_path / "w0", **options)
    train(dataset, weights, tmp_path / "w1", data_workers=1, **options)
    a, b = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("w0", "w1"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_epoch_boundary_resume_equals_a_straight_run(data, tmp_path):
    dataset, weights, _ = data
    options = dict(scheme="dynamic", loss="bce", data="stream", epochs=2, **TINY)
    train(dataset, weights, tmp_path / "straight", update_every_steps=3, **options)
    first = train(
        dataset, weights, tmp_path / "resumed", update_every_steps=3, stop_after_epochs=1, **options
    )
    assert first["epochs_run"] == 1
    second = train(
        dataset, weights, tmp_path / "resumed", update_every_steps=3, resume=True, **options
    )
    assert second["epochs_run"] == 2
    last = [
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)
        for d in ("straight", "resumed")
    ]
    assert last[0]["model"].keys() == last[1]["model"].keys()
    for key in last[0]["model"]:
        assert torch.equal(last[0]["model"][key], last[1]["model"][key]), key
    assert last[0]["weighter"] == last[1]["weighter"]
    assert _log(tmp_path / "straight") == _log(tmp_path / "resumed")


def test_a_resume_cannot_switch_the_data_source(data, tmp_path):
    dataset, weights, _ = data
    train(dataset, weights, tmp_path / "m", scheme="inverse", epochs=1, **TINY)
    with pytest.raises(ConfigError, match="cannot --resume.*train.data"):
        train(
            dataset,
            weights,
            tmp_path / "m",
            scheme="inverse",
            data="stream",
            epochs=2,
            resume=True,
            **TINY,
        )


def test_two_gloo_ranks_take_the_same_steps_and_see_the_global_batch(data, tmp_path):
    """2 ranks × 8 users each: equal step counts (the run would hang otherwise), world_size 2
    recorded, and dynamic's counts are every target both ranks streamed (all-gathered)."""
    dataset, weights, _ = data
    epochs, batch = 2, 16
    args = ["--dataset", str(dataset), "--weights", str(weights), "--output", str(tmp_path / "m")]
    args += ["--scheme", "dynamic", "--epochs", str(epochs), "--batch-size", str(batch)]
    args += ["--max-len", str(MAX_LEN), "--d-model", "16", "--n-blocks", "1"]
    args += ["--threads", "1", "--no-progress", "--device", "cpu", "--data", "stream"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "MASTER_"))}
    ddp = subprocess.run(
        [sys.executable, "-m", "components.train", *args, "--nproc-per-node", "2"],
        cwd=REPO,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["world_size"] == 2
    ranks = [_rank_stream(dataset, r, 2, batch) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) > 0
    last = torch.load(tmp_path / "m" / "checkpoints/last.pt", weights_only=True)
    assert last["state"]["step"] == epochs * len(ranks[0])
    # the targets of both ranks' local batches, every epoch: what rank 0's weighter counted
    expected = np.zeros(len(last["weighter"]["item_counts"]), dtype=np.int64)
    for stream in ranks:
        for epoch in range(1, epochs + 1):
            stream.set_epoch(epoch)
            for _, targets in stream.reader_batches(0):
                expected += np.bincount(targets.reshape(-1), minlength=len(expected))
    expected[0] = last["weighter"]["item_counts"][0]  # padding: counted, never used
    assert last["weighter"]["item_counts"] == expected.tolist()


# ---- bad combinations: one ConfigError naming the options, before any data is read ----


def test_a_dataset_without_a_view_is_refused(data, tmp_path, capsys):
    _, _, no_view = data
    with pytest.raises(ConfigError, match="--data stream.*--train-shards") as err:
        train(no_view, None, tmp_path / "m", data="stream", epochs=1, **TINY)
    assert "\n" not in str(err.value) and not (tmp_path / "m").exists()
    argv = ["--dataset", str(no_view), "--output", str(tmp_path / "c"), "--data", "stream"]
    assert cli.main(argv) == 2
    assert "--data stream" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_shards_and_batch_must_split_over_the_ranks_and_workers(data, tmp_path):
    dataset, _, _ = data
    stream = TrainConfig(data="stream", batch_size=16)
    check_stream_options(stream, dataset, Process(0, 2))  # 4 shards, 2 readers, 8 users each
    with pytest.raises(ConfigError, match="--batch-size 15: .*multiple of the world size 2"):
        check_stream_options(TrainConfig(data="stream", batch_size=15), dataset, Process(0, 2))
    workers = TrainConfig(data="stream", batch_size=16, data_workers=3)
    with pytest.raises(ConfigError, match="4 shards \\(--train-shards\\).*--data-workers 3"):
        check_stream_options(workers, dataset, Process(0, 1))
    with pytest.raises(ConfigError, match="--train-shards.*--data-workers"):
        check_stream_options(TrainConfig(data="stream", batch_size=18), dataset, Process(1, 3))
    with pytest.raises(ConfigError, match="--train-shards"):  # through train, nothing written
        train(dataset, None, tmp_path / "m", data="stream", data_workers=3, epochs=1, **TINY)
    assert not (tmp_path / "m").exists()
    check_stream_options(TrainConfig(batch_size=15), dataset, Process(0, 2))  # memory: no rule


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data": "disk"}, "--data: unknown data 'disk'; choose one of \\['memory', 'stream'\\]"),
        ({"data_workers": -1}, "--data-workers must be >= 0"),
        ({"data_workers": 1}, "--data-workers applies to --data stream only"),
    ],
)
def test_bad_data_options_are_one_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**options)
