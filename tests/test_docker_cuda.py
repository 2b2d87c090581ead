"""The CUDA image (docker/Dockerfile.cuda), opt-in: marker ``docker`` AND ``DWLREC_TEST_CUDA_IMAGE=1``.

    DWLREC_TEST_CUDA_IMAGE=1 .venv/bin/python -m pytest -m docker tests/test_docker_cuda.py

Builds the image with ``docker/build.sh cuda`` (offline from ./wheelhouse-cuda, filled first with
``docker/build.sh wheelhouse-cuda`` when empty: ~2.7 GB from the package index; the image is
~5.5 GB), then checks it without a GPU and without network: the pinned CUDA build of torch, a
non-root user, a working directory any uid can write, the compiler caches under /tmp, and the
CPU path of one train step (synthetic ingest + one epoch with ``--device cpu``). Run it once per
change of the Dockerfile. CI's Docker stage (``.ci/docker``) runs tests/test_docker.py only, so
it never builds this image. The .dockerignore check at the end needs no daemon and always runs.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docker_helpers import base_image, docker_client

ROOT = Path(__file__).resolve().parents[1]
# The pin: PyPI's torch==2.11.0 linux x86_64 wheel is 2.11.0+cu130 (its torch/version.py says
# cuda = '13.0'; it requires cuda-toolkit==13.0.2 and nvidia-*-cu13 wheels), what the GPU tests
# ran with on the H200. A new pin changes both lines and docker/build.sh's CUDA_TORCH_SPEC.
PINNED_TORCH = "2.11.0+cu130"
PINNED_CUDA = "13.0"

cuda_image_opt_in = pytest.mark.skipif(
    os.environ.get("DWLREC_TEST_CUDA_IMAGE") != "1",
    reason="builds the ~5.5 GB CUDA image: set DWLREC_TEST_CUDA_IMAGE=1 (and -m docker)",
)


def _build(target: str, env: dict) -> None:
    result = subprocess.run(
        ["bash", "docker/build.sh", target], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.fixture(scope="module")
def cuda_image() -> str:
    """Build the CUDA image with docker/build.sh (layers are cached between runs)."""
    client = docker_client()
    tag = os.environ.get("DWLREC_CUDA_IMAGE", "dwlrec-cuda:latest")
    env = {
        **os.environ,
        "CUDA_BASE_IMAGE": base_image(client, ("CUDA_BASE_IMAGE", "BASE_IMAGE")),
        "DWLREC_CUDA_IMAGE": tag,
    }
    env.pop("PUSH", None)
    if not any((ROOT / "wheelhouse-cuda").glob("*.whl")):
        _build("wheelhouse-cuda", env)
    _build("cuda", env)
    return tag


def _in_image(image: str, *command: str, user: str | None = None) -> str:
    argv = ["docker", "run", "--rm", "--network", "none"]
    if user:
        argv += ["--user", user]
    result = subprocess.run([*argv, image, *command], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout.strip()


def test_the_pin_matches_build_sh():
    text = (ROOT / "docker" / "build.sh").read_text()
    spec = re.search(r'CUDA_TORCH_SPEC="\$\{CUDA_TORCH_SPEC:-([^}]+)\}"', text)
    assert spec, "docker/build.sh has no CUDA_TORCH_SPEC default"
    assert spec.group(1) == "torch==" + PINNED_TORCH.split("+")[0]


@pytest.mark.docker
@cuda_image_opt_in
@pytest.mark.timeout(1800)  # a cold build (wheelhouse + image) takes ~10 min on 2 cores
def test_cuda_torch_user_workdir_and_caches(cuda_image):
    code = (
        "import json, os, torch, triton\n"
        "from torch._inductor.runtime.cache_dir_utils import cache_dir\n"
        "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda,"
        " 'cudnn': torch.backends.cudnn.version(), 'nccl': list(torch.cuda.nccl.version()),"
        " 'available': torch.cuda.is_available(), 'inductor': cache_dir(),"
        " 'triton': triton.knobs.cache.dir, 'cwd': os.getcwd()}))"
    )
    info = json.loads(_in_image(cuda_image, "python3", "-c", code))
    assert info["torch"] == PINNED_TORCH
    assert info["cuda"] == PINNED_CUDA
    assert info["cudnn"] and info["nccl"]  # the CUDA libraries from the wheels load without a GPU
    assert info["available"] is False  # no GPU here, and no error either
    assert info["inductor"].startswith("/tmp/") and info["triton"].startswith("/tmp/")
    assert _in_image(cuda_image, "id", "-u") == "1000"
    assert _in_image(cuda_image, "sh", "-c", "command -v python3") == "/opt/venv/bin/python3"
    # the working directory is writable by the image's user and by an arbitrary uid
    for user in (None, "4321:4321"):
        out = _in_image(cuda_image, "sh", "-c", "touch probe && pwd", user=user)
        assert out == info["cwd"], (user, out)


@pytest.mark.docker
@cuda_image_opt_in
@pytest.mark.timeout(1800)  # a cold build (wheelhouse + image) takes ~10 min on 2 cores
def test_one_cpu_train_step_inside_the_cuda_image(cuda_image):
    script = """set -e
python3 -m components.ingest --source synthetic --output data \
  --num-users 150 --num-items 80 --num-domains 5 --mean-length 15 --seed 1
python3 -m components.train --dataset data --output model --epochs 1 --device cpu \
  --max-len 20 --d-model 16 --n-blocks 1 --n-heads 1 --batch-size 64 --threads 1 \
  --no-progress --seed 0 >/dev/null
python3 -c 'import json; print(json.dumps({"config": json.load(open("model/config.json")), \
  "log": [json.loads(line) for line in open("model/train_log.jsonl")], \
  "files": sorted(__import__("os").listdir("model"))}))'
"""
    result = json.loads(_in_image(cuda_image, "bash", "-c", script).splitlines()[-1])
    assert "model.pt" in result["files"]
    epochs = [row for row in result["log"] if "epoch" in row]
    assert [row["epoch"] for row in epochs] == [1]
    assert epochs[0]["train_loss"] > 0 and 0 <= epochs[0]["val_ndcg@10"] <= 1
    assert json.dumps(result["config"]).count('"cpu"') >= 1  # trained on the CPU path


def test_dockerignore_keeps_the_cuda_wheelhouse_out_of_the_cpu_context(tmp_path):
    """The CPU build sends the repository as its context: wheelhouse-cuda/ (GBs) must not go."""
    build_utils = pytest.importorskip("docker.utils.build")
    shutil.copy(ROOT / ".dockerignore", tmp_path / ".dockerignore")
    for rel in (
        "pyproject.toml",
        "components/__init__.py",
        "wheelhouse/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
        "wheelhouse-cuda/torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "wheelhouse-cuda/nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    patterns = [
        line.strip()
        for line in (tmp_path / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sent = {p.replace(os.sep, "/") for p in build_utils.exclude_paths(str(tmp_path), patterns)}
    assert "pyproject.toml" in sent and "components/__init__.py" in sent
    assert any(p.startswith("wheelhouse/") for p in sent)
    assert not any(p.startswith("wheelhouse-cuda") for p in sent), sorted(sent)
