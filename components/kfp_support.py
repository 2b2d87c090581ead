"""What the pipeline's KFP components share (SPEC §9): image names and artifact hand-off.

Image names are fixed when the pipeline is compiled (a Kubeflow/Vertex task needs a literal
image), so they come from the environment or from ``dwlrec compile --image/--cuda-image``:

- ``DWLREC_IMAGE``: the CPU image (ingest, stats, report; train/evaluate when no GPU is asked
  for), default ``dwlrec:latest`` as built by ``docker/build.sh cpu``.
- ``DWLREC_CUDA_IMAGE``: the CUDA image for train and evaluate, default ``dwlrec-cuda:latest``.

Push them to a registry the cluster can pull from (e.g. ``REGION-docker.pkg.dev/P/REPO/dwlrec``)
and compile with those names. This module is imported inside component bodies, i.e. inside the
image, so it must stay light (no kfp, no torch).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_CPU_IMAGE = "dwlrec:latest"
DEFAULT_CUDA_IMAGE = "dwlrec-cuda:latest"


def cpu_image() -> str:
    return os.environ.get("DWLREC_IMAGE") or DEFAULT_CPU_IMAGE


def cuda_image() -> str:
    return os.environ.get("DWLREC_CUDA_IMAGE") or DEFAULT_CUDA_IMAGE


def write_artifact_dir(artifact_path: str, produce: Callable[[Path], dict]) -> dict:
    """Run ``produce(local_dir)`` and copy the directory it wrote to ``artifact_path``.

    Steps write their output with an atomic directory rename; on Vertex an artifact path lives on
    a gcsfuse mount where renaming a directory is not supported, so the step writes to local
    disk first and the finished tree is copied into the artifact.
    """
    with tempfile.TemporaryDirectory(prefix="dwlrec-artifact-") as tmp:
        local_dir = Path(tmp) / "out"
        summary = produce(local_dir)
        shutil.copytree(local_dir, artifact_path, dirs_exist_ok=True)
    return summary


def copy_file(src: str | Path, artifact_path: str) -> None:
    """Copy one file to a file-typed artifact (HTML, Markdown), creating its parent folder."""
    Path(artifact_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, artifact_path)


def restore_ints(value):
    """Undo the float-ification of a dict/list parameter (KFP passes them as protobuf Structs,
    where every number is a double): 3.0 → 3 so options like ``num_users`` stay integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: restore_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [restore_ints(item) for item in value]
    return value


def ui_metric_key(variant: str, metric: str) -> str:
    """The key of ``metric`` ("ndcg@10") of ``variant`` in a Metrics artifact: "dynamic_ndcg_at_10".

    Keys carry the variant so that Vertex Experiments, which merges a run's Metrics artifacts by
    key, keeps every variant. "@" is spelled "_at_" and any character outside ``[A-Za-z0-9_-]``
    becomes "_": the KFP run-metrics name pattern is ``^[a-zA-Z]([-_a-zA-Z0-9]{0,62}[a-zA-Z0-9])?$``
    ("/" is not in it).
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{variant}_{metric.replace('@', '_at_')}")
