"""The CPU image and the whole pipeline under kfp.local's DockerRunner (marker ``docker``).

Run by ``.ci/docker`` (which installs/starts dockerd, bootstraps a base image and builds the
wheelhouse); locally ``pytest -m docker`` skips these when no Docker daemon answers.
The image is built offline from ./wheelhouse when it holds wheels (see docker/build.sh).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from components.kfp_support import cpu_image
from pipelines.cli import main as pipeline_cli
from pipelines.pipeline import DEFAULT_VARIANTS
from tests.docker_helpers import base_image, docker_client
from tests.kfp_helpers import TINY_PARAMS

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def image() -> str:
    """Build the CPU image with docker/build.sh (layers are cached between runs)."""
    client = docker_client()
    tag = cpu_image()
    env = {**os.environ, "BASE_IMAGE": base_image(client), "DWLREC_IMAGE": tag}
    build = subprocess.run(
        ["bash", "docker/build.sh", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return tag


def _in_image(image: str, *command: str) -> str:
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, *command],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_image_runs_as_non_root_with_the_project_and_no_network(image):
    assert _in_image(image, "id", "-u") == "1000"
    code = "import components.train.trainer, pipelines.pipeline, kfp; print(kfp.__version__)"
    assert _in_image(image, "python3", "-c", code) == "2.17.0"
    # kfp's launcher calls bare python3: it must be the venv's
    assert _in_image(image, "sh", "-c", "command -v python3") == "/opt/venv/bin/python3"


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_compiled_yaml_runs_end_to_end_in_docker(image, tmp_path, capsys):
    """The kubeflow --no-gpu YAML, compiled with the image, executed by kfp's DockerRunner."""
    spec = tmp_path / "pipeline.yaml"
    assert pipeline_cli(["compile", "--no-gpu", "--image", image, "--output", str(spec)]) == 0
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(TINY_PARAMS))
    argv = ["run", "--local", "--runner", "docker", "--spec", str(spec)]
    argv += ["--pipeline-root", str(tmp_path / "root"), "--params-file", str(params_file)]
    assert pipeline_cli(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[-2])
    assert summary["runner"] == "docker"
    assert Path(summary["spec"]).read_text() == spec.read_text()  # the very file that ran
    logs = sorted(Path(summary["logs"]).glob("*.log"))
    assert len(logs) == 3 + 2 * len(DEFAULT_VARIANTS)
    for log in logs:  # every task ran in the local image, no pull
        assert f"Found image {image!r}" in log.read_text(), log.name
    html = Path(summary["report_html"]).read_text()
    for variant in DEFAULT_VARIANTS:
        assert variant in html
    run_dir = Path(summary["run_dir"])
    evaluations = sorted(run_dir.glob("for-loop-*-iteration-*/evaluate/evaluation"))
    assert len(evaluations) == len(DEFAULT_VARIANTS)
    # tasks run as the invoking user, so the outputs are ours, not root's
    assert Path(summary["report_html"]).stat().st_uid == os.getuid()


# ---- the Spark image (docker/Dockerfile.spark): what a SparkApplication's pods run ----

SPARK_BASE = "local/debian-python-java:bookworm"


@pytest.fixture(scope="module")
def spark_image() -> str:
    """Build the Spark image with docker/build.sh spark on the Java base .ci/docker bootstraps."""
    client = docker_client()
    base = os.environ.get("SPARK_BASE_IMAGE", SPARK_BASE)
    try:
        client.images.get(base)
    except Exception:
        pytest.skip(f"no Java base image {base} (docker/bootstrap-base.sh, see docker/build.sh)")
    tag = "dwlrec-spark:test"
    env = {**os.environ, "SPARK_BASE_IMAGE": base, "DWLREC_SPARK_IMAGE": tag}
    build = subprocess.run(
        ["bash", "docker/build.sh", "spark"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return tag


def test_spark_image_runs_the_operators_driver_command(spark_image, tmp_path):
    """The Spark Operator's driver pod runs the image with no command and the arguments
    ``driver --properties-file … local:///…/spark_main.py ARGS``: through the entrypoint, that is
    spark-submit in client mode (here on local[2], no network) — and the ingest it runs writes
    the same Parquet bytes as the plain in-memory ingest on the host."""
    from components.ingest import ingest
    from components.ingest.spark_app import MAIN_FILE
    from tests.fixtures_formats import write_ml100k

    options = {"min_user_interactions": 3, "min_item_interactions": 1, "train_shards": 2}
    source = write_ml100k(tmp_path / "in")
    ingest("movielens", tmp_path / "plain", str(source), **options)
    tmp_path.chmod(0o755)  # the image runs as uid 1000: it reads the inputs …
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o777)  # … and writes here
    conf = tmp_path / "spark.properties"  # as the operator mounts one
    conf.write_text("spark.master=local[2]\nspark.ui.enabled=false\n")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]

    def driver(*ingest_args: str) -> subprocess.CompletedProcess:
        # (no network here: the pod's own address and name are what a cluster resolves)
        return subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "-e", "SPARK_LOCAL_IP=127.0.0.1",
             "-e", "SPARK_DRIVER_BIND_ADDRESS=127.0.0.1", "-v", f"{tmp_path}:/data", spark_image,
             "driver", "--properties-file", "/data/spark.properties", MAIN_FILE, "--source",
             "movielens", "--input", "/data/in", "--output", "/data/out/ingest", *ingest_args],
            capture_output=True, text=True,
        )  # fmt: skip

    failed = driver()  # the default 5-core empties this small file: the driver must fail
    assert failed.returncode != 0 and "no interactions left" in failed.stdout + failed.stderr
    assert not (tmp_path / "out" / "ingest").exists()
    done = driver(*flags)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "ingest" / "manifest.json").read_text())
    assert manifest["options"]["engine"] == "spark"

    def parquet(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.parquet")}

    assert parquet(tmp_path / "out" / "ingest") == parquet(tmp_path / "plain")
    assert len(parquet(tmp_path / "plain")) == 4  # interactions, items, 2 view shards


def test_spark_image_passes_other_commands_through(spark_image):
    assert _in_image(spark_image, "id", "-u") == "1000"
    assert _in_image(spark_image, "python3", "-c", "import pyspark; print(pyspark.__version__)")
