"""The Spark Operator launcher (components.ingest.spark_app) against a small fake Kubernetes API
on 127.0.0.1 that records the created ``SparkApplication`` and plays its states
(tests/fake_k8s.FakeSparkOperator); and the job entry point's arguments
(components.ingest.spark_main)."""

from __future__ import annotations

import pytest

from components.errors import ConfigError
from components.ingest.spark_app import (
    MAIN_FILE,
    SparkApplicationFailed,
    SparkAppSpec,
    app_name,
    build_spark_application,
    run_spark_application,
)
from components.ingest.spark_main import spark_arguments
from tests.fake_k8s import FakeSparkOperator

pytest.importorskip("kubernetes")

ARGS = ["--source", "movielens", "--input", "gs://b/ml-20m", "--output", "/work/out/ml20m"]


SPEC = SparkAppSpec(
    image="registry.example/dwlrec:0.1.0-abc1234",
    service_account="spark-driver",
    driver_cores=2,
    driver_memory="3g",
    executor_cores=4,
    executor_memory="8g",
    executor_instances=5,
    spark_conf={"spark.sql.shuffle.partitions": "400"},
    pvc="dwlrec-work",
    mount_path="/work",
    poll_s=0.05,
    timeout_s=30,
)


def test_creates_the_application_and_waits_for_completed(tmp_path):
    states = [("", ""), ("SUBMITTED", ""), ("RUNNING", ""), ("COMPLETED", "")]
    lines: list[str] = []
    with FakeSparkOperator(tmp_path, states) as api:
        status = run_spark_application(
            SPEC, "dwl-ingest-run-1", ARGS, config_file=str(api.kubeconfig), log=lines.append
        )
    assert status["applicationState"]["state"] == "COMPLETED"
    assert api.gets == 4  # polled through every state
    app = api.apps["dwl-ingest-run-1"]
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    assert app["kind"] == "SparkApplication"
    assert app["metadata"]["namespace"] == "team-a"  # the kubeconfig context's
    spec = app["spec"]
    assert (spec["type"], spec["mode"], spec["image"]) == ("Python", "cluster", SPEC.image)
    assert spec["mainApplicationFile"] == MAIN_FILE
    assert MAIN_FILE.startswith("local:///") and MAIN_FILE.endswith("ingest/spark_main.py")
    assert spec["arguments"] == ARGS
    assert spec["restartPolicy"] == {"type": "Never"}
    assert spec["sparkConf"] == {"spark.sql.shuffle.partitions": "400"}
    driver, executor = spec["driver"], spec["executor"]
    assert (driver["cores"], driver["memory"]) == (2, "3g")
    assert driver["serviceAccount"] == "spark-driver"
    assert (executor["cores"], executor["memory"], executor["instances"]) == (4, "8g", 5)
    assert spec["volumes"] == [
        {"name": "dwlrec-work", "persistentVolumeClaim": {"claimName": "dwlrec-work"}}
    ]
    assert driver["volumeMounts"] == [{"name": "dwlrec-work", "mountPath": "/work"}]
    assert lines[0].startswith("ingest: created SparkApplication team-a/dwl-ingest-run-1")
    assert [line.rsplit(": ", 1)[1] for line in lines[1:]] == [
        "pending", "SUBMITTED", "RUNNING", "COMPLETED",
    ]  # fmt: skip


@pytest.mark.parametrize("state", ["FAILED", "SUBMISSION_FAILED"])
def test_a_failed_application_raises_its_error_message(tmp_path, state):
    message = "driver container failed with ExitCode: 2, Reason: Error"
    with FakeSparkOperator(tmp_path, [("RUNNING", ""), (state, message)]) as api:
        with pytest.raises(SparkApplicationFailed) as err:
            run_spark_application(SPEC, "dwl-ingest-x", ARGS, config_file=str(api.kubeconfig))
    text = str(err.value)
    assert f"team-a/dwl-ingest-x {state}: {message}" in text
    assert "kubectl logs dwl-ingest-x-driver -n team-a" in text


