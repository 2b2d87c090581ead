"""The train component's task logic (called directly, as its container would): durable
checkpoints and retries, gs:// roots, the device parameter, torchrun with nproc > 1."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from components.errors import ConfigError
from components.ingest import ingest
from components.stats import compute_stats
from components.train import launch
from components.train.component import train as train_component
from components.train.launch import (
    LaunchError,
    checkpoint_dir,
    local_checkpoint_root,
    safe_name,
)
from tests.kfp_helpers import TINY_INGEST, TINY_TRAIN

RUN_ID = "run/42: retry"  # characters a path must not take as they are


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-component")
    ingest("synthetic", root / "dataset", **TINY_INGEST)
    compute_stats(root / "dataset", root / "stats")
    return SimpleNamespace(path=str(root / "dataset")), SimpleNamespace(path=str(root / "stats"))


def run(inputs, model_dir: Path, **params) -> SimpleNamespace:
    """Call the component's function with artifact stand-ins; returns the Model artifact."""
    dataset, stats = inputs
    model = SimpleNamespace(path=str(model_dir), metadata={})
    defaults = dict(
        variant={"name": "dynamic", "scheme": "dynamic"},
        loss="ce",
        epochs=2,
        exclude_seen=False,
        options=TINY_TRAIN,
        device="cpu",
        nproc=1,
        checkpoint_root="",
        run_id=RUN_ID,
    )
    train_component(dataset=dataset, stats=stats, model=model, **{**defaults, **params})
    return model


def _params(model_dir) -> dict:
    return torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True)


