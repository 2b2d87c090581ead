"""Ingest as a Spark Operator ``SparkApplication`` (SPEC §10, issue 16): the Kubeflow side.

A pipeline task runs in one pod; a large ingest runs as a Spark job instead. The launcher
builds a ``sparkoperator.k8s.io/v1beta2`` ``SparkApplication`` (type Python, cluster mode, the
project image, ``spark_main.py`` in the image as the main file, the ingest arguments), creates
it with the Kubernetes ``CustomObjectsApi`` and polls ``.status.applicationState.state`` until
``COMPLETED`` (returns its status) or ``FAILED`` / ``SUBMISSION_FAILED`` (raises
``SparkApplicationFailed`` with the operator's ``errorMessage``), or the timeout.

A retried launcher finds the application it created (same name): it waits for one still
running, returns one already completed, and replaces a failed one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.errors import ConfigError, DwlrecError

GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
# where `pip install` puts the entry point in the project image (docker/Dockerfile: /opt/venv)
MAIN_FILE = "local:///opt/venv/lib/python3.11/site-packages/components/ingest/spark_main.py"
DONE, FAILED = "COMPLETED", ("FAILED", "SUBMISSION_FAILED")
VOLUME_NAME = "dwlrec-work"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JVM_SIZE = re.compile(r"[1-9][0-9]*[kmgt]", re.IGNORECASE)  # the JVM's sizes: 512m, 4g
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # DNS-1035, as the operator requires


class SparkApplicationFailed(DwlrecError):
    """The SparkApplication ended FAILED / SUBMISSION_FAILED, or did not end in time."""


@dataclass(frozen=True)
class SparkAppSpec:
    """What the launcher asks the cluster for (fixed when the pipeline is compiled)."""

    image: str  # the Spark image (docker/Dockerfile.spark: the project + Java, pyspark, entrypoint)
    service_account: str = "spark"  # the driver's: may create and delete executor pods
    namespace: str = ""  # "" = the kubeconfig context's, or the launcher pod's own
    spark_version: str = "4.0.0"
    main_file: str = MAIN_FILE
    driver_cores: int = 1
    driver_memory: str = "2g"
    executor_cores: int = 2
    executor_memory: str = "4g"
    executor_instances: int = 2
    spark_conf: dict[str, str] = field(default_factory=dict)  # e.g. spark.sql.shuffle.partitions
    pvc: str = ""  # optional claim mounted in the driver at mount_path (where --output lies)
    mount_path: str = ""
    image_pull_policy: str = "IfNotPresent"
    timeout_s: float = 24 * 3600
    poll_s: float = 10

    def validate(self) -> None:
        if not self.image:
            raise ConfigError("a SparkApplication needs an image (the project image)")
        for flag, value in (
            ("driver cores", self.driver_cores),
            ("executor cores", self.executor_cores),
            ("executor instances", self.executor_instances),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SparkApplication {flag} {value!r}: expected an integer >= 1")
        for flag, text in (("driver", self.driver_memory), ("executor", self.executor_memory)):
            if not JVM_SIZE.fullmatch(str(text)):
                raise ConfigError(
                    f"SparkApplication {flag} memory {text!r}: expected a JVM size such as "
                    "'512m' or '4g'"
                )
        if bool(self.pvc) != bool(self.mount_path) or (
            self.mount_path and not self.mount_path.startswith("/")
        ):
            raise ConfigError("a SparkApplication volume needs a claim and an absolute mount path")
        if not self.poll_s > 0 or self.timeout_s <= self.poll_s:
            raise ConfigError(f"SparkApplication timeout {self.timeout_s}s must exceed poll")


def app_name(run_id: str) -> str:
    """A DNS-1035 name for the ingest of run ``run_id``: stable, so a retry finds its job."""
    text = re.sub(r"[^a-z0-9-]+", "-", f"dwl-ingest-{run_id}".lower()).strip("-")
    text = text[:50].rstrip("-")  # the operator appends suffixes (-driver, -ui-svc)
    if not _NAME.fullmatch(text):
        raise ConfigError(f"SparkApplication name {text!r} from run id {run_id!r}")
    return text


def build_spark_application(
    spec: SparkAppSpec, name: str, arguments: list[str], namespace: str
) -> dict[str, Any]:
    """The ``SparkApplication`` manifest running ``spark_main.py arguments`` (the ingest CLI's
    arguments) on the driver, with the processing spread over the executors."""
    spec.validate()
    labels = {"app.kubernetes.io/name": "dwlrec", "app.kubernetes.io/component": "ingest"}
    driver: dict[str, Any] = {
        "cores": spec.driver_cores,
        "memory": spec.driver_memory,
        "serviceAccount": spec.service_account,
        "labels": labels,
    }
    executor: dict[str, Any] = {
        "cores": spec.executor_cores,
        "memory": spec.executor_memory,
        "instances": spec.executor_instances,
        "labels": labels,
    }
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "Python",
            "pythonVersion": "3",
            "mode": "cluster",
            "image": spec.image,
            "imagePullPolicy": spec.image_pull_policy,
            "mainApplicationFile": spec.main_file,
            "arguments": [str(a) for a in arguments],
            "sparkVersion": spec.spark_version,
            # a failure is the launcher's to report (and the pipeline's to retry), not rerun here
            "restartPolicy": {"type": "Never"},
            "sparkConf": {str(k): str(v) for k, v in spec.spark_conf.items()},
            "driver": driver,
            "executor": executor,
        },
    }
    if spec.pvc:
        body["spec"]["volumes"] = [
            {"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": spec.pvc}}
        ]
        driver["volumeMounts"] = [{"name": VOLUME_NAME, "mountPath": spec.mount_path}]
    return body


def custom_objects_api(config_file: str | None = None) -> tuple[Any, str]:
    """A ``CustomObjectsApi`` from ``config_file`` (a kubeconfig; passed explicitly: the client
    reads $KUBECONFIG when imported), else the pod's in-cluster service account; and the
    namespace that config names ("default" when none)."""
    from kubernetes import client, config

    if config_file:
        api_client = config.new_client_from_config(config_file=config_file)
        _, active = config.list_kube_config_contexts(config_file=config_file)
        namespace = (active or {}).get("context", {}).get("namespace", "")
    else:
        config.load_incluster_config()
        api_client = client.ApiClient()
        namespace = (
            IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.is_file() else ""
        )
    return client.CustomObjectsApi(api_client), namespace or "default"


def run_spark_application(
    spec: SparkAppSpec,
    name: str,
    arguments: list[str],
    *,
    config_file: str | None = None,
    log=print,
) -> dict[str, Any]:
    """Create (or find) the SparkApplication ``name`` and wait for it; its final ``status``."""
    from kubernetes.client.exceptions import ApiException

    spec.validate()  # before any request
    api, default_namespace = custom_objects_api(config_file)
    namespace = spec.namespace or default_namespace
    body = build_spark_application(spec, name, arguments, namespace)
    where = dict(group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL)
    try:
        api.create_namespaced_custom_object(body=body, **where)
        log(f"ingest: created SparkApplication {namespace}/{name} ({spec.image})")
    except ApiException as exc:
        if exc.status != 409:
            raise SparkApplicationFailed(
                f"SparkApplication {namespace}/{name}: create refused ({exc.status} {exc.reason})"
            ) from exc
        existing = api.get_namespaced_custom_object(name=name, **where)
        state = _state(existing)[0]
        if state not in FAILED:  # a retried launcher: its application is running or done
            log(f"ingest: SparkApplication {namespace}/{name} exists ({state or 'new'})")
        else:  # the last attempt failed: a fresh one under the same name
            api.delete_namespaced_custom_object(name=name, **where)
            api.create_namespaced_custom_object(body=body, **where)
            log(f"ingest: replaced the {state} SparkApplication {namespace}/{name}")
    return wait(api, name, namespace, spec, log=log)


def wait(api, name: str, namespace: str, spec: SparkAppSpec, *, log=print) -> dict[str, Any]:
    """Poll until ``COMPLETED`` (the status); SparkApplicationFailed on a failure or timeout."""
    deadline = time.monotonic() + spec.timeout_s
    where = dict(group=GROUP, version=VERSION, namespace=namespace, plural=PLURAL)
    seen = None
    while True:
        app = api.get_namespaced_custom_object(name=name, **where)
        state, message = _state(app)
        if state != seen:
            log(f"ingest: SparkApplication {name}: {state or 'pending'}")
            seen = state
        if state == DONE:
            return app.get("status", {})
        if state in FAILED:
            raise SparkApplicationFailed(
                f"SparkApplication {namespace}/{name} {state}: {message or 'no errorMessage'}"
                f" (see `kubectl logs {name}-driver -n {namespace}`)"
            )
        if time.monotonic() + spec.poll_s > deadline:
            raise SparkApplicationFailed(
                f"SparkApplication {namespace}/{name} not completed within {spec.timeout_s} s "
                f"(last state {state or 'pending'})"
            )
        time.sleep(spec.poll_s)


def _state(app: dict[str, Any]) -> tuple[str, str]:
    state = (app.get("status") or {}).get("applicationState") or {}
    return str(state.get("state") or ""), str(state.get("errorMessage") or "")
