"""`dwlrec submit` up to the HTTP layer: a fake Kubeflow Pipelines API server and a fake Vertex AI
REST endpoint (plus the GCS bucket lookup) on 127.0.0.1 record what the real clients send.

The tests through ``pipelines.cli.main`` need cli.py to be wired to ``pipelines.submit``; the
others call ``add_submit_arguments`` / ``submit_from_args`` directly."""

import argparse
import json
import logging
import re
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from components.errors import ConfigError, DwlrecError
from pipelines import submit, submit_kfp
from pipelines.cli import main as pipeline_cli
from pipelines.pipeline import PIPELINE_NAME, compile_pipeline

REGISTRY_IMAGES = {
    "DWLREC_IMAGE": "reg.example/team/dwlrec:0.2.0-abc1234",
    "DWLREC_CUDA_IMAGE": "reg.example/team/dwlrec-cuda:0.2.0-abc1234",
}


@pytest.fixture(autouse=True)
def registry_images(monkeypatch):
    """Images a cluster can pull (submit refuses :latest and registry-less names)."""
    for name, image in REGISTRY_IMAGES.items():
        monkeypatch.setenv(name, image)


pytestmark = pytest.mark.filterwarnings("ignore:This client only works with Kubeflow Pipeline")
TIMESTAMPED = re.compile(rf"{PIPELINE_NAME}-\d{{8}}-\d{{6}}")

PROJECT, PROJECT_NUMBER, REGION = "dwlrec-proj", "123456", "us-central1"


def vertex_flags(endpoint: str | None = None, root: str = "gs://dwl-bucket/runs") -> list[str]:
    """The flags of a Vertex submission; with ``endpoint``, a complete one to the fake server."""
    flags = ["--vertex", "--project", PROJECT, "--region", REGION, "--pipeline-root", root]
    if endpoint is not None:
        flags += ["--service-account", f"runner@{PROJECT}.iam.gserviceaccount.com"]
        flags += ["--api-endpoint", endpoint]
    return flags


