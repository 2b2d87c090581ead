"""Small fake Kubernetes APIs on 127.0.0.1 for the launchers' tests.

``FakeKubernetes`` serves what ``kubeflow.trainer.TrainerClient`` calls: the trainer's version
ConfigMap, the ``torch-distributed`` ClusterTrainingRuntime, TrainJob create/get and the pod
list. Its "kubelet" plays the torch runtime: for each created TrainJob it starts ``numNodes``
local processes of the job's trainer command with the ``PET_*`` rendezvous the runtime sets,
then marks the job Complete (every node exited 0) or Failed.

``FakeSparkOperator`` serves ``SparkApplication`` create/get/delete and plays scripted states;
``SparkOperatorRunner`` plays the operator for real: it runs each created application's main
file as a local process (the driver) and marks it COMPLETED or FAILED.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

GROUP_PATH = "/apis/trainer.kubeflow.org/v1alpha1"
RUNTIME = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "ClusterTrainingRuntime",
    "metadata": {
        "name": "torch-distributed",
        "labels": {"trainer.kubeflow.org/framework": "torch"},
    },
    "spec": {
        "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
        "template": {
            "spec": {
                "replicatedJobs": [
                    {
                        "name": "node",
                        "template": {
                            "metadata": {
                                "labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
                            },
                            "spec": {
                                "template": {
                                    "spec": {
                                        "containers": [
                                            {"name": "node", "image": "pytorch/pytorch:2.7.1"}
                                        ]
                                    }
                                }
                            },
                        },
                    }
                ]
            }
        },
    },
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet request handler that answers JSON (``send``)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))


class FakeApiServer:
    """An HTTP server on 127.0.0.1 and a kubeconfig that points a Kubernetes client at it (a
    client must be given the file: kubernetes.config reads $KUBECONFIG at import time).
    Subclasses give ``_handler()`` (a JsonHandler class); ``with`` serves in a thread."""

    def __init__(self, tmp: Path, namespace: str = "team-a"):
        self.namespace = namespace
        self.threads: list[threading.Thread] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        host = f"http://127.0.0.1:{self.server.server_port}"
        context = {"cluster": "fake", "user": "fake", "namespace": namespace}
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": host}}],
                    "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
                    "contexts": [{"name": "fake", "context": context}],
                    "current-context": "fake",
                }
            )
        )

    def _handler(self) -> type[JsonHandler]:
        raise NotImplementedError

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        for thread in self.threads:
            thread.join(timeout=300)


class FakeKubernetes(FakeApiServer):
    """``with FakeKubernetes(tmp) as api:`` — ``api.kubeconfig`` points a client at it;
    ``api.trainjobs`` holds what was created, ``api.node_logs`` each node's output."""

    def __init__(self, tmp: Path, namespace: str = "team-a", env: dict | None = None):
        self.trainjobs: dict[str, dict] = {}
        self.node_logs: dict[str, list[str]] = {}
        self.env = env or dict(os.environ)
        super().__init__(tmp, namespace)

    # ---- the torch runtime's part ----

    def _run_nodes(self, name: str) -> None:
        job = self.trainjobs[name]
        trainer = job["spec"]["trainer"]
        nodes = int(trainer.get("numNodes") or 1)
        command = [sys.executable if c == "python" else c for c in trainer["command"]]
        port = free_port()
        procs = []
        for rank in range(nodes):
            env = {
                **self.env,
                "PET_NNODES": str(nodes),
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            procs.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        codes = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            self.node_logs.setdefault(name, []).append(out)
            codes.append(proc.returncode)
        kind = "Complete" if all(c == 0 for c in codes) else "Failed"
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {"type": kind, "status": "True", "reason": "Nodes", "message": str(codes)}
        job["status"] = {"conditions": [{**condition, "lastTransitionTime": now}]}

    # ---- HTTP ----

    def _handler(self):
        api = self

        class Handler(JsonHandler):
            def _missing(self) -> None:
                self.send(404, {"kind": "Status", "status": "Failure", "code": 404})

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                if path == "/api/v1/namespaces/kubeflow-system/configmaps/kubeflow-trainer-public":
                    return self.send(200, {"data": {"kubeflow_trainer_version": "2.1.0"}})
                if path == f"{GROUP_PATH}/clustertrainingruntimes/torch-distributed":
                    return self.send(200, RUNTIME)
                if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
                    return self.send(200, {"kind": "PodList", "apiVersion": "v1", "items": []})
                match = re.fullmatch(rf"{GROUP_PATH}/namespaces/[^/]+/trainjobs/([^/]+)", path)
                if match and match.group(1) in api.trainjobs:
                    return self.send(200, api.trainjobs[match.group(1)])
                return self._missing()

            def do_POST(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                match = re.fullmatch(rf"{GROUP_PATH}/namespaces/([^/]+)/trainjobs", path)
                if not match:
                    return self._missing()
                body = self.read_json()
                body["metadata"]["namespace"] = match.group(1)
                body["metadata"]["creationTimestamp"] = datetime.now(timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                name = body["metadata"]["name"]
                if name in api.trainjobs:
                    return self.send(
                        409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"}
                    )
                api.trainjobs[name] = body
                thread = threading.Thread(target=api._run_nodes, args=(name,), daemon=True)
                api.threads.append(thread)
                thread.start()
                return self.send(201, body)

        return Handler


SPARK_PATH = re.compile(
    r"/apis/sparkoperator\.k8s\.io/v1beta2/namespaces/([^/]+)/sparkapplications(?:/([^/]+))?"
)


class FakeSparkOperator(FakeApiServer):
    """``with FakeSparkOperator(tmp, states) as api:`` — ``api.kubeconfig`` points a client at
    it; ``api.apps`` holds what was created; each GET of an application reports the next of
    ``states`` (``(state, errorMessage)``; the last one repeats). Only namespace ``team-a``
    has the SparkApplication resource."""

    def __init__(self, tmp: Path, states: list[tuple[str, str]]):
        self.states = states
        self.apps: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.gets = 0
        super().__init__(tmp, "team-a")

    def created(self, name: str) -> None:
        """A new application ``name`` (the operator's part; scripted states: nothing)."""

    def observed(self, app: dict) -> None:
        """Before a GET answers: the next scripted state."""
        state, message = self.states[min(self.gets, len(self.states) - 1)]
        self.gets += 1
        if state:
            app["status"] = {"applicationState": {"state": state, "errorMessage": message}}

    def _handler(self):
        api = self

        class Handler(JsonHandler):
            def _route(self) -> tuple[str, str] | None:
                path = self.path.split("?")[0]
                api.requests.append((self.command, path))
                match = SPARK_PATH.fullmatch(path)
                if not match or match.group(1) != "team-a":
                    self.send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return None
                return match.group(1), match.group(2) or ""

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                if self._route() is None:
                    return
                body = self.read_json()
                name = body["metadata"]["name"]
                if name in api.apps:
                    return self.send(409, {"kind": "Status", "code": 409, "reason": "Exists"})
                api.apps[name] = body
                api.created(name)
                return self.send(201, body)

            def do_GET(self) -> None:  # noqa: N802
                if (route := self._route()) is None:
                    return
                app = api.apps.get(route[1])
                if app is None:
                    return self.send(404, {"kind": "Status", "code": 404})
                api.observed(app)
                return self.send(200, app)

            def do_DELETE(self) -> None:  # noqa: N802
                if (route := self._route()) is None:
                    return
                api.apps.pop(route[1], None)
                return self.send(200, {"kind": "Status", "status": "Success"})

        return Handler


class SparkOperatorRunner(FakeSparkOperator):
    """The operator and a one-process "cluster": each created SparkApplication's driver runs as
    ``python <main file> <arguments> <extra>`` here (a main file ending in ``main_suffix`` is
    ``main`` — the image's copy is the repository's), with the driver's volume mounts checked:
    an ``--output`` outside them fails the application, as it would on a cluster.
    ``api.runs`` counts the drivers started, ``api.logs`` holds their output."""

    def __init__(self, tmp: Path, main: Path, main_suffix: str, extra: list[str]):
        self.main, self.main_suffix, self.extra = main, main_suffix, extra
        self.runs = 0
        self.logs: dict[str, str] = {}
        super().__init__(tmp, [("", "")])

    def observed(self, app: dict) -> None:
        pass  # the driver thread sets the state

    def created(self, name: str) -> None:
        self.apps[name]["status"] = {"applicationState": {"state": "SUBMITTED"}}
        thread = threading.Thread(target=self._drive, args=(name,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _drive(self, name: str) -> None:
        app = self.apps[name]
        spec = app["spec"]
        self.runs += 1
        main = spec["mainApplicationFile"]
        path = str(self.main) if main.endswith(self.main_suffix) else main.removeprefix("local://")
        args = spec["arguments"]
        output = args[args.index("--output") + 1]
        mounts = [m["mountPath"] for m in spec["driver"].get("volumeMounts", [])]
        state, message = "FAILED", "driver container failed with ExitCode: 2, Reason: Error"
        if any(Path(output).is_relative_to(m) for m in mounts):
            app["status"] = {"applicationState": {"state": "RUNNING"}}
            proc = subprocess.run(
                [sys.executable, path, *args, *self.extra],
                capture_output=True,
                text=True,
                timeout=300,
            )
            self.logs[name] = proc.stdout + proc.stderr
            if proc.returncode == 0:
                state, message = "COMPLETED", ""
            else:
                message = message.replace("2", str(proc.returncode), 1)
        else:
            self.logs[name] = f"--output {output} is not on a volume of the driver ({mounts})"
        app["status"] = {"applicationState": {"state": state, "errorMessage": message}}
