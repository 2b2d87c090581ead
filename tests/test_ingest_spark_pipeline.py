"""``dwlrec compile --ingest-on spark`` (SPEC §10, issue 16): the ingest step as a Spark job.

The compiled specs of both targets are read back from the YAML the CLI writes (and checked by
../shared/tools/check_pipeline_refs.py when it is there); the kubeflow launcher's function runs
against a fake Kubernetes API on 127.0.0.1 whose "operator" runs spark_main.py as a local process
(``--engine arrow``: no Java needed); the Dataproc job's gs:// output: test_ingest_spark_gcs.py.
Both must give the Dataset artifact a plain ingest gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp.dsl import Dataset

from components.errors import ConfigError, OutputError
from components.ingest import component as ingest_component
from components.ingest.cli import build_parser
from components.ingest.spark_app import MAIN_FILE, SparkApplicationFailed
from components.ingest.spark_task import dataproc_arguments
from pipelines.cli import build_parser as cli_parser
from pipelines.cli import main as pipeline_cli
from pipelines.cli import pipeline_config
from pipelines.spec_check import dangling_references
from tests.fake_k8s import SparkOperatorRunner
from tests.fixtures_formats import write_ml100k

pytest.importorskip("kubernetes")

REPO = Path(__file__).resolve().parents[1]
REFS_TOOL = REPO.parent / "shared" / "tools" / "check_pipeline_refs.py"
IMAGE = "europe-docker.pkg.dev/proj/repo/dwlrec:0.2.0-3aade51"
IMAGES = ["--image", IMAGE, "--cuda-image", IMAGE.replace("dwlrec:", "dwlrec-cuda:")]
SPARK_IMAGE = IMAGE.replace("dwlrec:", "dwlrec-spark:")  # docker/build.sh spark's, beside it
OPTIONS = {"min_user_interactions": 3, "min_item_interactions": 1, "train_shards": 2}
SPARK_MAIN = REPO / "components" / "ingest" / "spark_main.py"


def _compile(tmp_path: Path, capsys, *argv: str) -> list[dict]:
    out = tmp_path / "p.yaml"
    assert pipeline_cli(["compile", "--output", str(out), *IMAGES, *argv]) == 0, capsys.readouterr()
    assert "ingest on Spark" in capsys.readouterr().out
    docs = list(yaml.safe_load_all(out.read_text()))
    assert dangling_references(docs[0]) == []
    if REFS_TOOL.is_file():  # the tool reads one document: the pipeline spec (kfp-kubernetes
        single = tmp_path / "pipeline-spec.yaml"  # settings follow it as a second one)
        single.write_text(yaml.safe_dump(docs[0]))
        done = subprocess.run([sys.executable, str(REFS_TOOL), str(single)], capture_output=True)
        assert done.returncode == 0 and b"dangling references: 0" in done.stdout, done.stdout
    return docs


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def plain(tmp_path):
    """(input dir, the Dataset directory the in-task ingest writes from it)."""
    source = write_ml100k(tmp_path / "ml-100k")
    dataset = Dataset(name="dataset", uri=str(tmp_path / "plain"))
    ingest_component.ingest(
        source="movielens", input_uri=str(source), options=OPTIONS, dataset=dataset
    )
    return source, tmp_path / "plain"


# ---- compiled specs ----


def test_kubeflow_runs_a_spark_application_launcher_on_the_shared_volume(tmp_path, capsys):
    docs = _compile(
        tmp_path, capsys, "--target", "kubeflow", "--ingest-on", "spark",
        "--spark-pvc", "dwl-rwx", "--spark-root", "/work", "--spark-executors", "6",
        "--spark-executor-memory", "8g", "--spark-conf", "spark.sql.shuffle.partitions=400",
    )  # fmt: skip
    spec = docs[0]
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest-spark-app", "stats", "for-loop-1", "report"}
    task = tasks["ingest-spark-app"]
    assert task["taskInfo"]["name"] == "ingest" and task["retryPolicy"]["maxRetryCount"] == 2
    params = task["inputs"]["parameters"]
    assert params["source"] == {"componentInputParameter": "source"}
    assert params["input_uri"] == {"componentInputParameter": "input_uri"}
    assert params["options"] == {"componentInputParameter": "ingest_options"}
    assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert params["spark_app"]["runtimeValue"]["constant"] == {
        "image": SPARK_IMAGE,  # the driver and executors: Java + Spark (docker/Dockerfile.spark)
        "pvc": "dwl-rwx",
        "mount_path": "/work",
        "executor_instances": 6.0,
        "executor_memory": "8g",
        "spark_conf": {"spark.sql.shuffle.partitions": "400"},
    }
    stats = tasks["stats"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]
    assert stats["producerTask"] == "ingest-spark-app"
    container = spec["deploymentSpec"]["executors"]["exec-ingest-spark-app"]["container"]
    assert container["image"] == IMAGE
    assert "ingest_on_operator(" in " ".join(container["command"])
    resources = container["resources"]
    assert (resources["resourceCpuRequest"], resources["resourceMemoryLimit"]) == ("250m", "2G")
    assert "accelerator" not in resources
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (mount,) = executors["exec-ingest-spark-app"]["pvcMount"]
    assert mount["mountPath"] == "/work"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "dwl-rwx"


def test_kubeflow_defaults_to_the_checkpoint_volume(tmp_path, capsys):
    spec = _compile(
        tmp_path, capsys, "--target", "kubeflow", "--no-gpu", "--ingest-on", "spark",
        "--checkpoint-pvc", "ckpt", "--checkpoint-root", "/ckpt",
    )[0]  # fmt: skip
    params = spec["root"]["dag"]["tasks"]["ingest-spark-app"]["inputs"]["parameters"]
    app = params["spark_app"]["runtimeValue"]["constant"]
    assert (app["pvc"], app["mount_path"]) == ("ckpt", "/ckpt")


def test_vertex_runs_a_dataproc_serverless_batch_of_the_job_file(tmp_path, capsys):
    spec = _compile(
        tmp_path, capsys, "--target", "vertex", "--ingest-on", "spark",
        "--dataproc-region", "europe-west4", "--spark-executors", "4",
        "--spark-executor-cores", "8", "--spark-conf", "spark.dynamicAllocation.enabled=false",
    )[0]  # fmt: skip
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "ingest-spark-args", "dataproc-create-pyspark-batch", "ingest-from-gcs",
        "stats", "for-loop-1", "report",
    }  # fmt: skip
    prepare = tasks["ingest-spark-args"]["inputs"]["parameters"]
    assert prepare["pipeline_root"]["runtimeValue"]["constant"] == "{{$.pipeline_root}}"
    assert prepare["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert prepare["options"] == {"componentInputParameter": "ingest_options"}
    batch = tasks["dataproc-create-pyspark-batch"]["inputs"]["parameters"]
    constant = {k: v["runtimeValue"]["constant"] for k, v in batch.items() if "runtimeValue" in v}
    assert constant["main_python_file_uri"] == MAIN_FILE
    assert constant["container_image"] == IMAGE
    assert constant["location"] == "europe-west4"
    assert constant["runtime_config_properties"] == {
        "spark.executor.instances": "4",
        "spark.executor.cores": "8",
        "spark.dynamicAllocation.enabled": "false",
    }
    assert "project" not in batch  # the pipeline job's own project
    args = batch["args"]["taskOutputParameter"]
    assert (args["producerTask"], args["outputParameterKey"]) == ("ingest-spark-args", "args")
    fetch = tasks["ingest-from-gcs"]
    assert "dataproc-create-pyspark-batch" in fetch["dependentTasks"]
    output = fetch["inputs"]["parameters"]["output_uri"]["taskOutputParameter"]
    assert output == {"outputParameterKey": "output_uri", "producerTask": "ingest-spark-args"}
    stats = tasks["stats"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]
    assert stats["producerTask"] == "ingest-from-gcs"
    executors = spec["deploymentSpec"]["executors"]
    launcher = executors["exec-dataproc-create-pyspark-batch"]["container"]
    assert launcher["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components:")
    for name, function in (("exec-ingest-spark-args", "dataproc_arguments("),
                           ("exec-ingest-from-gcs", "download_output(")):  # fmt: skip
        assert executors[name]["container"]["image"] == IMAGE
        assert function in " ".join(executors[name]["container"]["command"])


def test_vertex_job_file_from_gcs_and_the_batch_settings(tmp_path, capsys):
    spec = _compile(
        tmp_path, capsys, "--target", "vertex", "--ingest-on", "spark",
        "--dataproc-region", "us-east1", "--dataproc-project", "other-proj",
        "--dataproc-runtime", "2.3", "--spark-service-account", "spark@p.iam.gserviceaccount.com",
        "--spark-main-file", "gs://code/dwlrec/spark_main.py",
    )[0]  # fmt: skip
    batch = spec["root"]["dag"]["tasks"]["dataproc-create-pyspark-batch"]["inputs"]["parameters"]
    constant = {k: v["runtimeValue"]["constant"] for k, v in batch.items() if "runtimeValue" in v}
    assert constant["main_python_file_uri"] == "gs://code/dwlrec/spark_main.py"
    assert (constant["project"], constant["runtime_config_version"]) == ("other-proj", "2.3")
    assert constant["service_account"] == "spark@p.iam.gserviceaccount.com"
    assert constant["runtime_config_properties"] == {}


def test_submit_vertex_takes_the_region_of_the_run():
    args = cli_parser().parse_args(
        ["submit", "--vertex", "--project", "p", "--region", "europe-west1", *IMAGES,
         "--ingest-on", "spark"]
    )  # fmt: skip
    assert pipeline_config(args, "vertex").spark.dataproc_region == "europe-west1"


def test_the_batch_arguments_carry_every_ingest_option_and_the_output_prefix():
    every = {
        "min_user_interactions": 4, "min_item_interactions": 2, "rating_threshold": 3.5,
        "split": "global-time", "valid_fraction": 0.2, "test_fraction": 0.15,
        "max_bad_fraction": 0.05, "top_domains": 4, "min_domain_items": 2, "train_shards": 4,
        "engine": "spark", "duckdb_memory_limit": "1GB", "duckdb_threads": 2,
        "items": "gs://b/items.csv", "user_col": "uid", "item_col": "sku", "time_col": "ts",
        "rating_col": "stars", "domain_col": "cat", "item_id_col": "sku_id",
        "domain_sep": ";", "delimiter": "\t", "sha256": "ab" * 32,
    }  # fmt: skip
    args, uri = ingest_component.ingest_spark_args(
        "table", "gs://b/events.csv", {**every, "min_item_interactions": 2.0},
        "gs://root/pipeline/", "8f14e45f-ceea-467f-a8c3",
    )  # fmt: skip
    assert uri == "gs://root/pipeline/8f14e45f-ceea-467f-a8c3/ingest"
    parsed = build_parser().parse_args(args)
    assert (parsed.source, parsed.input, parsed.output) == ("table", "gs://b/events.csv", uri)
    assert {key: getattr(parsed, key) for key in every} == every
    assert "--min-item-interactions=2" in args  # a KFP float of an integer option stays one
    args, _ = dataproc_arguments(
        "yelp", "gs://b/y", {"domain_map": {"Bars": "nightlife"}}, "gs://r", "x"
    )
    assert json.loads(build_parser().parse_args(args).domain_map) == {"Bars": "nightlife"}


@pytest.mark.parametrize(
    "options, root, match",
    [
        ({"power_user_focus": 0.5}, "gs://r", r"\['power_user_focus'\]: no `python -m components"),
        ({"overwrite": True}, "gs://r", r"\['overwrite'\]: set by the pipeline"),
        ({}, "minio://mlpipeline/v2", "under a gs:// pipeline root"),
    ],
)
def test_arguments_the_job_cannot_take_fail_in_the_task(options, root, match):
    with pytest.raises(ConfigError, match=match):
        dataproc_arguments("synthetic", "", options, root, "run")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "kubeflow", "--ingest-on", "spark"], "needs a shared volume"),
        (["--target", "vertex", "--ingest-on", "spark"], "--dataproc-region REGION"),
        (["--target", "vertex", "--ingest-on", "spark", "--dataproc-region", "r",
          "--image", "dwlrec:0.2"], "--image 'dwlrec:0.2'"),
        (["--target", "vertex", "--ingest-on", "beam"], "--ingest-on 'beam'"),
        (["--target", "vertex", "--spark-executors", "3"], "apply to --ingest-on spark"),
        (["--target", "vertex", "--ingest-on", "spark", "--dataproc-region", "r",
          "--spark-pvc", "c", "--spark-root", "/w"], "apply to --target kubeflow"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c", "--spark-root",
          "/w", "--dataproc-region", "r"], "apply to --target vertex"),
        (["--target", "vertex", "--ingest-on", "spark", "--dataproc-region", "r",
          "--spark-executor-cores", "6"], "--spark-executor-cores 6: Dataproc"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c"], "go together"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c", "--spark-root",
          "work"], "--spark-root 'work'"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c", "--spark-root",
          "/w", "--spark-executor-memory", "8GB"], "--spark-executor-memory '8GB'"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c", "--spark-root",
          "/w", "--spark-conf", "novalue"], "--spark-conf 'novalue'"),
        (["--target", "vertex", "--ingest-on", "spark", "--dataproc-region", "r",
          "--spark-main-file", "code/main.txt"], "--spark-main-file 'code/main.txt'"),
        (["--target", "vertex", "--ingest-on", "spark", "--dataproc-region", "r",
          "--spark-image", SPARK_IMAGE], "--spark-image applies to --target kubeflow"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c", "--spark-root",
          "/w", "--spark-image", "dwlrec-spark:latest"], "--spark-image 'dwlrec-spark:latest'"),
        (["--target", "kubeflow", "--ingest-on", "spark", "--spark-pvc", "c", "--spark-root",
          "/w", "--image", IMAGE.split(":")[0] + "@sha256:" + "a" * 64], "pinned by digest"),
    ],
)  # fmt: skip
def test_bad_spark_ingest_settings_fail_in_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "p.yaml"
    assert pipeline_cli(["compile", "--output", str(out), *IMAGES, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize(
    "image, expected",
    [
        ("europe-docker.pkg.dev/p/r/dwlrec:0.2", "europe-docker.pkg.dev/p/r/dwlrec-spark:0.2"),
        ("localhost:5000/dwlrec:1", "localhost:5000/dwlrec-spark:1"),  # a port is not a tag
        ("localhost:5000/team/recs", "localhost:5000/team/recs-spark"),
    ],
)
def test_the_spark_image_is_built_beside_the_project_image(image, expected):
    from pipelines.ingest_spark import spark_image_for

    assert spark_image_for(image) == expected


def test_an_explicit_spark_image_is_what_the_application_runs(tmp_path, capsys):
    other = "europe-docker.pkg.dev/proj/repo/my-spark:7"
    docs = _compile(tmp_path, capsys, "--target", "kubeflow", "--ingest-on", "spark",
                    "--spark-pvc", "c", "--spark-root", "/w", "--spark-image", other)  # fmt: skip
    params = docs[0]["root"]["dag"]["tasks"]["ingest-spark-app"]["inputs"]["parameters"]
    assert params["spark_app"]["runtimeValue"]["constant"]["image"] == other


# ---- the kubeflow launcher against a fake Spark Operator ----


def _spark_app(tmp_path, capsys, pvc: Path) -> dict:
    """The launcher's SparkAppSpec as compiled, quicker to poll."""
    spec = _compile(
        tmp_path, capsys, "--target", "kubeflow", "--no-gpu", "--ingest-on", "spark",
        "--spark-pvc", "dwl-rwx", "--spark-root", str(pvc),
    )[0]  # fmt: skip
    params = spec["root"]["dag"]["tasks"]["ingest-spark-app"]["inputs"]["parameters"]
    return {**params["spark_app"]["runtimeValue"]["constant"], "poll_s": 0.05, "timeout_s": 300}


