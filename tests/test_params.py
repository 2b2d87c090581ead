"""Pipeline parameters: parsed from the command line and every value checked before anything runs."""

import json
import os

import pytest

from pipelines.cli import main as pipeline_cli
from pipelines.params import parse_params
from pipelines.validate import (
    DEMO_EPOCHS,
    DEMO_INGEST_OPTIONS,
    DEMO_TRAIN_OPTIONS,
    check_run_params,
    with_demo_defaults,
)


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


def test_demo_settings_apply_only_to_the_synthetic_source():
    demo = with_demo_defaults({})
    assert demo["ingest_options"] == DEMO_INGEST_OPTIONS
    assert demo["train_options"] == DEMO_TRAIN_OPTIONS
    assert demo["epochs"] == DEMO_EPOCHS
    real = with_demo_defaults({"source": "movielens", "input_uri": "/data/ml-100k"})
    assert real == {"source": "movielens", "input_uri": "/data/ml-100k"}
    full = check_run_params(real)  # real data: the steps' defaults (max-len 200, 50 epochs)
    assert full["ingest_options"] == {} and full["train_options"] == {}
    assert full["epochs"] == 50
    # what the user gave wins over the demo
    assert with_demo_defaults({"epochs": 2})["epochs"] == 2


DYN = {"name": "dyn", "scheme": "dynamic"}
BAD = [
    ({"variants": ["none", "bogus"]}, "--param variants=", "'scheme' must be one of"),
    ({"variants": []}, "--param variants=", "at least one variant"),
    ({"variants": ["none", "none"]}, "--param variants=", "duplicate variant name(s) ['none']"),
    ({"variants": ["fixed", "dynamic"]}, "--param baseline=", "must be the name of a variant"),
    ({"variants": ["none", {"scheme": "dynamic", "beta": 0.8}]}, "--param variants=", "'name'"),
    ({"variants": ["none", {"name": "a/b", "scheme": "fixed"}]}, "--param variants=", "letters"),
    (
        {"variants": ["none", {**DYN, "beta": 1.5}]},
        "--param variants=",
        "--beta: must be in [0, 1)",
    ),
    ({"variants": ["none", {**DYN, "lrr": 1}]}, "--param variants=", "unknown train option(s)"),
    ({"variants": ["none", {**DYN, "loss": "hinge"}]}, "--param variants=", "unknown loss 'hinge'"),
    ({"variants": ["none", {**DYN, "device": "cuda"}]}, "--param variants=", "per variant"),
    ({"variants": ["none", {**DYN, "target": "x"}]}, "--param variants=", "unknown target 'x'"),
    ({"loss": "hinge"}, "--param loss=", "expected one of"),
    ({"epochs": 0}, "--param epochs=", "positive"),
    ({"train_options": {"epochs": 3}}, "--param train_options=", "set by epochs"),
    ({"train_options": {"device": "cuda"}}, "--param train_options=", "compiled target"),
    ({"train_options": {"exclude_seen": True}}, "--param train_options=", "set by exclude_seen"),
    ({"eval_options": {"exclude_seen": True}}, "--param eval_options=", "set by exclude_seen"),
    ({"exclude_seen": "yes"}, "--param exclude_seen=", "true or false"),
    ({"variants": ["none", {**DYN, "exclude_seen": True}]}, "--param variants=", "per variant"),
    (
        {"train_options": {"max_lenn": 3}},
        "--param train_options=",
        "unknown option(s) ['max_lenn']",
    ),
    ({"train_options": {"lr": -1}}, "--param train_options=", "--lr must be > 0"),
    ({"train_options": {"d_model": 30, "n_heads": 4}}, "--param train_options=", "d_model"),
    ({"ingest_options": {"users": 5}}, "--param ingest_options=", "unknown option(s) ['users']"),
    ({"stats_options": {"gama": 1}}, "--param stats_options=", "unknown option(s) ['gama']"),
    ({"eval_options": {"bootstrap": -1}}, "--param eval_options=", "bootstrap"),
    ({"eval_options": {"k": 5}}, "--param eval_options=", "unknown option(s) ['k']"),
    ({"report_options": {"baseline": "x"}}, "--param report_options=", "set by baseline"),
    ({"source": "netflix"}, "--param source=", "expected one of"),
    ({"source": "movielens"}, "--param input_uri=", "give its path"),
    (
        {"source": "movielens", "input_uri": "/d", "ingest_options": DEMO_INGEST_OPTIONS},
        "--param ingest_options=",
        "unknown option(s) ['num_domains', 'num_items', 'num_users', 'seed']",
    ),
    ({"fixed_domains": "Horror"}, "--param fixed_domains=", "list"),
]


