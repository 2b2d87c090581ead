"""Submit a compiled pipeline to Vertex AI Pipelines or to a Kubeflow Pipelines server.

``add_submit_arguments`` adds the submission flags to a parser, ``target_of`` checks them (call it
before compiling, to compile for that target) and ``submit_from_args`` submits one run: through
``pipelines.submit_kfp`` (Kubeflow) or ``pipelines.submit_vertex`` (Vertex AI); the run's name,
description and labels come from ``pipelines.submit_run``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from components.errors import ConfigError
from pipelines.pipeline import PIPELINE_NAME
from pipelines.submit_kfp import (
    KFP_SA_TOKEN_ENV,
    KFP_SA_TOKEN_PATH,
    KFP_VERSION_REASON,
    MIN_KFP_BACKEND,
    TOKEN_ENV,
    in_cluster_credentials,
    parse_version,
    submit_kfp,
)
from pipelines.submit_run import (
    TOOL_LABEL,
    default_display_name,
    run_description,
    run_labels,
    variants_of,
)
from pipelines.submit_vertex import submit_vertex, vertex_credentials

__all__ = [
    "KFP_SA_TOKEN_ENV",
    "KFP_SA_TOKEN_PATH",
    "TOOL_LABEL",
    "add_submit_arguments",
    "default_display_name",
    "in_cluster_credentials",
    "parse_version",
    "run_description",
    "run_labels",
    "submit_from_args",
    "submit_kfp",
    "submit_vertex",
    "target_of",
    "variants_of",
    "vertex_credentials",
]

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


def check_spec_images(package_path: str) -> None:
    """ConfigError unless every image the spec runs (executors, custom-job worker pools) names a
    registry and a fixed tag: a cluster pulls them, and caches and retries key on the tag."""
    import json

    from pipelines.distributed import check_cluster_image
    from pipelines.spec_check import load_spec

    spec = load_spec(package_path)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    images |= set(re.findall(r'"image_uri": "([^"]+)"', json.dumps(spec)))
    for image in sorted(images):
        check_cluster_image(f"{package_path}: image", image)


def submit_from_args(args: argparse.Namespace, package_path: str, params: dict) -> dict:
    """Submit ``package_path`` (compiled for ``target_of(args)``) with ``params``; the summary."""
    target = target_of(args)
    if not Path(package_path).is_file():
        raise ConfigError(f"--package {package_path}: no such file")
    check_spec_images(package_path)
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