@pytest.fixture
def operator(tmp_path, monkeypatch):
    suffix = "/components/ingest/spark_main.py"
    assert MAIN_FILE.endswith(suffix)
    with SparkOperatorRunner(tmp_path, SPARK_MAIN, suffix, ["--engine", "arrow"]) as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
        yield api


def _launch(app: dict, input_uri: str, run_id: str, out: Path) -> Dataset:
    dataset = Dataset(name="dataset", uri=str(out))
    ingest_component.ingest_spark_app(
        source="movielens", input_uri=input_uri, options=OPTIONS, run_id=run_id,
        spark_app=app, dataset=dataset,
    )  # fmt: skip
    return dataset


def test_the_launcher_ingests_on_the_operator_and_a_retry_reuses_it(
    tmp_path, capsys, operator, plain
):
    source, expected = plain
    pvc = tmp_path / "pvc"
    app = _spark_app(tmp_path, capsys, pvc)
    dataset = _launch(app, str(source), "run-1", tmp_path / "artifact")
    assert operator.runs == 1, operator.logs
    assert tree(tmp_path / "artifact") == tree(expected)  # the plain ingest's bytes
    assert dataset.metadata["source"] == "movielens" and dataset.metadata["users"] > 0
    (created,) = operator.apps.values()
    spec = created["spec"]
    assert created["metadata"] == {**created["metadata"], "name": "dwl-ingest-run-1",
                                   "namespace": "team-a"}  # fmt: skip
    assert (spec["image"], spec["mainApplicationFile"]) == (SPARK_IMAGE, MAIN_FILE)
    assert spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "dwl-rwx"
    assert spec["driver"]["volumeMounts"][0]["mountPath"] == str(pvc)
    work = pvc / "run-1" / "ingest"
    assert spec["arguments"] == [
        "--source", "movielens", "--input", str(source), "--min-user-interactions=3",
        "--min-item-interactions=1", "--train-shards=2", "--output", str(work),
    ]  # fmt: skip
    # a retried task: the COMPLETED application's output, no second driver
    _launch(app, str(source), "run-1", tmp_path / "retry")
    assert operator.runs == 1
    assert tree(tmp_path / "retry") == tree(expected)
    assert (work / "manifest.json").is_file()  # the shared volume's copy stays


