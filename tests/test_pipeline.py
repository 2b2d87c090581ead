"""The compiled pipeline: every target's YAML is structurally sound, and the CPU specs (the very
files a user submits) run end to end under kfp.local."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.core.variants import parse_variant
from components.kfp_support import cpu_image, cuda_image
from pipelines.cli import main as pipeline_cli
from pipelines.params import pipeline_parameters
from pipelines.pipeline import DEFAULT_VARIANTS, PIPELINE_NAME, PipelineConfig, compile_pipeline
from pipelines.spec_check import check_spec, dangling_references, load_spec
from pipelines.targets import MachineConfig, Toleration
from tests.kfp_helpers import TINY_PARAMS

STEPS = ("ingest", "stats", "train", "evaluate", "report")
IMAGE, CUDA_IMAGE = "registry.example/dwlrec:1.0", "registry.example/dwlrec-cuda:1.0"
pytestmark = pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")


def _config(target: str, gpu: bool, **machine) -> PipelineConfig:
    return PipelineConfig(
        image=IMAGE, cuda_image=CUDA_IMAGE, machine=MachineConfig(target=target, gpu=gpu, **machine)
    )


KUBEFLOW_SCHEDULING = {
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [Toleration("nvidia.com/gpu", None, "NoSchedule")],
    "timeout_s": 7200,
}
TARGETS = {
    "kubeflow-gpu": _config("kubeflow", True, **KUBEFLOW_SCHEDULING),
    "kubeflow-cpu": _config("kubeflow", False),
    "vertex-gpu": _config("vertex", True, accelerator="NVIDIA_TESLA_T4", accelerator_count=2),
    "vertex-cpu": _config("vertex", False),
}


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compile")
    compiled = {}
    for name, config in TARGETS.items():
        path = out / f"{name}.yaml"
        compile_pipeline(str(path), config)
        docs = list(yaml.safe_load_all(path.read_text()))
        compiled[name] = {"spec": docs[0], "platform": docs[1] if len(docs) > 1 else {}}
    return compiled


def _executors(spec: dict) -> dict:
    return spec["deploymentSpec"]["executors"]


def _loop_tasks(spec: dict) -> dict:
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    return spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]


@pytest.mark.parametrize("name", TARGETS)
def test_every_target_compiles_to_a_spec_a_backend_accepts(specs, name):
    spec = specs[name]["spec"]
    assert check_spec(spec, TARGETS[name]) == []
    # nothing in any executor's resources is a pipeline parameter (kfp 2.17 drops those)
    for executor in _executors(spec).values():
        assert "pipelinechannel" not in json.dumps(executor["container"].get("resources", {}))


def test_the_checker_finds_dangling_references_and_wrong_accelerators(specs):
    spec = copy.deepcopy(specs["kubeflow-gpu"]["spec"])
    train = _loop_tasks(spec)["train"]
    train["inputs"]["parameters"]["epochs"] = {"componentInputParameter": "pipelinechannel--nope"}
    assert dangling_references(spec) == [
        "comp-for-loop-1/train: parameter 'pipelinechannel--nope' is not declared"
    ]
    wrong = _config("kubeflow", True, accelerator="amd.com/gpu")
    problems = check_spec(specs["kubeflow-gpu"]["spec"], wrong)
    assert any("exec-train: accelerator" in p for p in problems)
    assert any("exec-evaluate: accelerator" in p for p in problems)


def test_gpu_targets_request_their_accelerator_as_literals(specs):
    expected = {"kubeflow-gpu": ("nvidia.com/gpu", "1"), "vertex-gpu": ("NVIDIA_TESLA_T4", "2")}
    for name, (kind, count) in expected.items():
        executors = _executors(specs[name]["spec"])
        for step in ("train", "evaluate"):
            resources = executors[f"exec-{step}"]["container"]["resources"]
            assert resources["accelerator"]["resourceType"] == kind
            assert resources["accelerator"]["resourceCount"] == count
            assert resources["resourceCpuRequest"] == resources["resourceCpuLimit"] == "6"
            assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == "24G"
            assert executors[f"exec-{step}"]["container"]["image"] == CUDA_IMAGE
        for step in ("ingest", "stats", "report"):
            assert "resources" not in executors[f"exec-{step}"]["container"]
        # the train task is told to use the GPU (never a silent CPU run) and its GPU count
        train_inputs = _loop_tasks(specs[name]["spec"])["train"]["inputs"]["parameters"]
        assert train_inputs["device"]["runtimeValue"]["constant"] == "cuda"
        assert train_inputs["nproc"]["runtimeValue"]["constant"] == int(count)


def test_cpu_targets_request_no_accelerator_and_use_the_cpu_image(specs):
    for name in ("kubeflow-cpu", "vertex-cpu"):
        spec = specs[name]["spec"]
        for executor in _executors(spec).values():
            assert executor["container"]["image"] == IMAGE
            assert "accelerator" not in executor["container"].get("resources", {})
        train_inputs = _loop_tasks(spec)["train"]["inputs"]["parameters"]
        assert train_inputs["device"]["runtimeValue"]["constant"] == "cpu"


def test_kubeflow_scheduling_goes_into_the_platform_spec_only_for_kubeflow(specs):
    platform = specs["kubeflow-gpu"]["platform"]["platforms"]["kubernetes"]["deploymentSpec"]
    for step in ("exec-train", "exec-evaluate"):
        config = platform["executors"][step]
        assert config["nodeSelector"]["labels"] == KUBEFLOW_SCHEDULING["node_selector"]
        assert config["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        assert config["activeDeadlineSeconds"] == "7200"
    assert specs["vertex-gpu"]["platform"] == {}
    with pytest.raises(Exception, match="apply to --target kubeflow only"):
        _config("vertex", True, node_selector={"a": "b"}).validate()


def test_dag_fans_out_over_variants_with_retries_and_caching(specs):
    spec = specs["kubeflow-cpu"]["spec"]
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"ingest", "stats", "for-loop-1", "report"}
    # over the variants the stats task checked and returned (named specs)
    assert root["for-loop-1"]["parameterIterator"]["items"]["inputParameter"] == (
        "pipelinechannel--stats-Output"
    )
    assert "variants" in root["stats"]["inputs"]["parameters"]
    body = _loop_tasks(spec)
    assert set(body) == {"train", "evaluate"}
    tasks = {**{k: v for k, v in root.items() if k != "for-loop-1"}, **body}
    for name, task in tasks.items():
        assert task["cachingOptions"].get("enableCache"), name
        assert task["retryPolicy"]["maxRetryCount"] == 2, name
    train = body["train"]["inputs"]["parameters"]
    assert train["checkpoint_root"]["runtimeValue"]["constant"] == "{{$.pipeline_root}}"
    assert train["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_parameters_have_the_steps_defaults_not_the_demo(specs):
    params = specs["vertex-cpu"]["spec"]["root"]["inputDefinitions"]["parameters"]
    assert set(params) == set(pipeline_parameters())
    assert params["variants"]["defaultValue"] == DEFAULT_VARIANTS
    assert params["epochs"]["defaultValue"] == 50
    assert "defaultValue" not in params["train_options"] or params["train_options"][
        "defaultValue"
    ] in ({}, None)
    assert not {"accelerator_type", "accelerator_count", "cpu_limit", "memory_limit"} & set(params)


def test_compile_cli_writes_each_target(tmp_path, capsys):
    for target in ("kubeflow", "vertex"):
        out = tmp_path / f"{target}.yaml"
        argv = ["compile", "--target", target, "--output", str(out), "--image", IMAGE]
        assert pipeline_cli(argv + ["--cuda-image", CUDA_IMAGE]) == 0
        kind = "NVIDIA_L4" if target == "vertex" else "nvidia.com/gpu"
        train = _executors(load_spec(out))["exec-train"]["container"]
        assert train["resources"]["accelerator"]["resourceType"] == kind
    assert "target vertex, train/evaluate: 1 x NVIDIA_L4" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "vertex", "--accelerator", "nvidia.com/gpu"], "--accelerator"),
        (["--target", "kubeflow", "--accelerator", "NVIDIA L4"], "--accelerator"),
        (["--accelerator-count", "0"], "--accelerator-count"),
        (["--cpu", "lots"], "--cpu"),
        (["--memory", "24 GB"], "--memory"),
        (["--toleration", "gpu:Sometimes"], "--toleration"),
        (["--node-selector", "pool"], "--node-selector"),
        (["--target", "vertex", "--toleration", "a:NoSchedule"], "kubeflow only"),
    ],
)
def test_compile_rejects_bad_machine_settings_in_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "p.yaml"
    assert pipeline_cli(["compile", "--output", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not out.exists()


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


def _run(tmp_path, capsys, *extra: str, params: dict | None = None):
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(TINY_PARAMS if params is None else params))
    argv = ["run", "--local", "--pipeline-root", str(tmp_path / "root")]
    code = pipeline_cli([*argv, "--params-file", str(params_file), *extra])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.splitlines()[-2]) if code == 0 else {}
    return code, summary, captured.out, captured.err


def _check_report(summary: dict, variants: list) -> None:
    """The report names every variant; each one's evaluation is of a model of its scheme."""
    named = {v.name: v.weighting_scheme for v in map(parse_variant, variants)}
    report_html = Path(summary["report_html"])
    assert report_html.name == "report.html"
    report_md = Path(summary["report_md"]).read_text()
    run_rows = [line for line in report_md.splitlines() if line.startswith("| ")]
    for name, scheme in named.items():
        assert any(line.startswith(f"| {name} | {scheme} |") for line in run_rows), name
        assert f"{name}_ndcg_at_10" in summary["metrics"]
    # the report says which model and training settings it was made with
    assert "max_len=20" in report_md and "d_model=16" in report_md
    assert f"epochs={TINY_PARAMS['epochs']}" in report_md and "precision=fp32" in report_md
    run_dir = Path(summary["run_dir"])
    evaluations = sorted(run_dir.glob("for-loop-*-iteration-*/evaluate/evaluation"))
    schemes = [json.loads((e / "metrics.json").read_text())["model"]["scheme"] for e in evaluations]
    assert sorted(schemes) == sorted(named.values())


