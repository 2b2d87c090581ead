"""`dwlrec submit` up to the HTTP layer: a fake Kubeflow Pipelines API server and a fake Vertex AI
REST endpoint (plus the GCS bucket lookup) on 127.0.0.1 record what the real clients send."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from pipelines.cli import main as pipeline_cli
from pipelines.pipeline import KUBEFLOW_ACCELERATOR, PIPELINE_NAME

PROJECT, PROJECT_NUMBER, REGION = "dwlrec-proj", "123456", "us-central1"


class FakeCloud(BaseHTTPRequestHandler):
    """Answers the calls kfp.Client and aiplatform.PipelineJob make; records every request."""

    requests: list = []
    fail_runs = False

    def _reply(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(("GET", self.path, None))
        path = urlparse(self.path).path
        if path == "/apis/v2beta1/healthz":
            return self._reply(200, {"commit_sha": "fake", "tag_name": "2.4.0"})
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
        self.requests.append(("POST", self.path, body))
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
def fake_cloud():
    FakeCloud.requests = []
    FakeCloud.fail_runs = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloud)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", FakeCloud
    server.shutdown()
    server.server_close()


def _posts(cloud, path_part: str) -> list[dict]:
    return [body for method, path, body in cloud.requests if method == "POST" and path_part in path]


def _images(pipeline_spec: dict) -> set[str]:
    return {e["container"]["image"] for e in pipeline_spec["deploymentSpec"]["executors"].values()}


@pytest.mark.filterwarnings("ignore:This client only works with Kubeflow Pipeline")
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
    # Kubeflow names the GPU by its Kubernetes resource unless told otherwise
    assert params["accelerator_type"] == KUBEFLOW_ACCELERATOR


@pytest.mark.filterwarnings("ignore:This client only works with Kubeflow Pipeline")
def test_submit_kfp_prints_run_id_and_url(fake_cloud, capsys):
    url, _ = fake_cloud
    assert pipeline_cli(["submit", "--kfp-host", url]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n") :])
    assert summary == {
        "backend": "kubeflow",
        "run_id": "run-42",
        "url": f"{url}/#/runs/details/run-42",
    }


@pytest.mark.filterwarnings("ignore:This client only works with Kubeflow Pipeline")
def test_submit_kfp_server_error_is_one_clear_line(fake_cloud, capsys):
    url, cloud = fake_cloud
    cloud.fail_runs = True
    assert pipeline_cli(["submit", "--kfp-host", url]) == 2
    err = capsys.readouterr().err
    assert f"error: Kubeflow submission to {url} failed" in err
    assert "database is down" in err


def test_submit_vertex_creates_a_pipeline_job(fake_cloud, monkeypatch, tmp_path, capsys):
    pytest.importorskip("google.cloud.aiplatform", reason="optional 'vertex' extra")
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform.utils import resource_manager_utils

    url, cloud = fake_cloud
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
            "--vertex",
            "--project",
            PROJECT,
            "--region",
            REGION,
            "--pipeline-root",
            "gs://dwl-bucket/runs",
            "--service-account",
            f"runner@{PROJECT}.iam.gserviceaccount.com",
            "--api-endpoint",
            url,
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
    assert job["displayName"] == PIPELINE_NAME
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
    code = pipeline_cli(
        [
            "submit",
            "--vertex",
            "--project",
            PROJECT,
            "--region",
            REGION,
            "--pipeline-root",
            "/tmp/root",
        ]
    )
    assert code == 2
    assert "--pipeline-root '/tmp/root': Vertex AI needs a gs:// URI" in capsys.readouterr().err
