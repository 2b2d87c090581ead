"""The sparse-domain-dwl pipeline: compiled IR YAML, parameters, and a local end-to-end run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main as pipeline_cli
from pipelines.params import parse_params, pipeline_parameters
from pipelines.pipeline import DEFAULT_VARIANTS, PIPELINE_NAME, PipelineConfig, compile_pipeline
from tests.kfp_helpers import TINY_PARAMS

STEPS = ("ingest", "stats", "train", "evaluate", "report")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("compile") / "pipeline.yaml"
    compile_pipeline(
        str(path),
        PipelineConfig(
            image="registry.example/dwlrec:1.0", cuda_image="registry.example/dwlrec-cuda:1.0"
        ),
    )
    return yaml.safe_load(path.read_text())


def _executors(spec: dict) -> dict:
    return spec["deploymentSpec"]["executors"]


def _executor_of(spec: dict, component_prefix: str) -> dict:
    """The container spec of the one executor whose component name starts with the prefix."""
    found = [
        e["container"]
        for name, e in _executors(spec).items()
        if name.removeprefix("exec-").startswith(component_prefix)
    ]
    assert len(found) == 1, (component_prefix, list(_executors(spec)))
    return found[0]


def test_compiled_dag_chains_the_steps_with_a_fan_out_over_variants(compiled):
    assert compiled["pipelineInfo"]["name"] == PIPELINE_NAME
    root = compiled["root"]["dag"]["tasks"]
    assert set(root) == {"ingest", "stats", "for-loop-1", "report"}
    assert root["stats"]["dependentTasks"] == ["ingest"]
    loop = root["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--variants"
    assert set(root["report"]["dependentTasks"]) == {"for-loop-1"}
    body = compiled["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == {"train", "evaluate"}
    assert body["evaluate"]["dependentTasks"] == ["train"]
    # the report reads the collected evaluate outputs of every iteration
    evaluations = root["report"]["inputs"]["artifacts"]["evaluations"]
    assert evaluations["taskOutputArtifact"]["producerTask"] == "for-loop-1"


def test_compiled_parameters_have_the_demo_defaults(compiled):
    params = compiled["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(pipeline_parameters())
    assert params["variants"]["defaultValue"] == DEFAULT_VARIANTS
    assert params["source"]["defaultValue"] == "synthetic"
    assert params["variants"]["parameterType"] == "LIST"
    assert params["ingest_options"]["parameterType"] == "STRUCT"
    assert params["epochs"]["parameterType"] == "NUMBER_INTEGER"


def test_every_task_runs_in_the_project_images_without_pip(compiled):
    for name, executor in _executors(compiled).items():
        container = executor["container"]
        expected = (
            "registry.example/dwlrec-cuda:1.0"
            if name.startswith(("exec-train", "exec-evaluate"))
            else "registry.example/dwlrec:1.0"
        )
        assert container["image"] == expected, name
        command = " ".join(container["command"])
        assert "pip install" not in command, name
        assert "python3 -m kfp.dsl.executor_main" in command, name
    assert {e.removeprefix("exec-") for e in _executors(compiled)} == set(STEPS)


def test_train_and_evaluate_request_the_gpu_and_limits(compiled):
    for step in ("train", "evaluate"):
        resources = _executor_of(compiled, step)["resources"]
        assert "pipelinechannel--accelerator_type" in resources["accelerator"]["resourceType"]
        assert "pipelinechannel--accelerator_count" in resources["accelerator"]["resourceCount"]
        assert "pipelinechannel--cpu_limit" in resources["resourceCpuLimit"]
        assert "pipelinechannel--memory_limit" in resources["resourceMemoryLimit"]
    assert "resources" not in _executor_of(compiled, "ingest")
    assert (
        compiled["root"]["inputDefinitions"]["parameters"]["accelerator_count"]["defaultValue"] == 1
    )


def test_caching_is_on_for_every_task(compiled):
    tasks = dict(compiled["root"]["dag"]["tasks"])
    loop = tasks.pop("for-loop-1")
    tasks.update(compiled["components"][loop["componentRef"]["name"]]["dag"]["tasks"])
    assert all(task["cachingOptions"].get("enableCache") for task in tasks.values())


def test_compile_cli_no_gpu_uses_the_cpu_image_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("DWLREC_IMAGE", "env.example/dwlrec:2")
    out = tmp_path / "p.yaml"
    assert pipeline_cli(["compile", "--output", str(out), "--no-gpu"]) == 0
    spec = yaml.safe_load(out.read_text())
    for executor in _executors(spec).values():
        assert executor["container"]["image"] == "env.example/dwlrec:2"
        assert "accelerator" not in executor["container"].get("resources", {})


def test_pipeline_package_imports_no_torch():
    code = (
        "import sys, pipelines.cli, pipelines.pipeline, pipelines.local, pipelines.submit; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert out.stdout.strip() == "False"


def test_params_parse_json_values_and_reject_unknown_names(tmp_path):
    params_file = tmp_path / "p.json"
    params_file.write_text(json.dumps({"epochs": 3, "source": "movielens"}))
    params = parse_params(
        ["epochs=5", 'variants=["none","dynamic"]', "input_uri=/data/ml"], str(params_file)
    )
    assert params == {
        "epochs": 5,
        "source": "movielens",
        "variants": ["none", "dynamic"],
        "input_uri": "/data/ml",
    }
    with pytest.raises(Exception, match="unknown pipeline parameter"):
        parse_params(["epoch=5"])
    with pytest.raises(Exception, match="expected a int"):
        parse_params(["epochs=many"])


def test_run_cli_reports_bad_parameters_cleanly(capsys):
    assert pipeline_cli(["run", "--local", "--param", "no_such=1"]) == 2
    assert "error: --param no_such" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_local_run_end_to_end_produces_the_comparison_report(tmp_path, capsys):
    """The whole pipeline through kfp.local (SubprocessRunner), three variants, tiny settings."""
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(TINY_PARAMS))
    assert (
        pipeline_cli(
            [
                "run",
                "--local",
                "--pipeline-root",
                str(tmp_path / "root"),
                "--params-file",
                str(params_file),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads(out.splitlines()[-2])
    report_html = Path(summary["report_html"])
    assert f"report: {report_html}" in out
    html = report_html.read_text()
    for variant in DEFAULT_VARIANTS:
        assert variant in html
    run_dir = Path(summary["run_dir"])
    evaluations = sorted(run_dir.glob("for-loop-*-iteration-*/evaluate/evaluation"))
    assert len(evaluations) == len(DEFAULT_VARIANTS)
    schemes = {json.loads((e / "metrics.json").read_text())["model"]["scheme"] for e in evaluations}
    assert schemes == set(DEFAULT_VARIANTS)
    report_md = Path(summary["report_md"]).read_text()
    assert "dynamic" in report_md and "fixed" in report_md
