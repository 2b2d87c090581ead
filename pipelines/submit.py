"""Submit a compiled pipeline to Vertex AI Pipelines or to a Kubeflow Pipelines server.

``add_submit_arguments`` adds the submission flags to a parser, ``target_of`` checks them (call it
before compiling, to compile for that target) and ``submit_from_args`` submits one run.

Kubeflow (kfp 2.17's ``kfp.Client``): the bearer token is ``--token``, else
``$KF_PIPELINES_TOKEN``, else the projected service-account token of a pod in the cluster
(``KFP_SA_TOKEN_PATH``, read by kfp's ``ServiceAccountTokenVolumeCredentials`` before every
request); ``--cookies`` carries a Dex/oauth2-proxy session; the run lands in the experiment's
namespace (``--namespace``: your profile on multi-user Kubeflow). The backend must be ≥ 2.14.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from components.errors import ConfigError, DwlrecError
from pipelines.pipeline import DEFAULT_VARIANTS, PIPELINE_NAME

log = logging.getLogger("dwlrec.pipeline")

TOKEN_ENV = "KF_PIPELINES_TOKEN"
# KFP's multi-user projected token (kfp.client.KF_PIPELINES_SA_TOKEN_PATH); kfp's own env override.
KFP_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
KFP_SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
MIN_KFP_BACKEND = (2, 14)
KFP_VERSION_REASON = (
    "fan-in of artifacts via dsl.Collected needs KFP >= 2.14 (Kubeflow Manifests v1.10 ships 2.5.0)"
)
TOOL_LABEL = "dwlrec"

# Flags that belong to one target only: (flag, args attribute).
_VERTEX_ONLY = (
    ("--project", "project"),
    ("--region", "region"),
    ("--api-endpoint", "api_endpoint"),
)
_KUBEFLOW_ONLY = (
    ("--namespace", "namespace"),
    ("--token", "token"),
    ("--cookies", "cookies"),
    ("--skip-version-check", "skip_version_check"),
)


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the target, authentication and run flags of ``dwlrec submit``."""
    target = parser.add_argument_group("target (exactly one)")
    target.add_argument("--vertex", action="store_true", help="Vertex AI Pipelines")
    target.add_argument(
        "--kfp-host",
        help="Kubeflow Pipelines API URL, e.g. http://localhost:8080 (port-forward) or "
        "https://kubeflow.example.com/pipeline",
    )
    vertex = parser.add_argument_group("Vertex AI")
    vertex.add_argument("--project", help="Google Cloud project (required)")
    vertex.add_argument("--region", help="region, e.g. us-central1 (required)")
    vertex.add_argument(
        "--api-endpoint", help="API endpoint override (private endpoints; http:// means REST)"
    )
    kubeflow = parser.add_argument_group("Kubeflow Pipelines")
    kubeflow.add_argument(
        "--namespace",
        help="profile namespace the run and experiment belong to (multi-user Kubeflow; "
        "in a pod, the pod's namespace)",
    )
    kubeflow.add_argument(
        "--token",
        help=f"bearer token for the API; when not given: ${TOKEN_ENV}, else the in-cluster "
        f"service-account token {KFP_SA_TOKEN_PATH} (never printed)",
    )
    kubeflow.add_argument(
        "--cookies",
        help="Cookie header for Dex/oauth2-proxy deployments, e.g. 'authservice_session=…' "
        "(copy it from a logged-in browser)",
    )
    kubeflow.add_argument(
        "--skip-version-check",
        action="store_true",
        help=f"submit even if the backend is older than "
        f"{'.'.join(map(str, MIN_KFP_BACKEND))} ({KFP_VERSION_REASON})",
    )
    run = parser.add_argument_group("run (both targets)")
    run.add_argument(
        "--pipeline-root",
        help="where the run's artifacts go: Vertex: gs://bucket/prefix (required); Kubeflow: "
        "e.g. minio://mlpipeline/v2/artifacts or gs://…; when not given: the server's",
    )
    run.add_argument(
        "--service-account",
        help="Vertex: service-account email the job runs as; Kubeflow: Kubernetes service "
        "account of the run's pods; when not given: the namespace's pipeline runner",
    )
    run.add_argument("--experiment", help="experiment to file the run under (created when missing)")
    run.add_argument(
        "--display-name",
        help=f"run/job display name; when not given: {PIPELINE_NAME}-<UTC YYYYmmdd-HHMMSS>",
    )


