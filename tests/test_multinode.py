"""Two torchrun "nodes" on 127.0.0.1 (SPEC §10): a multi-node job trains what one node with as
many processes trains, and only node 0 writes.

Each "node" is a separate launch of the train CLI (or the train component's task) with the
environment a Kubeflow Trainer v2 pod gets (``PET_NNODES``, ``PET_NODE_RANK``,
``PET_MASTER_ADDR``, ``PET_MASTER_PORT``), one gloo process each, as on two CPU pods.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from components.ingest import ingest
from components.stats import compute_stats
from tests.kfp_helpers import TINY_INGEST

# several torchrun nodes on 127.0.0.1: minutes on 2 cores; `make cluster-test` (a CI stage) runs them
pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
TRAIN_ARGS = [
    "--scheme", "dynamic", "--loss", "ce", "--epochs", "2", "--dropout", "0",
    "--batch-size", "16", "--max-len", "12", "--d-model", "16", "--n-blocks", "1",
    "--threads", "1", "--no-progress", "--device", "cpu",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    """This process's environment without any cluster or torchrun variable."""
    names = ("PET_", "MASTER_", "WORLD_SIZE", "RANK", "LOCAL_RANK", "CLUSTER_SPEC", "TORCHELASTIC")
    env = {k: v for k, v in os.environ.items() if not k.startswith(names)}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _node_env(node_rank: int, port: int) -> dict[str, str]:
    return {
        **_clean_env(),
        "PET_NNODES": "2",
        "PET_NODE_RANK": str(node_rank),
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(port),
    }


def _run_nodes(commands: list[list[str]], port: int) -> list[subprocess.CompletedProcess]:
    """Start every node's command at once (they rendezvous), wait for all, return their results."""
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env=_node_env(rank, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank, cmd in enumerate(commands)
    ]
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, None))
    return results


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("multinode")
    ingest("synthetic", root / "dataset", **TINY_INGEST)
    compute_stats(root / "dataset", root / "stats")
    return root / "dataset", root / "stats" / "weights.json"


def _params(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_two_nodes_of_one_process_train_what_one_node_of_two_processes_trains(data, tmp_path):
    dataset, weights = data
    base = [sys.executable, "-m", "components.train", "--dataset", str(dataset)]
    base += ["--weights", str(weights), *TRAIN_ARGS]
    # the two nodes share the output path, as pods share a bucket or volume; rank 0 writes it
    nodes = _run_nodes([[*base, "--output", str(tmp_path / "2x1")]] * 2, _free_port())
    for rank, result in enumerate(nodes):
        assert result.returncode == 0, f"node {rank}:\n{result.stdout[-3000:]}"
    one_node = subprocess.run(
        [*base, "--output", str(tmp_path / "1x2"), "--nproc-per-node", "2"],
        cwd=REPO,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    for name in ("2x1", "1x2"):
        assert json.loads((tmp_path / name / "config.json").read_text())["world_size"] == 2
    a, b = (_params(tmp_path / name / "checkpoints/last.pt") for name in ("2x1", "1x2"))
    assert a["state"]["step"] == b["state"]["step"] > 0
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:  # the same global batches and all-reduced gradients: same parameters
        assert torch.allclose(a["model"][key], b["model"][key], rtol=0, atol=1e-6), key
    assert a["weighter"]["weights"] == pytest.approx(b["weighter"]["weights"], abs=1e-12)


COMPONENT_SCRIPT = """
import json, sys
from types import SimpleNamespace
from components.train.component import train
model = SimpleNamespace(path=sys.argv[3], metadata={})
train(dataset=SimpleNamespace(path=sys.argv[1]), stats=SimpleNamespace(path=sys.argv[2]),
      variant={"name": "dynamic", "scheme": "dynamic"}, loss="ce", epochs=1, exclude_seen=False,
      options={"max_len": 12, "d_model": 16, "n_blocks": 1, "batch_size": 16, "threads": 1,
               "progress": False},
      device="cpu", nproc=1, checkpoint_root="", run_id="r", model=model)
print("METADATA", json.dumps(model.metadata))
"""


def test_the_train_task_on_two_nodes_writes_the_model_on_node_0_only(data, tmp_path):
    dataset, weights = data
    models = [tmp_path / "node0-model", tmp_path / "node1-model"]
    commands = [
        [sys.executable, "-c", COMPONENT_SCRIPT, str(dataset), str(weights.parent), str(m)]
        for m in models
    ]
    node0, node1 = _run_nodes(commands, _free_port())
    assert node0.returncode == 0, node0.stdout[-3000:]
    assert node1.returncode == 0, node1.stdout[-3000:]
    assert "--nnodes=2 --node-rank=0 --master-addr=127.0.0.1" in node0.stdout
    assert "node 1 of 2 (trainer-v2); node 0 writes the model" in node1.stdout
    metadata = json.loads(node0.stdout.split("METADATA", 1)[1])
    assert metadata["world_size"] == 2 and metadata["variant"] == "dynamic"
    assert (models[0] / "model.pt").is_file()
    assert not models[1].exists()  # the worker's task leaves its Model artifact alone
    assert '"model_written": false' in node1.stdout