def test_run_local_executes_the_compiled_kubeflow_cpu_yaml(tmp_path, capsys):
    """`dwlrec run --local` compiles the kubeflow target --no-gpu and runs THAT file."""
    code, summary, out, _ = _run(tmp_path, capsys)
    assert code == 0
    _check_report(summary, DEFAULT_VARIANTS)
    spec = load_spec(summary["spec"])  # the file that ran, kept in the run folder
    local = PipelineConfig(image=cpu_image(), cuda_image=cuda_image(), machine=MachineConfig())
    local.machine.gpu = False
    assert check_spec(spec, local) == []
    assert "exec-train" in spec["deploymentSpec"]["executors"]
    assert f"report: {summary['report_html']}" in out
    # one start and one end line per task, not kfp's executor logs
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 2 * (3 + 2 * len(DEFAULT_VARIANTS)), out
    assert any("done  ingest" in line and "interactions" in line for line in lines)
    assert any(
        "done  train [dynamic]" in line and "best validation NDCG@10" in line for line in lines
    )
    assert any("done  evaluate [none]" in line and "test NDCG@10" in line for line in lines)
    assert "executor_main" not in out and len(out.splitlines()) < 30
    logs = Path(summary["logs"])
    train_log = (logs / "for-loop-1-iteration-0__train.log").read_text()
    assert "epoch" in train_log