def _assert_same_model(a, b) -> None:
    a, b = _params(a), _params(b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_retried_task_resumes_from_the_checkpoint_root(inputs, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dwlrec")
    straight = run(inputs, tmp_path / "straight")
    root = str(tmp_path / "ckpt")
    # the first attempt dies after epoch 1 (simulated), the retry continues from there
    first = run(
        inputs,
        tmp_path / "attempt1",
        options={**TINY_TRAIN, "stop_after_epochs": 1},
        checkpoint_root=root,
    )
    assert first.metadata["epochs_run"] == 1
    work = checkpoint_dir(root, RUN_ID, "dynamic")
    assert work == tmp_path / "ckpt" / "run_42_retry" / "dynamic"
    assert (work / "checkpoints" / "last.pt").exists()
    caplog.clear()
    retry = run(inputs, tmp_path / "attempt2", checkpoint_root=root)
    assert f"resuming from {work / 'checkpoints' / 'last.pt'} after epoch 1" in caplog.text
    assert retry.metadata["epochs_run"] == straight.metadata["epochs_run"] == 2
    _assert_same_model(tmp_path / "straight", tmp_path / "attempt2")
    assert sorted(p.name for p in (tmp_path / "attempt2").iterdir()) == sorted(
        launch.ARTIFACT_FILES
    )
    # a run that had finished (e.g. its copy to the artifact failed): the same model again
    caplog.clear()
    again = run(inputs, tmp_path / "attempt3", checkpoint_root=root)
    assert "after epoch 2" in caplog.text and again.metadata == retry.metadata
    _assert_same_model(tmp_path / "straight", tmp_path / "attempt3")
    for name in ("train_log.jsonl", "weights_history.json"):
        assert (tmp_path / "attempt3" / name).read_text() == (
            tmp_path / "attempt2" / name
        ).read_text()


def test_metadata(inputs, tmp_path):
    model = run(inputs, tmp_path / "m", epochs=1)
    meta = model.metadata
    assert {k: meta[k] for k in ("variant", "loss", "framework", "epochs_run")} == {
        "variant": "dynamic",
        "loss": "ce",
        "framework": "pytorch",
        "epochs_run": 1,
    }
    assert meta["precision"] == "fp32" and meta["device"] == "cpu" and meta["world_size"] == 1
    assert meta["best_epoch"] == 1


def test_gs_checkpoint_root_needs_the_gcsfuse_mount(inputs, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(launch, "GCS_MOUNT", str(tmp_path / "gcs"))
    # an unmounted object-store root (Kubeflow's default minio:// pipeline root) trains without
    # durable checkpoints, and says so
    with caplog.at_level("WARNING", logger="dwlrec.train"):
        model = run(inputs, tmp_path / "m", epochs=1, checkpoint_root="minio://mlpipeline/v2")
    assert (Path(model.path) / "model.pt").exists()
    assert "durable checkpoints are off" in caplog.text and "minio://" in caplog.text
    assert not list(tmp_path.glob("**/mlpipeline"))
    with pytest.raises(ConfigError, match=r"checkpoint_root 'gs://bucket/ckpt'.*/gcs.*Kubeflow"):
        local_checkpoint_root("gs://bucket/ckpt")
    with pytest.raises(ConfigError, match="checkpoint_root 's3://b': s3:// is not supported"):
        local_checkpoint_root("s3://b")
    (tmp_path / "gcs").mkdir()
    assert local_checkpoint_root("gs://bucket/ckpt") == tmp_path / "gcs" / "bucket" / "ckpt"
    assert checkpoint_dir("gs://bucket/ckpt", "job-1", "none") == (
        tmp_path / "gcs" / "bucket" / "ckpt" / "job-1" / "none"
    )


def test_run_id_is_sanitised():
    assert safe_name("projects/p/locations/x/pipelineJobs/dwlrec-2024") == (
        "projects_p_locations_x_pipelineJobs_dwlrec-2024"
    )
    assert safe_name("../..") == "" and safe_name("a..b") == "a..b"
    assert checkpoint_dir("/r", "../../etc", "none") == Path("/r/etc/none")
    with pytest.raises(ConfigError, match="run_id '..': no usable characters"):
        checkpoint_dir("/r", "..", "none")


def test_the_device_parameter_wins_over_options(inputs, tmp_path, capsys):
    model = run(inputs, tmp_path / "m", epochs=1, options={**TINY_TRAIN, "device": "cuda"})
    assert model.metadata["device"] == "cpu" and model.metadata["precision"] == "fp32"
    assert "'device': 'cuda'} ignored" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_a_requested_gpu_that_is_missing_fails_the_task_before_any_io(inputs, tmp_path):
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device"):
        run(inputs, tmp_path / "m", device="cuda", checkpoint_root=str(tmp_path / "ckpt"))
    assert not (tmp_path / "m").exists() and not (tmp_path / "ckpt").exists()


def test_nproc_2_trains_with_torchrun_gloo(inputs, tmp_path, capsys):
    root = str(tmp_path / "ckpt")
    interrupted = {**TINY_TRAIN, "stop_after_epochs": 1}
    first = run(inputs, tmp_path / "m1", options=interrupted, checkpoint_root=root)
    assert first.metadata["world_size"] == 1
    capsys.readouterr()
    # the retry runs 2 gloo processes and continues the single-process checkpoint
    model = run(inputs, tmp_path / "m2", nproc=2, checkpoint_root=root)
    out = capsys.readouterr().out
    assert "torch.distributed.run --standalone --nproc-per-node=2" in out
    assert (
        "resuming from" in out and "after epoch 1" in out
    )  # the processes' log reaches the task's
    config = json.loads((tmp_path / "m2" / "config.json").read_text())
    assert config["world_size"] == model.metadata["world_size"] == 2
    assert config["device"] == "cpu" and model.metadata["epochs_run"] == 2


def test_a_failing_torchrun_fails_the_task_with_its_output(inputs, tmp_path):
    _, stats = inputs
    missing = SimpleNamespace(path=str(tmp_path / "no-dataset"))
    with pytest.raises(LaunchError, match=r"(?s)exited with status \d+.*no-dataset"):
        run((missing, stats), tmp_path / "m", epochs=1, nproc=2)
