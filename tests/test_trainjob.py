"""The Kubeflow TrainJob launcher (components.train.trainjob) against a fake Kubernetes API on
127.0.0.1 whose "kubelet" runs the TrainJob's nodes as local processes (tests/fake_k8s.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from components.errors import ConfigError
from components.ingest import ingest
from components.stats import compute_stats
from components.train.component import train_trainjob
from components.train.trainjob import TrainJobFailed, TrainJobSpec, job_name
from tests.fake_k8s import FakeKubernetes
from tests.kfp_helpers import TINY_INGEST

# several torchrun nodes on 127.0.0.1: minutes on 2 cores; `make cluster-test` (a CI stage) runs them
pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {"max_len": 12, "d_model": 16, "n_blocks": 1, "batch_size": 16, "threads": 1}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainjob")
    ingest("synthetic", root / "dataset", **TINY_INGEST)
    compute_stats(root / "dataset", root / "stats")
    return SimpleNamespace(path=str(root / "dataset")), SimpleNamespace(path=str(root / "stats"))


def _node_env() -> dict[str, str]:
    names = ("PET_", "MASTER_", "WORLD_SIZE", "RANK", "LOCAL_RANK", "CLUSTER_SPEC", "TORCHELASTIC")
    env = {k: v for k, v in os.environ.items() if not k.startswith(names)}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _launch(inputs, tmp_path, monkeypatch, api, task: dict | None = None, **trainjob):
    """Call the launcher component as its container would; ``task`` overrides its train
    parameters, ``trainjob`` the TrainJob spec."""
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
    dataset, stats = inputs
    model = SimpleNamespace(path=str(tmp_path / "model"), metadata={})
    spec = {
        "image": "registry.example/dwlrec:0.1.0-abc1234",
        "nodes": 2,
        "resources_per_node": {"cpu": "2", "memory": "4G"},
        "pvc": "dwlrec-work",
        "mount_path": str(tmp_path / "pvc"),
        "poll_s": 1,
        "timeout_s": 600,
        "namespace": "team-a",
        **trainjob,
    }
    params = {
        "variant": {"name": "dynamic", "scheme": "dynamic"},
        "loss": "ce",
        "epochs": 1,
        "exclude_seen": False,
        "options": {**OPTIONS, "progress": False},
        "device": "cpu",
        "run_id": "run-7",
        **(task or {}),
    }
    train_trainjob(dataset=dataset, stats=stats, trainjob=spec, model=model, **params)
    return model


def test_the_launcher_creates_a_two_node_trainjob_and_returns_its_model(
    inputs, tmp_path, monkeypatch
):
    with FakeKubernetes(tmp_path, env=_node_env()) as api:
        model = _launch(inputs, tmp_path, monkeypatch, api)
    ((name, job),) = api.trainjobs.items()
    assert (
        name == job_name("run-7", "dynamic") and job["metadata"]["namespace"] == "team-a"
    )  # --namespace
    spec = job["spec"]
    assert spec["runtimeRef"]["name"] == "torch-distributed"
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 2 and trainer["image"] == "registry.example/dwlrec:0.1.0-abc1234"
    assert trainer["command"][:4] == ["python", "-m", "components.train.launch", "--task"]
    assert trainer["resourcesPerNode"]["limits"] == {"cpu": "2", "memory": "4G"}
    pod = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod_spec = pod["template"]["spec"]["template"]["spec"]
    assert pod_spec["volumes"] == [
        {"name": "dwlrec-work", "persistentVolumeClaim": {"claimName": "dwlrec-work"}}
    ]
    mounts = pod_spec["containers"][0]["volumeMounts"]
    assert mounts == [{"name": "dwlrec-work", "mountPath": str(tmp_path / "pvc")}]
    # both nodes ran: node 0 wrote the model, node 1 trained and left it alone
    node0, node1 = api.node_logs[name]
    assert "--nnodes=2 --node-rank=0" in node0 and "--nnodes=2 --node-rank=1" in node1
    assert "node 1 of 2 (trainer-v2); node 0 writes the model" in node1
    config = json.loads((Path(model.path) / "config.json").read_text())
    assert config["world_size"] == 2 == model.metadata["world_size"]
    assert model.metadata["variant"] == "dynamic"
    state = torch.load(Path(model.path) / "model.pt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_failed_trainjob_fails_the_task(inputs, tmp_path, monkeypatch):
    # a model option that cannot build makes every node's train_task stop with an error line
    bad = {
        "variant": {"name": "none", "scheme": "none"},
        "options": {**OPTIONS, "d_model": 15, "n_heads": 2},
        "run_id": "run-8",
    }
    with FakeKubernetes(tmp_path, env=_node_env()) as api:
        with pytest.raises(TrainJobFailed, match="failed"):
            _launch(inputs, tmp_path, monkeypatch, api, task=bad, timeout_s=300)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"pvc": ""}, "shared volume"),
        ({"mount_path": "relative/path"}, "shared volume"),
        ({"nodes": 0}, "nodes"),
        ({"poll_s": 0}, "poll"),
    ],
)
def test_a_bad_trainjob_spec_is_refused_before_anything_is_created(change, message):
    spec = TrainJobSpec(**{"image": "r/i:1", "nodes": 2, "pvc": "c", "mount_path": "/w", **change})
    with pytest.raises(ConfigError, match=message):
        spec.validate()


def test_job_names_are_dns_labels():
    name = job_name("Run_ID/With:Odd chars-" + "x" * 80, "dyn-Composite")
    assert len(name) <= 40 and name == name.lower() and name[0].isalpha() and name[-1] != "-"