def test_run_local_executes_a_compiled_vertex_cpu_yaml(tmp_path, capsys):
    spec = tmp_path / "vertex.yaml"
    assert pipeline_cli(["compile", "--target", "vertex", "--no-gpu", "--output", str(spec)]) == 0
    # a named spec, the post-hoc logit adjustment (trains as none, calibrates on validation) and
    # group DRO with the auxiliary domain head, side by side
    composite = {"name": "dyn-composite", "scheme": "dynamic", "target": "composite", "beta": 0.8}
    dro_aux = {"name": "dro-aux", "scheme": "dro", "aux_domain": 0.5}
    variants = ["none", composite, "logit-adjust", dro_aux]
    composite_setting = ("dynamic", "composite", 0.8)
    params = {**TINY_PARAMS, "variants": variants, "exclude_seen": True}  # one protocol, all tasks
    code, summary, out, _ = _run(tmp_path, capsys, "--spec", str(spec), "--verbose", params=params)
    assert code == 0
    _check_report(summary, variants)
    report_md = Path(summary["report_md"]).read_text()
    rows = [line for line in report_md.splitlines() if line.startswith("| dyn-composite |")]
    # the settings table (scheme, target, beta) and the run table's weighting column
    assert any("| dynamic | composite | 0.8 |" in row for row in rows)
    assert any("beta=0.8" in row and "target=composite" in row for row in rows)
    configs = [
        json.loads(path.read_text())
        for path in Path(summary["run_dir"]).glob("for-loop-*-iteration-*/train/model/config.json")
    ]
    settings = {(c["scheme"], c["weighting"]["target"], c["weighting"]["beta"]) for c in configs}
    # logit-adjust trained as none
    assert settings == {("none", "inverse", 0.9), ("dro", "inverse", 0.9), composite_setting}
    assert len(configs) == 4
    assert all(c["train"]["exclude_seen"] is True for c in configs)
    assert sorted(c["train"]["aux_domain"] for c in configs) == [0.0, 0.0, 0.0, 0.5]
    evaluations = Path(summary["run_dir"]).glob("for-loop-*-iteration-*/evaluate/evaluation")
    metrics = [json.loads((e / "metrics.json").read_text()) for e in evaluations]
    assert all(m["exclude_seen"] for m in metrics)
    adjusted = [m["logit_adjust"] for m in metrics if m.get("logit_adjust")]
    assert len(adjusted) == 1 and adjusted[0]["curve"][0]["tau"] == 0.0
    report_summary = json.loads(Path(summary["report_html"]).with_name("summary.json").read_text())
    assert set(report_summary["verdicts"]) == {"dyn-composite", "logit-adjust", "dro-aux"}
    composite_config = next(c for c in configs if c["weighting"]["target"] == "composite")
    assert composite_config["weighting_sources"]["target"] == "train option"
    assert "done  train [dyn-composite]" in out
    # --verbose streams the task logs as well as keeping them in files
    assert "train summary:" in out and "Executing task" in out
    assert Path(summary["spec"]).read_text() == spec.read_text()


