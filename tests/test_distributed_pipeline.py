"""``dwlrec compile --distributed-train N`` (SPEC §10): the multi-node train task of each target,
compiled through the CLI a user runs and read back from the YAML file it writes."""

from __future__ import annotations

import pytest
import yaml

from pipelines.cli import main as pipeline_cli
from pipelines.spec_check import dangling_references, load_spec

IMAGE = "europe-docker.pkg.dev/proj/repo/dwlrec:0.2.0-3aade51"
CUDA_IMAGE = "europe-docker.pkg.dev/proj/repo/dwlrec-cuda:0.2.0-3aade51"
IMAGES = ["--image", IMAGE, "--cuda-image", CUDA_IMAGE]


def _compile(tmp_path, capsys, *argv: str) -> dict:
    out = tmp_path / "p.yaml"
    assert pipeline_cli(["compile", "--output", str(out), *IMAGES, *argv]) == 0, capsys.readouterr()
    spec = load_spec(out)
    assert dangling_references(spec) == []
    return spec


def _train_task(spec: dict) -> dict:
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    tasks = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    (name,) = [name for name in tasks if name.startswith("train")]
    return tasks[name]


def test_vertex_runs_train_as_a_custom_job_with_worker_pools(tmp_path, capsys):
    spec = _compile(tmp_path, capsys, "--target", "vertex", "--distributed-train", "3")
    assert "train on 3 nodes" in capsys.readouterr().out
    executors = spec["deploymentSpec"]["executors"]
    launcher = executors["exec-train"]["container"]
    assert launcher["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components:")
    assert "accelerator" not in launcher.get("resources", {})
    params = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    chief, workers = params["worker_pool_specs"]["defaultValue"]
    assert (int(chief["replica_count"]), int(workers["replica_count"])) == (1, 2)
    for pool in (chief, workers):
        assert pool["container_spec"]["image_uri"] == CUDA_IMAGE
        assert pool["machine_spec"] == {
            "machine_type": "g2-standard-8",
            "accelerator_type": "NVIDIA_L4",
            "accelerator_count": 1.0,
        }
        command = " ".join(pool["container_spec"]["command"])
        assert "train_task(" in command and "kfp.dsl.executor_main" in command
    assert executors["exec-evaluate"]["container"]["image"] == CUDA_IMAGE  # unchanged


def test_vertex_cpu_nodes_and_an_explicit_machine_type(tmp_path, capsys):
    argv = ["--target", "vertex", "--distributed-train", "2", "--no-gpu"]
    spec = _compile(tmp_path, capsys, *argv)
    params = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    for pool in params["worker_pool_specs"]["defaultValue"]:
        assert pool["machine_spec"] == {"machine_type": "n2-standard-8"}
        assert pool["container_spec"]["image_uri"] == IMAGE
    spec = _compile(
        tmp_path, capsys, "--target", "vertex", "--distributed-train", "2",
        "--accelerator", "NVIDIA_H100_80GB", "--accelerator-count", "8",
    )  # fmt: skip
    pools = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    pool = pools["worker_pool_specs"]["defaultValue"][0]
    assert pool["machine_spec"]["machine_type"] == "a3-highgpu-8g"


def test_kubeflow_runs_a_trainjob_launcher_on_the_shared_volume(tmp_path, capsys):
    spec = _compile(
        tmp_path, capsys, "--target", "kubeflow", "--distributed-train", "2",
        "--accelerator-count", "4", "--checkpoint-pvc", "dwl-rwx", "--checkpoint-root", "/work",
    )  # fmt: skip
    launcher = spec["deploymentSpec"]["executors"]["exec-train-trainjob"]["container"]
    assert launcher["image"] == IMAGE and "accelerator" not in launcher.get("resources", {})
    assert "run_trainjob(" in " ".join(launcher["command"])
    params = _train_task(spec)["inputs"]["parameters"]
    trainjob = params["trainjob"]["runtimeValue"]["constant"]
    assert trainjob == {
        "image": CUDA_IMAGE,
        "nodes": 2.0,
        "nproc_per_node": 4.0,
        "resources_per_node": {"cpu": "6", "memory": "24G", "nvidia.com/gpu": 4.0},
        "pvc": "dwl-rwx",
        "mount_path": "/work",
        "runtime": "torch-distributed",
    }
    assert "nproc" not in params and "checkpoint_root" not in params
    out = tmp_path / "p.yaml"
    platform = list(yaml.safe_load_all(out.read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executor = executors["exec-train-trainjob"]
    assert executor["pvcMount"][0]["mountPath"] == "/work"
    assert executor["pvcMount"][0]["pvcNameParameter"]["runtimeValue"]["constant"] == "dwl-rwx"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "vertex", "--distributed-train", "0"], "--distributed-train 0"),
        (["--target", "vertex", "--distributed-train", "2", "--cuda-image", "dwlrec-cuda:0.2"],
         "--cuda-image 'dwlrec-cuda:0.2'"),
        (["--target", "vertex", "--distributed-train", "2", "--cuda-image", "reg.io/x/y:latest"],
         "not :latest"),
        (["--target", "kubeflow", "--distributed-train", "2"], "--checkpoint-pvc"),
        (["--target", "vertex", "--distributed-train", "2", "--accelerator-count", "3"],
         "--machine-type: no default for 3 x NVIDIA_L4"),
        (["--target", "vertex", "--machine-type", "n1-standard-4"], "--machine-type applies"),
    ],
)  # fmt: skip
def test_bad_distributed_settings_fail_in_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "p.yaml"
    assert pipeline_cli(["compile", "--output", str(out), *IMAGES, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()