def target_of(args: argparse.Namespace) -> str:
    """``"vertex"`` or ``"kubeflow"``, after checking the flag combination (ConfigError)."""
    if bool(args.vertex) == bool(args.kfp_host):
        raise ConfigError("dwlrec submit: give exactly one of --vertex or --kfp-host URL")
    target = "vertex" if args.vertex else "kubeflow"
    foreign = _KUBEFLOW_ONLY if target == "vertex" else _VERTEX_ONLY
    given = [flag for flag, dest in foreign if getattr(args, dest, None)]
    if given:
        chosen, other = (
            ("--vertex", "--kfp-host") if target == "vertex" else ("--kfp-host", "--vertex")
        )
        raise ConfigError(f"submit {chosen}: {' '.join(given)} only apply with {other}")
    if target == "vertex":
        missing = [
            flag
            for flag, value in (
                ("--project", args.project),
                ("--region", args.region),
                ("--pipeline-root", args.pipeline_root),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"submit --vertex needs {' '.join(missing)}")
        if not args.pipeline_root.startswith("gs://"):
            raise ConfigError(
                f"--pipeline-root {args.pipeline_root!r}: Vertex AI needs a gs:// URI"
            )
    elif not re.match(r"https?://", args.kfp_host):
        raise ConfigError(f"--kfp-host {args.kfp_host!r}: expected an http:// or https:// URL")
    return target


def submit_from_args(args: argparse.Namespace, package_path: str, params: dict) -> dict:
    """Submit ``package_path`` (compiled for ``target_of(args)``) with ``params``; the summary."""
    target = target_of(args)
    if not Path(package_path).is_file():
        raise ConfigError(f"--package {package_path}: no such file")
    display_name = args.display_name or default_display_name()
    if target == "vertex":
        return submit_vertex(
            package_path,
            project=args.project,
            region=args.region,
            pipeline_root=args.pipeline_root,
            params=params,
            service_account=args.service_account,
            display_name=display_name,
            experiment=args.experiment,
            api_endpoint=args.api_endpoint,
        )
    return submit_kfp(
        package_path,
        host=args.kfp_host,
        params=params,
        experiment=args.experiment,
        run_name=display_name,
        namespace=args.namespace,
        existing_token=args.token or os.environ.get(TOKEN_ENV) or None,
        cookies=args.cookies,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        check_version=not args.skip_version_check,
    )


def default_display_name(now: datetime | None = None) -> str:
    """``sparse-domain-dwl-YYYYmmdd-HHMMSS`` in UTC."""
    return f"{PIPELINE_NAME}-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}"


def variants_of(params: dict | None) -> list[str]:
    """The weighting variants a run trains (the pipeline's default when not given)."""
    variants = (params or {}).get("variants")
    return [str(v) for v in variants] if isinstance(variants, list | tuple) else DEFAULT_VARIANTS


def run_description(params: dict | None) -> str:
    """The KFP run description: what the run compares."""
    return f"dwlrec {PIPELINE_NAME}; variants: {', '.join(variants_of(params))}"


def run_labels(params: dict | None) -> dict[str, str]:
    """Vertex labels (values [a-z0-9_-], at most 63 characters)."""
    variants = re.sub(r"[^a-z0-9_-]", "-", "-".join(variants_of(params)).lower())[:63]
    return {"tool": TOOL_LABEL, "variants": variants}


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


def vertex_credentials(credentials=None):
    """``credentials``, or Application Default Credentials; a clear error when there are none."""
    if credentials is not None:
        return credentials
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    except DefaultCredentialsError as exc:
        raise ConfigError(
            "submit --vertex: no Google Cloud credentials found; run `gcloud auth "
            "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file"
        ) from exc
    return credentials


def submit_vertex(
    package_path: str | Path,
    project: str,
    region: str,
    pipeline_root: str,
    params: dict | None = None,
    service_account: str | None = None,
    display_name: str | None = None,
    enable_caching: bool | None = None,
    labels: dict | None = None,
    experiment: str | None = None,
    api_endpoint: str | None = None,
    credentials=None,
) -> dict:
    """Create a Vertex AI PipelineJob from the compiled YAML; return its resource name and URL.

    ``api_endpoint`` overrides the regional endpoint (private service connect, tests); an
    ``http://`` endpoint is spoken to over REST. Labels ``tool`` and ``variants`` are added.
    """
    try:
        from google.cloud import aiplatform
    except ImportError as exc:
        raise ConfigError(
            "submit --vertex needs google-cloud-aiplatform: pip install 'dwlrec[vertex]'"
        ) from exc
    if not pipeline_root.startswith("gs://"):
        raise ConfigError(f"--pipeline-root {pipeline_root!r}: Vertex AI needs a gs:// URI")
    credentials = vertex_credentials(credentials)
    display_name = display_name or default_display_name()
    transport = "rest" if api_endpoint and api_endpoint.startswith("http") else None
    aiplatform.init(
        project=project,
        location=region,
        credentials=credentials,
        api_endpoint=api_endpoint,
        api_transport=transport,
    )
    job = aiplatform.PipelineJob(
        display_name=display_name,
        template_path=str(package_path),
        pipeline_root=pipeline_root,
        parameter_values=params or {},
        enable_caching=enable_caching,
        labels={**run_labels(params), **(labels or {})},
        project=project,
        location=region,
        credentials=credentials,
    )
    try:
        job.submit(service_account=service_account, experiment=experiment)
    except Exception as exc:  # google.api_core.exceptions.*, auth errors
        raise DwlrecError(f"Vertex AI submission failed: {_one_line(exc)}") from exc
    name = job.resource_name
    job_id = name.rsplit("/", 1)[-1]
    url = (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/"
        f"{job_id}?project={project}"
    )
    return {"backend": "vertex", "job": name, "display_name": display_name, "url": url}


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
        raise DwlrecError(f"Kubeflow submission to {host} failed: {_one_line(exc)}") from exc
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
            f"{package_path}: not a compiled pipeline YAML ({_one_line(exc)})"
        ) from exc
    if enable_caching is not None:  # what kfp.Client does for enable_caching
        for task in pipeline.root.dag.tasks.values():
            task.caching_options.enable_cache = enable_caching
    spec = json_format.MessageToDict(pipeline)
    if platform == pipeline_spec_pb2.PlatformSpec():
        return spec
    return {"pipeline_spec": spec, "platform_spec": json_format.MessageToDict(platform)}


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line; an HTTP error as status, reason and (short) body."""
    from kfp_server_api import ApiException

    if isinstance(exc, ApiException) and exc.status:
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        text = f"HTTP {exc.status} {exc.reason or ''}: {body or ''}"
        if exc.status in (401, 403):
            text += " (give --token, $KF_PIPELINES_TOKEN or --cookies; check --namespace)"
    elif isinstance(exc, ApiException):
        text = f"{type(exc).__name__}: {exc.reason}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."