@pytest.mark.parametrize("params, name, message", BAD)
def test_bad_values_fail_before_anything_runs(tmp_path, capsys, params, name, message):
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params))
    root = tmp_path / "root"
    argv = ["run", "--local", "--pipeline-root", str(root), "--params-file", str(params_file)]
    assert pipeline_cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {name}") and message in err[0], err[0]
    assert not root.exists()  # no task ran, nothing was written


def test_submit_validates_before_contacting_a_cluster(capsys):
    # no server listens on this port: a check that ran after connecting would say so
    argv = ["submit", "--kfp-host", "http://127.0.0.1:9", "--param", 'variants=["bogus"]']
    assert pipeline_cli(argv) == 2
    assert "error: --param variants=" in capsys.readouterr().err


def test_ingest_refuses_options_a_source_does_not_understand(tmp_path):
    from components.errors import ConfigError
    from components.ingest import ingest

    with pytest.raises(ConfigError, match=r"movielens source: unknown option\(s\) \['num_users'\]"):
        ingest("movielens", tmp_path / "out", input_uri=str(tmp_path / "in"), num_users=5)
    assert not (tmp_path / "out").exists()


def test_pipeline_commands_turn_bad_paths_into_one_line(tmp_path, capsys, monkeypatch):
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    cases = [
        (["run", "--local", "--params-file", str(listed)], "expected a JSON object of parameters"),
        (["compile", "--output", str(tmp_path)], "a pipeline spec is a .yaml file"),
        (["compile", "--output", str(tmp_path / "no" / "p.yaml")], "not a writable directory"),
        (["run", "--local", "--pipeline-root", "gs://b/root"], "a local run writes to a local"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((["compile", "--output", str(read_only / "p.yaml")], "not a writable"))
        cases.append((["run", "--local", "--pipeline-root", str(read_only / "r")], "cannot create"))
    for argv, message in cases:
        assert pipeline_cli(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert list(tmp_path.glob("**/*.yaml")) == [] and not (tmp_path / "gs:").exists()


def test_submit_vertex_without_credentials_is_one_line_before_compiling(capsys, monkeypatch):
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args, **kwargs):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    argv = ["submit", "--vertex", "--project", "p", "--region", "us-central1"]
    assert pipeline_cli([*argv, "--pipeline-root", "gs://b/runs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Google Cloud credentials found" in err[0], err


def test_docker_runner_without_a_daemon_says_so(monkeypatch):
    docker = pytest.importorskip("docker")
    from components.errors import ConfigError
    from pipelines.local import make_runner

    def no_daemon(*args, **kwargs):
        raise docker.errors.DockerException("Error while fetching server API version")

    monkeypatch.setattr(docker, "from_env", no_daemon)
    with pytest.raises(ConfigError, match="no Docker daemon answers"):
        make_runner("docker", {"dwlrec:latest"}, 1)


def test_local_tasks_share_the_cores_among_the_variants_kfp_runs_at_once(monkeypatch):
    from pipelines.local import task_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert task_threads(["none", "fixed", "dynamic"], 0) == 4  # kfp.local runs 2 at once
    assert task_threads(["none"], 0) == 8
    assert task_threads(["none", "fixed", "dynamic"], 1) == 8