class FakeCloud(BaseHTTPRequestHandler):
    """Answers the calls kfp.Client and aiplatform.PipelineJob make; records every request."""

    requests: list = []  # (method, path, body, headers with lower-case names)
    fail_runs = False
    kfp_version: str | None = "2.14.0"  # healthz tag_name; None leaves it out
    multi_user = False
    healthz_html = False  # answer healthz like a Dex login page
    require_token: str | None = None  # 401 unless "Authorization: Bearer <token>"

    def _reply(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refused(self) -> bool:
        if self.require_token and self.headers.get("Authorization") != (
            f"Bearer {self.require_token}"
        ):
            self._reply(401, {"error": "Unauthorized", "code": 16})
            return True
        return False

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(
            ("GET", self.path, None, {k.lower(): v for k, v in self.headers.items()})
        )
        if self._refused():
            return None
        path = urlparse(self.path).path
        if path == "/apis/v2beta1/healthz":
            if self.healthz_html:
                page = b"<html><body>Log in to Your Account</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return None
            healthz = {"commit_sha": "fake", "multi_user": self.multi_user}
            if self.kfp_version is not None:
                healthz["tag_name"] = self.kfp_version
            return self._reply(200, healthz)
        if path == "/apis/v2beta1/experiments":
            return self._reply(200, {"experiments": [], "total_size": 0})
        if path.startswith("/storage/v1/b/"):  # the pipeline-root bucket exists, ours
            return self._reply(
                200,
                {
                    "name": path.rsplit("/", 1)[-1],
                    "projectNumber": PROJECT_NUMBER,
                    "location": "US",
                },
            )
        return self._reply(404, {"error": {"code": 404, "message": f"no route {path}"}})

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.requests.append(
            ("POST", self.path, body, {k.lower(): v for k, v in self.headers.items()})
        )
        if self._refused():
            return None
        path = urlparse(self.path).path
        if path == "/apis/v2beta1/experiments":
            return self._reply(200, {"experiment_id": "exp-1", **body})
        if path == "/apis/v2beta1/runs":
            if self.fail_runs:
                return self._reply(500, {"error": "database is down", "code": 13})
            return self._reply(200, {"run_id": "run-42", "state": "PENDING", **body})
        if path == f"/v1/projects/{PROJECT}/locations/{REGION}/pipelineJobs":
            name = f"projects/{PROJECT_NUMBER}/locations/{REGION}/pipelineJobs/job-7"
            return self._reply(200, {**body, "name": name, "state": 2})
        return self._reply(404, {"error": {"code": 404, "message": f"no route {path}"}})

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def fake_cloud(monkeypatch, tmp_path):
    from kfp.client import Client

    FakeCloud.requests = []
    FakeCloud.fail_runs = False
    FakeCloud.kfp_version = "2.14.0"
    FakeCloud.multi_user = False
    FakeCloud.healthz_html = False
    FakeCloud.require_token = None
    # no token or kfp context from the machine running the tests
    for name in ("KF_PIPELINES_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(submit_kfp, "KFP_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))
    monkeypatch.setattr(Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setattr(Client, "_NAMESPACE_PATH", str(tmp_path / "no-pod-namespace"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", FakeCloud
    server.shutdown()
    server.server_close()


def _posts(cloud, path_part: str) -> list[dict]:
    return [
        body for method, path, body, _ in cloud.requests if method == "POST" and path_part in path
    ]


def _images(pipeline_spec: dict) -> set[str]:
    return {e["container"]["image"] for e in pipeline_spec["deploymentSpec"]["executors"].values()}


def test_submit_kfp_uploads_the_compiled_spec_with_parameters(fake_cloud, capsys):
    url, cloud = fake_cloud
    code = pipeline_cli(
        [
            "submit",
            "--kfp-host",
            url,
            "--experiment",
            "dwl-exp",
            "--image",
            "reg.example/dwlrec:1",
            "--cuda-image",
            "reg.example/dwlrec-cuda:1",
            "--param",
            "epochs=3",
            "--param",
            'variants=["none","dynamic"]',
        ]
    )
    assert code == 0
    (experiment,) = _posts(cloud, "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "dwl-exp"
    (run,) = _posts(cloud, "/apis/v2beta1/runs")
    assert run["experiment_id"] == "exp-1"
    spec = run["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    assert _images(spec) == {"reg.example/dwlrec:1", "reg.example/dwlrec-cuda:1"}
    params = run["runtime_config"]["parameters"]
    assert params["epochs"] == 3
    assert params["variants"] == ["none", "dynamic"]


def test_submit_kfp_prints_run_id_and_url(fake_cloud, capsys):
    url, _ = fake_cloud
    assert pipeline_cli(["submit", "--kfp-host", url]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n") :])
    assert summary["backend"] == "kubeflow"
    assert summary["run_id"] == "run-42"
    assert summary["url"] == f"{url}/#/runs/details/run-42"


def test_submit_kfp_server_error_is_one_clear_line(fake_cloud, capsys):
    url, cloud = fake_cloud
    cloud.fail_runs = True
    assert pipeline_cli(["submit", "--kfp-host", url]) == 2
    err = capsys.readouterr().err
    assert f"error: Kubeflow submission to {url} failed" in err
    assert "database is down" in err


@pytest.fixture
def fake_vertex(fake_cloud, monkeypatch):
    """The fake server as Vertex AI's REST endpoint and GCS, with anonymous credentials."""
    pytest.importorskip("google.cloud.aiplatform", reason="optional 'vertex' extra")
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform.utils import resource_manager_utils

    url, _ = fake_cloud
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)  # the pipeline-root bucket lookup
    monkeypatch.setattr(
        google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), PROJECT)
    )
    # aiplatform checks the bucket's owner with the Resource Manager API (gRPC, not faked)
    monkeypatch.setattr(
        resource_manager_utils,
        "get_project_number",
        lambda project, credentials=None: PROJECT_NUMBER,
    )
    return fake_cloud


def test_submit_vertex_creates_a_pipeline_job(fake_vertex, tmp_path, capsys):
    url, cloud = fake_vertex
    package = tmp_path / "pipeline.yaml"
    assert (
        pipeline_cli(
            [
                "compile",
                "--output",
                str(package),
                "--image",
                "reg.example/dwlrec:2",
                "--cuda-image",
                "reg.example/dwlrec-cuda:2",
            ]
        )
        == 0
    )
    code = pipeline_cli(
        [
            "submit",
            *vertex_flags(url),
            "--package",
            str(package),
            "--param",
            "epochs=4",
            "--param",
            "source=movielens",
            "--param",
            "input_uri=gs://dwl-bucket/ml-100k",
        ]
    )
    assert code == 0
    (job,) = _posts(cloud, "/pipelineJobs")
    assert job["displayName"].startswith(PIPELINE_NAME)
    assert job["serviceAccount"] == f"runner@{PROJECT}.iam.gserviceaccount.com"
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == PIPELINE_NAME
    assert _images(job["pipelineSpec"]) == {"reg.example/dwlrec:2", "reg.example/dwlrec-cuda:2"}
    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == "gs://dwl-bucket/runs"
    assert runtime["parameterValues"]["epochs"] == 4
    assert runtime["parameterValues"]["input_uri"] == "gs://dwl-bucket/ml-100k"
    assert "accelerator_type" not in runtime["parameterValues"]  # Vertex default kept
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n") :])
    assert summary["job"].endswith("/pipelineJobs/job-7")
    assert f"locations/{REGION}/pipelines/runs/job-7?project={PROJECT}" in summary["url"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit"], "exactly one of --vertex or --kfp-host"),
        (["submit", "--vertex", "--kfp-host", "http://x"], "exactly one of"),
        (["submit", "--vertex", "--region", REGION], "needs --project --pipeline-root"),
        (
            ["submit", "--kfp-host", "http://127.0.0.1:9", "--package", "/no/such.yaml"],
            "--package /no/such.yaml: no such file",
        ),
        (["submit", "--kfp-host", "http://127.0.0.1:9", "--param", "epochs=x"], "epochs"),
    ],
)
def test_submit_argument_errors_name_the_flag(argv, message, capsys):
    assert pipeline_cli(argv) == 2
    assert message in capsys.readouterr().err


def test_submit_vertex_rejects_a_local_pipeline_root(capsys):
    pytest.importorskip("google.cloud.aiplatform", reason="optional 'vertex' extra")
    code = pipeline_cli(["submit", *vertex_flags(root="/tmp/root")])
    assert code == 2
    assert "--pipeline-root '/tmp/root': Vertex AI needs a gs:// URI" in capsys.readouterr().err


# --- pipelines.submit directly (independent of cli.py) ------------------------------------------


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    """The pipeline compiled with the default (Kubeflow) configuration, registry images."""
    from pipelines.pipeline import PipelineConfig

    config = PipelineConfig(
        image=REGISTRY_IMAGES["DWLREC_IMAGE"], cuda_image=REGISTRY_IMAGES["DWLREC_CUDA_IMAGE"]
    )
    return compile_pipeline(str(tmp_path_factory.mktemp("pkg") / "pipeline.yaml"), config)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dwlrec submit")
    submit.add_submit_arguments(parser)
    return parser.parse_args(list(argv))


def _headers(cloud, name: str) -> list:
    """The ``name`` header of every request the fake server saw (None where absent)."""
    return [headers.get(name.lower()) for _, _, _, headers in cloud.requests]


def test_kfp_run_gets_namespace_root_service_account_name_and_description(fake_cloud, package):
    url, cloud = fake_cloud
    args = _args(
        "--kfp-host",
        url,
        "--namespace",
        "team-a",
        "--pipeline-root",
        "minio://mlpipeline/v2/artifacts",
        "--service-account",
        "default-editor",
        "--experiment",
        "dwl-exp",
    )
    params = {"epochs": 3, "variants": ["none", "dynamic"]}
    summary = submit.submit_from_args(args, package, params)

    # the experiment (and through it the run) belongs to the namespace
    lookups = [
        parse_qs(urlparse(path).query)
        for method, path, _, _ in cloud.requests
        if method == "GET" and urlparse(path).path == "/apis/v2beta1/experiments"
    ]
    assert lookups and all(query["namespace"] == ["team-a"] for query in lookups)
    (experiment,) = _posts(cloud, "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "dwl-exp"
    assert experiment["namespace"] == "team-a"
    (run,) = _posts(cloud, "/apis/v2beta1/runs")
    assert run["experiment_id"] == "exp-1"
    assert run["runtime_config"]["pipeline_root"] == "minio://mlpipeline/v2/artifacts"
    assert run["runtime_config"]["parameters"] == params
    assert run["service_account"] == "default-editor"
    assert TIMESTAMPED.fullmatch(run["display_name"])
    assert run["description"] == f"dwlrec {PIPELINE_NAME}; variants: none, dynamic"
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == PIPELINE_NAME
    assert summary == {
        "backend": "kubeflow",
        "run_id": "run-42",
        "display_name": run["display_name"],
        "url": f"{url}/#/runs/details/run-42",
    }
    assert _headers(cloud, "Authorization") == [None] * len(cloud.requests)  # no token anywhere


def test_kfp_defaults_experiment_description_and_explicit_display_name(fake_cloud, package):
    url, cloud = fake_cloud
    submit.submit_from_args(_args("--kfp-host", url, "--display-name", "my run"), package, {})
    (experiment,) = _posts(cloud, "/apis/v2beta1/experiments")
    assert experiment["display_name"] == "Default"
    (run,) = _posts(cloud, "/apis/v2beta1/runs")
    assert run["display_name"] == "my run"
    assert run["description"].endswith("variants: none, fixed, dynamic")  # the pipeline default
    assert "pipeline_root" not in run["runtime_config"]  # the server's default root
    assert "service_account" not in run


@pytest.mark.parametrize("source", ["flag", "env", "both"])
def test_kfp_bearer_token_from_flag_or_environment(fake_cloud, package, monkeypatch, source):
    url, cloud = fake_cloud
    argv = ["--kfp-host", url]
    if source in ("flag", "both"):
        argv += ["--token", "flag-token"]
    if source in ("env", "both"):
        monkeypatch.setenv("KF_PIPELINES_TOKEN", "env-token")
    expected = "env-token" if source == "env" else "flag-token"
    cloud.require_token = expected
    submit.submit_from_args(_args(*argv), package, {})
    assert _posts(cloud, "/apis/v2beta1/runs")
    assert set(_headers(cloud, "Authorization")) == {f"Bearer {expected}"}


def test_kfp_in_cluster_service_account_token(fake_cloud, package, monkeypatch, tmp_path):
    url, cloud = fake_cloud
    token_file = tmp_path / "token"
    token_file.write_text("projected-sa-token\n")
    monkeypatch.setattr(submit_kfp, "KFP_SA_TOKEN_PATH", str(token_file))
    cloud.require_token = "projected-sa-token"
    submit.submit_from_args(_args("--kfp-host", url, "--namespace", "team-a"), package, {})
    assert _posts(cloud, "/apis/v2beta1/runs")
    assert set(_headers(cloud, "Authorization")) == {"Bearer projected-sa-token"}


def test_kfp_token_flag_beats_the_in_cluster_token(fake_cloud, package, monkeypatch, tmp_path):
    url, cloud = fake_cloud
    (tmp_path / "token").write_text("projected-sa-token")
    monkeypatch.setattr(submit_kfp, "KFP_SA_TOKEN_PATH", str(tmp_path / "token"))
    submit.submit_from_args(_args("--kfp-host", url, "--token", "mine"), package, {})
    assert set(_headers(cloud, "Authorization")) == {"Bearer mine"}


def test_sa_token_path_is_kfps():
    import kfp.client

    assert submit.KFP_SA_TOKEN_PATH == kfp.client.KF_PIPELINES_SA_TOKEN_PATH
    assert submit.KFP_SA_TOKEN_ENV == kfp.client.KF_PIPELINES_SA_TOKEN_ENV


def test_kfp_session_cookie_is_sent(fake_cloud, package):
    url, cloud = fake_cloud
    cookie = "authservice_session=MTcwMDAw"
    submit.submit_from_args(_args("--kfp-host", url, "--cookies", cookie), package, {})
    assert _posts(cloud, "/apis/v2beta1/runs")
    assert set(_headers(cloud, "Cookie")) == {cookie}


def test_kfp_backend_older_than_2_14_is_refused_before_any_post(fake_cloud, package):
    url, cloud = fake_cloud
    cloud.kfp_version = "2.5.0"
    with pytest.raises(ConfigError) as error:
        submit.submit_from_args(_args("--kfp-host", url, "--namespace", "team-a"), package, {})
    message = str(error.value)
    assert "\n" not in message
    assert f"{url} is 2.5.0" in message
    assert "dsl.Collected needs KFP >= 2.14" in message
    assert "Kubeflow Manifests v1.10 ships 2.5.0" in message
    assert "--skip-version-check" in message
    assert not [r for r in cloud.requests if r[0] == "POST"]


def test_kfp_skip_version_check(fake_cloud, package):
    url, cloud = fake_cloud
    cloud.kfp_version = "2.5.0"
    args = _args("--kfp-host", url, "--namespace", "team-a", "--skip-version-check")
    assert submit.submit_from_args(args, package, {})["run_id"] == "run-42"
    assert not [r for r in cloud.requests if "healthz" in r[1]]  # not even asked


@pytest.mark.parametrize("version", ["2.14.0", "v2.15.1", "3.0.0-rc.1"])
def test_kfp_new_enough_backends_pass(fake_cloud, package, version):
    url, cloud = fake_cloud
    cloud.kfp_version = version
    submit.submit_from_args(_args("--kfp-host", url), package, {})
    assert _posts(cloud, "/apis/v2beta1/runs")


@pytest.mark.parametrize("version", [None, "unknown", "dev"])
def test_kfp_unknown_version_warns_and_submits(fake_cloud, package, caplog, version):
    url, cloud = fake_cloud
    cloud.kfp_version = version
    with caplog.at_level(logging.WARNING, logger="dwlrec.pipeline"):
        submit.submit_from_args(_args("--kfp-host", url), package, {})
    assert _posts(cloud, "/apis/v2beta1/runs")
    assert "reports no version" in caplog.text
    assert "dsl.Collected" in caplog.text


def test_kfp_multi_user_needs_a_namespace(fake_cloud, package):
    url, cloud = fake_cloud
    cloud.multi_user = True
    with pytest.raises(ConfigError, match="multi-user: give --namespace"):
        submit.submit_from_args(_args("--kfp-host", url), package, {})
    assert not [r for r in cloud.requests if r[0] == "POST"]


def test_kfp_login_page_is_a_clear_error(fake_cloud, package):
    url, cloud = fake_cloud
    cloud.healthz_html = True
    with pytest.raises(DwlrecError, match="did not answer JSON .*--cookies"):
        submit.submit_from_args(_args("--kfp-host", url, "--namespace", "team-a"), package, {})
    assert not [r for r in cloud.requests if r[0] == "POST"]


def test_kfp_rejected_token_is_one_line_without_the_token(fake_cloud, package):
    url, cloud = fake_cloud
    cloud.require_token = "the-right-one"
    args = _args("--kfp-host", url, "--namespace", "team-a", "--token", "s3cret-wrong")
    with pytest.raises(DwlrecError) as error:
        submit.submit_from_args(args, package, {})
    message = str(error.value)
    assert "\n" not in message
    assert "HTTP 401" in message and "--token" in message
    assert "s3cret-wrong" not in message


def test_kfp_server_error_is_one_line(fake_cloud, package):
    url, cloud = fake_cloud
    cloud.fail_runs = True
    with pytest.raises(DwlrecError) as error:
        submit.submit_from_args(_args("--kfp-host", url), package, {})
    message = str(error.value)
    assert message.startswith(f"Kubeflow submission to {url} failed: HTTP 500")
    assert "database is down" in message and "\n" not in message


def test_kfp_platform_spec_document_is_sent(fake_cloud, package, tmp_path):
    """kfp-kubernetes settings (node selectors, tolerations) live in a second YAML document."""
    url, cloud = fake_cloud
    platform = {
        "platforms": {
            "kubernetes": {
                "deploymentSpec": {
                    "executors": {"exec-train": {"nodeSelector": {"labels": {"pool": "gpu"}}}}
                }
            }
        }
    }
    two_docs = tmp_path / "with-platform.yaml"
    two_docs.write_text(
        open(package).read() + "\n---\n" + json.dumps(platform)  # JSON is YAML
    )
    submit.submit_from_args(_args("--kfp-host", url), str(two_docs), {})
    (run,) = _posts(cloud, "/apis/v2beta1/runs")
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == PIPELINE_NAME
    assert run["pipeline_spec"]["platform_spec"] == platform


def test_kfp_enable_caching_override(fake_cloud, package):
    url, cloud = fake_cloud
    submit.submit_kfp(package, host=url, enable_caching=False)
    (run,) = _posts(cloud, "/apis/v2beta1/runs")
    tasks = run["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks and all(not t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())


def test_vertex_job_gets_labels_and_a_timestamped_name(fake_vertex, package):
    url, cloud = fake_vertex
    args = _args(
        *vertex_flags(url),
    )
    summary = submit.submit_from_args(args, package, {"variants": ["none", "inverse", "dynamic"]})
    (job,) = _posts(cloud, "/pipelineJobs")
    assert TIMESTAMPED.fullmatch(job["displayName"])
    assert job["labels"]["tool"] == "dwlrec"
    assert job["labels"]["variants"] == "none-inverse-dynamic"
    assert job["serviceAccount"] == f"runner@{PROJECT}.iam.gserviceaccount.com"
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://dwl-bucket/runs"
    assert summary["backend"] == "vertex"
    assert summary["display_name"] == job["displayName"]
    assert summary["job"].endswith("/pipelineJobs/job-7")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give exactly one of --vertex or --kfp-host"),
        (["--vertex", "--kfp-host", "http://x"], "exactly one of"),
        (["--vertex", "--region", REGION], "submit --vertex needs --project --pipeline-root"),
        (
            ["--vertex", "--project", PROJECT, "--region", REGION, "--pipeline-root", "/tmp/r"],
            "--pipeline-root '/tmp/r': Vertex AI needs a gs:// URI",
        ),
        (
            ["--kfp-host", "http://x", "--project", PROJECT, "--region", REGION],
            "submit --kfp-host: --project --region only apply with --vertex",
        ),
        (
            [
                "--vertex",
                "--project",
                PROJECT,
                "--region",
                REGION,
                "--pipeline-root",
                "gs://b",
                "--token",
                "t",
                "--namespace",
                "n",
            ],
            "submit --vertex: --namespace --token only apply with --kfp-host",
        ),
        (["--kfp-host", "localhost:8080"], "--kfp-host 'localhost:8080': expected an http://"),
    ],
)
def test_flag_combinations_are_one_line_config_errors(argv, message):
    with pytest.raises(ConfigError) as error:
        submit.target_of(_args(*argv))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_target_of():
    assert submit.target_of(_args("--kfp-host", "https://kf.example.com/pipeline")) == "kubeflow"
    vertex = _args("--vertex", "--project", "p", "--region", "r", "--pipeline-root", "gs://b/x")
    assert submit.target_of(vertex) == "vertex"


def test_submit_from_args_checks_flags_and_package_before_any_request(fake_cloud, tmp_path):
    url, cloud = fake_cloud
    with pytest.raises(ConfigError, match="exactly one of"):
        submit.submit_from_args(_args(), str(tmp_path / "p.yaml"), {})
    with pytest.raises(ConfigError, match="no such file"):
        submit.submit_from_args(_args("--kfp-host", url), str(tmp_path / "p.yaml"), {})
    assert cloud.requests == []


def test_token_is_not_a_visible_default(monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "env-secret")
    parser = argparse.ArgumentParser()
    submit.add_submit_arguments(parser)
    assert "env-secret" not in parser.format_help()
    assert parser.parse_args([]).token is None  # read at submission, not at parse time


def test_names_labels_and_versions():
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert submit.default_display_name(now) == f"{PIPELINE_NAME}-20260304-050607"
    assert TIMESTAMPED.fullmatch(submit.default_display_name())
    assert submit.run_labels({}) == {"tool": "dwlrec", "variants": "none-fixed-dynamic"}
    named = [{"name": f"Dyn.B{i}", "scheme": "dynamic", "beta": i / 20} for i in range(20)]
    labels = submit.run_labels({"variants": ["inverse", *named]})
    assert re.fullmatch(r"[a-z0-9_-]{0,63}", labels["variants"])
    assert labels["variants"].startswith("inverse-dyn-b0-dyn-b1-")
    assert submit.parse_version("2.14.0") == (2, 14, 0)
    assert submit.parse_version("v2.5.0-rc.1") == (2, 5, 0)
    assert submit.parse_version("2.15") == (2, 15, 0)
    assert submit.parse_version("unknown") is None
    assert submit.parse_version(None) is None


@pytest.mark.parametrize(
    "image", ["dwlrec:0.2.0", "reg.example/team/dwlrec:latest", "reg/dwlrec:1"]
)
def test_submit_refuses_images_a_cluster_cannot_pin_before_any_request(
    fake_cloud, monkeypatch, capsys, image
):
    url, cloud = fake_cloud
    monkeypatch.setenv("DWLREC_IMAGE", image)
    code = pipeline_cli(["submit", "--kfp-host", url, "--experiment", "e", "--no-gpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"image {image!r}" in err[0] and "--image" in err[0]
    assert not _posts(cloud, "/apis/v2beta1/runs")