def test_run_local_refuses_a_gpu_spec_without_a_gpu(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = tmp_path / "gpu.yaml"
    assert pipeline_cli(["compile", "--output", str(spec)]) == 0
    code, _, _, err = _run(tmp_path, capsys, "--spec", str(spec))
    assert code == 2
    assert "request a GPU and this machine has none" in err
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").iterdir())


def test_durable_checkpoints_on_kubeflow_mount_a_claim_and_explicit_roots_are_checked(tmp_path):
    config = _config("kubeflow", True)
    config.checkpoint_root, config.checkpoint_pvc = "/checkpoints", "dwl-ckpt"
    path = tmp_path / "pvc.yaml"
    compile_pipeline(str(path), config)
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    assert check_spec(spec, config) == []
    mount = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert mount["pvcMount"][0]["mountPath"] == "/checkpoints"
    assert mount["pvcMount"][0]["constant"] == "dwl-ckpt"
    train = _loop_tasks(spec)["train"]["inputs"]["parameters"]
    assert train["checkpoint_root"]["runtimeValue"]["constant"] == "/checkpoints"
    for target, root, message in [
        ("vertex", "/local", "Vertex AI tasks reach buckets only"),
        ("kubeflow", "gs://b/ckpt", "volume mounted into the train task"),
    ]:
        bad = _config(target, True)
        bad.checkpoint_root = root
        with pytest.raises(Exception, match=message):
            bad.validate()
