"""A small fake Kubernetes API on 127.0.0.1 for the TrainJob launcher's tests.

It serves what ``kubeflow.trainer.TrainerClient`` calls: the trainer's version ConfigMap, the
``torch-distributed`` ClusterTrainingRuntime, TrainJob create/get and the pod list. Its
"kubelet" plays the torch runtime: for each created TrainJob it starts ``numNodes`` local
processes of the job's trainer command with the ``PET_*`` rendezvous the runtime sets, then
marks the job Complete (every node exited 0) or Failed.
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
