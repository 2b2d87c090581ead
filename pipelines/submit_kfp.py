"""Submit a compiled pipeline to a Kubeflow Pipelines server (kfp 2.17's ``kfp.Client``).

The bearer token is ``--token``, else ``$KF_PIPELINES_TOKEN``, else the projected service-account
token of a pod in the cluster (``KFP_SA_TOKEN_PATH``, read by kfp's
``ServiceAccountTokenVolumeCredentials`` before every request); ``--cookies`` carries a
Dex/oauth2-proxy session; the run lands in the experiment's namespace (``--namespace``: your
profile on multi-user Kubeflow). The backend must be ≥ 2.14.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from components.errors import ConfigError, DwlrecError
from pipelines.submit_run import default_display_name, one_line, run_description

log = logging.getLogger("dwlrec.pipeline")

TOKEN_ENV = "KF_PIPELINES_TOKEN"
# KFP's multi-user projected token (kfp.client.KF_PIPELINES_SA_TOKEN_PATH); kfp's own env override.
KFP_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
KFP_SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
MIN_KFP_BACKEND = (2, 14)
KFP_VERSION_REASON = (
    "fan-in of artifacts via dsl.Collected needs KFP >= 2.14 (Kubeflow Manifests v1.10 ships 2.5.0)"
)


def parse_version(tag: str | None) -> tuple[int, int, int] | None:
    """``"2.14.0"``/``"v2.5.0-rc.1"`` → (2, 14, 0); None when there is no version in ``tag``."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", (tag or "").strip())
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def in_cluster_credentials():
    """kfp's ServiceAccountTokenVolumeCredentials when the projected token file exists."""
    path = os.environ.get(KFP_SA_TOKEN_ENV) or KFP_SA_TOKEN_PATH
    if not Path(path).is_file():
        return None
    from kfp.client import ServiceAccountTokenVolumeCredentials

    log.info("Kubeflow: authenticating with the service-account token in %s", path)
    return ServiceAccountTokenVolumeCredentials(path)


def submit_kfp(
    package_path: str | Path,
    host: str,
    params: dict | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
    existing_token: str | None = None,
    cookies: str | None = None,
    pipeline_root: str | None = None,
    service_account: str | None = None,
    description: str | None = None,
    check_version: bool = True,
) -> dict:
    """Create a run on the Kubeflow Pipelines server at ``host``; return its id and URL.

    Without ``existing_token`` the in-cluster service-account token is used when present. The
    run is created directly (kfp's ``run_pipeline`` has no description field) from the package's
    spec, in experiment ``experiment`` (default ``Default``) of ``namespace``.
    """
    import kfp
    import kfp_server_api

    params = params or {}
    run_name = run_name or default_display_name()
    spec = _load_package(package_path, enable_caching)
    try:
        client = kfp.Client(
            host=host,
            namespace=namespace or "kubeflow",
            existing_token=existing_token,
            cookies=cookies,
            credentials=None if existing_token else in_cluster_credentials(),
        )
        multi_user = _check_backend(client, host) if check_version else None
        namespace = namespace or client.get_user_namespace() or None
        if multi_user and not namespace:
            raise ConfigError(
                f"Kubeflow Pipelines at {host} is multi-user: give --namespace (your profile)"
            )
        experiment_id = client.create_experiment(
            experiment or "Default", namespace=namespace
        ).experiment_id
        run = kfp_server_api.V2beta1Run(
            experiment_id=experiment_id,
            display_name=run_name,
            description=description or run_description(params),
            pipeline_spec=spec,
            runtime_config=kfp_server_api.V2beta1RuntimeConfig(
                parameters=params, pipeline_root=pipeline_root
            ),
            service_account=service_account,
        )
        result = client.runs.run_service_create_run(run=run)
    except DwlrecError:
        raise
    except Exception as exc:  # kfp_server_api.ApiException, urllib3/connection errors
        raise DwlrecError(f"Kubeflow submission to {host} failed: {one_line(exc)}") from exc
    return {
        "backend": "kubeflow",
        "run_id": result.run_id,
        "display_name": run_name,
        "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}",
    }


def _check_backend(client, host: str) -> bool | None:
    """Refuse a backend older than MIN_KFP_BACKEND; return healthz's ``multi_user``."""
    response = client.healthzs.healthz_service_get_healthz(_preload_content=False)
    try:
        info = json.loads(response.data)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise DwlrecError(
            f"{host}/apis/v2beta1/healthz did not answer JSON (a login page?): check --kfp-host, "
            "give --token or --cookies 'authservice_session=…'"
        )
    tag = info.get("tag_name")
    version = parse_version(tag)
    if version is None:
        log.warning(
            "Kubeflow Pipelines at %s reports no version (tag_name %r), not checked: %s",
            host,
            tag,
            KFP_VERSION_REASON,
        )
    elif version[:2] < MIN_KFP_BACKEND:
        raise ConfigError(
            f"Kubeflow Pipelines at {host} is {tag}: {KFP_VERSION_REASON}; upgrade the backend "
            "or pass --skip-version-check"
        )
    multi_user = info.get("multi_user")
    return multi_user if isinstance(multi_user, bool) else None


def _load_package(package_path: str | Path, enable_caching: bool | None) -> dict:
    """The run's ``pipeline_spec`` field from a compiled YAML, as kfp.Client builds it."""
    import yaml
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    try:
        docs = [doc for doc in yaml.safe_load_all(Path(package_path).read_text()) if doc]
        pipeline = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        platform = pipeline_spec_pb2.PlatformSpec()
        for doc in docs[1:]:
            platform.MergeFrom(json_format.ParseDict(doc, pipeline_spec_pb2.PlatformSpec()))
    except (OSError, IndexError, yaml.YAMLError, json_format.ParseError) as exc:
        raise ConfigError(
            f"{package_path}: not a compiled pipeline YAML ({one_line(exc)})"
        ) from exc
    if enable_caching is not None:  # what kfp.Client does for enable_caching
        for task in pipeline.root.dag.tasks.values():
            task.caching_options.enable_cache = enable_caching
    spec = json_format.MessageToDict(pipeline)
    if platform == pipeline_spec_pb2.PlatformSpec():
        return spec
    return {"pipeline_spec": spec, "platform_spec": json_format.MessageToDict(platform)}
