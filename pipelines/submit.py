"""Submit the compiled pipeline to Vertex AI Pipelines or to a Kubeflow Pipelines server."""

from __future__ import annotations

import logging
from pathlib import Path

from components.errors import ConfigError, DwlrecError
from pipelines.pipeline import PIPELINE_NAME

log = logging.getLogger("dwlrec.pipeline")


def submit_vertex(
    package_path: str | Path,
    project: str,
    region: str,
    pipeline_root: str,
    params: dict | None = None,
    service_account: str | None = None,
    display_name: str = PIPELINE_NAME,
    enable_caching: bool | None = None,
    labels: dict | None = None,
    experiment: str | None = None,
    api_endpoint: str | None = None,
    credentials=None,
) -> dict:
    """Create a Vertex AI PipelineJob from the compiled YAML; return its resource name and URL.

    ``api_endpoint`` overrides the regional endpoint (private service connect, tests); an
    ``http://`` endpoint is spoken to over REST.
    """
    try:
        from google.cloud import aiplatform
    except ImportError as exc:
        raise ConfigError(
            "submit --vertex needs google-cloud-aiplatform: pip install 'dwlrec[vertex]'"
        ) from exc
    if not pipeline_root.startswith("gs://"):
        raise ConfigError(f"--pipeline-root {pipeline_root!r}: Vertex AI needs a gs:// URI")
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
        labels=labels,
        project=project,
        location=region,
        credentials=credentials,
    )
    try:
        job.submit(service_account=service_account, experiment=experiment)
    except Exception as exc:  # google.api_core.exceptions.*, auth errors
        raise DwlrecError(f"Vertex AI submission failed: {type(exc).__name__}: {exc}") from exc
    name = job.resource_name
    job_id = name.rsplit("/", 1)[-1]
    url = (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/"
        f"{job_id}?project={project}"
    )
    return {"backend": "vertex", "job": name, "url": url}


def submit_kfp(
    package_path: str | Path,
    host: str,
    params: dict | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
    existing_token: str | None = None,
) -> dict:
    """Create a run on the Kubeflow Pipelines server at ``host``; return its id and URL."""
    import kfp

    try:
        client = kfp.Client(
            host=host, namespace=namespace or "kubeflow", existing_token=existing_token
        )
        result = client.create_run_from_pipeline_package(
            str(package_path),
            arguments=params or {},
            run_name=run_name,
            experiment_name=experiment,
            namespace=namespace,
            enable_caching=enable_caching,
        )
    except Exception as exc:  # kfp_server_api.ApiException, urllib3/connection errors
        raise DwlrecError(
            f"Kubeflow submission to {host} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return {
        "backend": "kubeflow",
        "run_id": result.run_id,
        "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}",
    }