def test_a_failed_application_fails_the_task_with_its_message(tmp_path, capsys, operator):
    app = _spark_app(tmp_path, capsys, tmp_path / "pvc")
    with pytest.raises(SparkApplicationFailed) as err:
        _launch(app, str(tmp_path / "no-such-input"), "run-2", tmp_path / "artifact")
    message = "driver container failed with ExitCode: 2"
    assert f"team-a/dwl-ingest-run-2 FAILED: {message}" in str(err.value)
    assert "error:" in operator.logs["dwl-ingest-run-2"]  # the ingest's own one line
    assert not (tmp_path / "artifact").exists()


def test_the_launcher_never_writes_over_what_is_not_an_ingest_output(tmp_path, capsys, operator):
    app = _spark_app(tmp_path, capsys, tmp_path / "pvc")
    work = tmp_path / "pvc" / "run-3" / "ingest"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a previous ingest output"):
        _launch(app, "unused", "run-3", tmp_path / "artifact")
    assert operator.apps == {} and (work / "notes.txt").read_text() == "mine"


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom")
def test_the_tasks_run_through_the_kfp_executor(tmp_path, capsys, operator, plain):
    """The same functions as the compiled tasks run them: kfp's executor, artifacts, outputs."""
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp"),
        raise_on_error=True,
    )
    source, expected = plain
    launcher = ingest_component.spark_component(ingest_component.ingest_spark_app, IMAGE)
    task = launcher(
        source="movielens", input_uri=str(source), options=OPTIONS, run_id="run-k",
        spark_app=_spark_app(tmp_path, capsys, tmp_path / "pvc"),
    )  # fmt: skip
    assert operator.runs == 1
    assert tree(Path(task.outputs["dataset"].path)) == tree(expected)
    prepare = ingest_component.spark_component(ingest_component.ingest_spark_args, IMAGE)
    task = prepare(
        source="movielens", input_uri="gs://b/ml", options=OPTIONS, pipeline_root="gs://r/p",
        run_id="run-k",
    )  # fmt: skip
    assert task.outputs["output_uri"] == "gs://r/p/run-k/ingest"
    assert task.outputs["args"][-2:] == ["--output", "gs://r/p/run-k/ingest"]