def test_an_application_that_never_completes_times_out(tmp_path):
    spec = SparkAppSpec(image="img", poll_s=0.05, timeout_s=0.3)
    with FakeSparkOperator(tmp_path, [("RUNNING", "")]) as api:
        with pytest.raises(SparkApplicationFailed, match=r"not completed within 0.3 s .*RUNNING"):
            run_spark_application(spec, "dwl-ingest-y", ARGS, config_file=str(api.kubeconfig))
    assert 3 <= api.gets <= 8


def test_a_retry_waits_for_its_application_or_replaces_a_failed_one(tmp_path):
    spec = SparkAppSpec(image="img", poll_s=0.05, timeout_s=30)
    with FakeSparkOperator(tmp_path, [("COMPLETED", "")]) as api:
        config = str(api.kubeconfig)
        run_spark_application(spec, "dwl-ingest-z", ARGS, config_file=config)
        lines: list[str] = []  # the same name again: no second application, no delete
        run_spark_application(spec, "dwl-ingest-z", ARGS, config_file=config, log=lines.append)
        assert "exists (COMPLETED)" in lines[0]
        assert not any(method == "DELETE" for method, _ in api.requests)

        api.states, api.gets = [("FAILED", "boom"), ("RUNNING", ""), ("COMPLETED", "")], 0
        api.apps["dwl-ingest-z"]["arguments-before"] = True  # marks the old object
        lines.clear()
        start = len(api.requests)
        run_spark_application(spec, "dwl-ingest-z", ARGS, config_file=config, log=lines.append)
        assert "replaced the FAILED SparkApplication team-a/dwl-ingest-z" in lines[0]
        assert "arguments-before" not in api.apps["dwl-ingest-z"]  # a new object
        methods = [method for method, _ in api.requests[start:]]
        assert methods == ["POST", "GET", "DELETE", "POST", "GET", "GET"]  # 409, then a new one


def test_a_namespace_without_the_operator_fails_clearly(tmp_path):
    spec = SparkAppSpec(image="img", namespace="elsewhere", poll_s=0.05)
    with FakeSparkOperator(tmp_path, [("COMPLETED", "")]) as api:
        refused = r"elsewhere/dwl-ingest-q: create refused \(404"
        with pytest.raises(SparkApplicationFailed, match=refused):
            run_spark_application(spec, "dwl-ingest-q", ARGS, config_file=str(api.kubeconfig))


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(image=""), "needs an image"),
        (dict(executor_instances=0), "executor instances 0"),
        (dict(driver_cores=True), "driver cores True"),
        (dict(executor_memory="4GB"), "executor memory '4GB'"),
        (dict(driver_memory="0g"), "driver memory '0g'"),
        (dict(pvc="claim"), "claim and an absolute mount path"),
        (dict(pvc="claim", mount_path="work"), "claim and an absolute mount path"),
        (dict(poll_s=0), "must exceed poll"),
        (dict(timeout_s=5, poll_s=10), "must exceed poll"),
    ],
)
def test_bad_settings_fail_before_any_request(tmp_path, bad, match):
    spec = SparkAppSpec(**{"image": "img", **bad})
    with FakeSparkOperator(tmp_path, [("COMPLETED", "")]) as api:
        with pytest.raises(ConfigError, match=match):
            run_spark_application(spec, "dwl-ingest-b", ARGS, config_file=str(api.kubeconfig))
    assert api.requests == []


def test_names_and_a_manifest_without_a_volume():
    assert app_name("Run_2026/12:01") == "dwl-ingest-run-2026-12-01"
    assert len(app_name("x" * 200)) <= 50
    body = build_spark_application(SparkAppSpec(image="img"), "dwl-ingest-a", ARGS, "ns")
    assert "volumes" not in body["spec"] and "volumeMounts" not in body["spec"]["driver"]
    assert body["spec"]["driver"]["serviceAccount"] == "spark"


def test_the_entry_point_runs_the_ingest_cli_with_the_spark_engine():
    assert spark_arguments(ARGS) == [*ARGS, "--engine", "spark"]
    assert spark_arguments([*ARGS, "--engine", "duckdb"]) == [*ARGS, "--engine", "duckdb"]
    assert spark_arguments([*ARGS, "--engine=arrow"]) == [*ARGS, "--engine=arrow"]
