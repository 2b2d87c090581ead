"""The pipeline's Spark ingest (``dwlrec compile --ingest-on spark``, SPEC §10, issue 16): what the
light pipeline tasks around a Spark job do.

- ``ingest_arguments``: the pipeline's ``source`` / ``input_uri`` / ``ingest_options`` as the
  ingest CLI's arguments (each option a flag of ``python -m components.ingest``), which the job
  file ``spark_main.py`` takes on the cluster.
- kubeflow, ``ingest_on_operator``: runs them as a Spark Operator ``SparkApplication``
  (``spark_app``) writing ``--output`` onto the shared volume, in a directory stable for the run
  (``<mount>/<run id>/ingest``), then copies the verified output into the Dataset artifact. A
  retried task finds its COMPLETED application and its output and does not ingest again; it
  deletes nothing (the ingest itself replaces only a previous ingest output).
- vertex, ``dataproc_arguments``: the Dataproc Serverless batch's arguments, ``--output`` a
  ``gs://`` prefix under the pipeline root (``spark_main`` stages locally and uploads,
  ``gcs_output``); ``gcs_output.download_output`` then fills the Dataset artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from components.errors import ConfigError, OutputError
from components.io import OUTPUT_MARKER, check_output, read_output_marker, sha256_file
from components.schema import MANIFEST_FILE

OUTPUT_DIR = "ingest"  # <root>/<run id>/ingest: the Spark job's --output
# set by the pipeline (its parameters and the task), never by ingest_options
RESERVED = {"source", "input", "input_uri", "output", "output_dir", "overwrite", "verbose", "help"}


def ingest_arguments(source: str, input_uri: str, options: dict, output: str) -> list[str]:
    """``--source S [--input URI] --flag=value … --output OUTPUT``: every option a flag of the
    ingest CLI (ConfigError naming the options that have none)."""
    from components.ingest.cli import build_parser
    from components.kfp_support import restore_ints

    actions = {
        action.dest: (flag, action)
        for action in build_parser()._actions
        for flag in action.option_strings[:1]
    }
    args = ["--source", source] + (["--input", input_uri] if input_uri else [])
    reserved = sorted(set(options) & RESERVED)
    if reserved:
        raise ConfigError(f"ingest_options {reserved}: set by the pipeline, not an option")
    unknown = sorted(key for key in options if key not in actions)
    if unknown:
        raise ConfigError(
            f"ingest_options {unknown}: no `python -m components.ingest` flag of that name, so "
            "the Spark ingest cannot pass them (compile without --ingest-on spark to use them)"
        )
    for key, value in restore_ints(options).items():
        flag, action = actions[key]
        if value is None:
            continue  # the CLI's default
        if action.nargs == 0:  # store_true
            args += [flag] if value else []
        elif isinstance(value, dict | list):
            args.append(f"{flag}={json.dumps(value)}")  # e.g. yelp's domain_map as JSON text
        else:
            args.append(f"{flag}={value}")
    return [*args, "--output", output]


def run_dir_name(run_id: str) -> str:
    """``run_id`` as one path component (a directory per run, never outside the root)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.")
    if not name:
        raise ConfigError(f"run id {run_id!r}: cannot name a directory after it")
    return name


def verified_output(directory: str | Path, where: str | None = None) -> dict[str, Any]:
    """The manifest of the complete ingest output in ``directory``: its marker says complete
    (the ingest step's, listing what it wrote), nothing else is there, ``manifest.json`` is
    present and the Parquet files have the sha256 it records. OutputError otherwise."""
    directory = Path(directory)
    where = where or str(directory)
    marker = read_output_marker(directory)
    if marker is None or marker["step"] != "ingest" or "files" not in marker:
        found = "another step's" if marker and marker["step"] != "ingest" else "no complete"
        raise OutputError(f"{where}: {found} ingest output ({OUTPUT_MARKER} says so)")
    entries = {p.name for p in directory.iterdir()} - {OUTPUT_MARKER}
    extra = sorted(entries - set(marker["files"]))
    if extra:
        raise OutputError(f"{where}: holds entries the ingest did not write: {extra}")
    if not (directory / MANIFEST_FILE).is_file():
        raise OutputError(f"{where}: the ingest output has no {MANIFEST_FILE}")
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    for name, recorded in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != recorded.get("sha256"):
            raise OutputError(f"{where}: {name} is missing or differs from {MANIFEST_FILE}")
    return manifest


def ingest_on_operator(
    spark_app: dict,
    source: str,
    input_uri: str,
    options: dict,
    run_id: str,
    dataset_dir: str,
    *,
    config_file: str | None = None,
    log=print,
) -> dict[str, Any]:
    """Ingest in a SparkApplication (``spark_app``: SparkAppSpec fields, a shared volume among
    them) writing ``<mount>/<run id>/ingest``; copy its verified output into ``dataset_dir``;
    the manifest. ``config_file``: a kubeconfig (default ``$KUBECONFIG``, else in-cluster)."""
    from components.ingest.spark_app import SparkAppSpec, app_name, run_spark_application

    spec = SparkAppSpec(**spark_app)
    spec.validate()
    if not spec.pvc:
        raise ConfigError("the Spark ingest task needs the shared volume (--spark-pvc)")
    work = Path(spec.mount_path) / run_dir_name(run_id) / OUTPUT_DIR
    try:  # before the cluster is asked: only a previous ingest output may be replaced there
        check_output(work, "ingest", option="the Spark ingest output")
    except OutputError as exc:
        reason = str(exc).split("; refusing")[0]
        raise OutputError(f"{reason}; the task replaces nothing else: move it away") from exc
    arguments = ingest_arguments(source, input_uri, options, str(work))
    config_file = config_file or os.environ.get("KUBECONFIG") or None
    run_spark_application(spec, app_name(run_id), arguments, config_file=config_file, log=log)
    manifest = verified_output(work, f"the SparkApplication's output {work}")
    shutil.copytree(work, dataset_dir, dirs_exist_ok=True)
    log(f"ingest: copied {work} into the Dataset artifact")
    return manifest


def dataproc_arguments(
    source: str, input_uri: str, options: dict, pipeline_root: str, run_id: str
) -> tuple[list[str], str]:
    """The Dataproc batch's arguments and its ``gs://`` output prefix under the pipeline root."""
    root = pipeline_root.rstrip("/")
    if not root.startswith("gs://") or root == "gs:":
        raise ConfigError(
            f"pipeline root {pipeline_root!r}: the Dataproc Serverless ingest writes its output "
            "under a gs:// pipeline root (as Vertex AI's are)"
        )
    output = f"{root}/{run_dir_name(run_id)}/{OUTPUT_DIR}"
    return ingest_arguments(source, input_uri, options, output), output
