"""A ``gs://`` ingest output (the Dataproc Serverless ingest, issue 16): ``spark_main.py`` writes
the output on local disk and uploads it here; the pipeline's next task downloads it into its
Dataset artifact.

What may be written under a prefix follows the local rule (``components.io.check_output``): an
empty prefix, or a previous ingest output — its marker object (``.dwlrec-output.json``) is the
ingest step's and every object lies under an entry that marker lists. Anything else (a user's
data) is refused before any work and never deleted. The upload first writes an in-progress
marker (``writing``: the old and the new entries), replaces the old objects, and writes the
complete marker (the local output's, listing its entries) last: an interrupted upload leaves a
prefix a retry may replace and a reader refuses.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from components.errors import InputError, OutputError
from components.io import MARKER_VERSION, OUTPUT_MARKER


def split_uri(uri: str, option: str = "--output") -> tuple[str, str]:
    """``gs://bucket/prefix`` → (bucket, prefix without a trailing /); the bucket's root and
    '.'/'..' components are refused."""
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix.rstrip("/")
    parts = prefix.split("/")
    if not uri.startswith("gs://") or not bucket or not prefix or {"", ".", ".."} & set(parts):
        raise OutputError(f"{option} {uri}: expected gs://BUCKET/PREFIX (not a bucket's root)")
    return bucket, prefix


def _bucket(uri: str, option: str = "--output"):
    from components.download.gcs import _gcs_client

    name, prefix = split_uri(uri, option)
    return _gcs_client().bucket(name), prefix


def _objects(bucket, prefix: str) -> dict[str, Any]:
    """{name relative to the prefix: blob} of every object under ``prefix/``."""
    return {blob.name[len(prefix) + 1 :]: blob for blob in bucket.list_blobs(prefix=prefix + "/")}


def _marker(objects: dict[str, Any]) -> dict | None:
    blob = objects.get(OUTPUT_MARKER)
    if blob is None:
        return None
    try:
        marker = json.loads(blob.download_as_bytes())
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("step"), str) else None


def _top(name: str) -> str:
    return name.split("/", 1)[0]


def check_prefix(uri: str) -> list[str]:
    """The objects (relative names) of a previous ingest output at ``uri`` that a new one
    replaces ([] when empty); OutputError when it holds anything else."""
    bucket, prefix = _bucket(uri)
    objects = _objects(bucket, prefix)
    if not objects:
        return []
    marker = _marker(objects)
    shown = ", ".join(sorted(objects)[:5]) + (", …" if len(objects) > 5 else "")
    if marker is None or marker["step"] != "ingest":
        what = f"the {marker['step']} step's output" if marker else f"no {OUTPUT_MARKER}"
        raise OutputError(
            f"--output {uri}: holds {len(objects)} object(s) ({shown}) and is not a previous "
            f"ingest output ({what}); refusing to write there: choose another prefix"
        )
    ours = set(marker.get("files") or []) | set(marker.get("writing") or []) | {OUTPUT_MARKER}
    extra = sorted({_top(name) for name in objects} - ours)
    if extra:
        raise OutputError(
            f"--output {uri}: a previous ingest output, but it also holds objects it did not "
            f"write ({', '.join(extra[:5])}); refusing to write there: choose another prefix"
        )
    return sorted(objects)


def upload_output(local_dir: str | Path, uri: str, *, log=print) -> int:
    """Upload the complete ingest output ``local_dir`` to ``uri`` (replacing a previous ingest
    output there, nothing else); the number of files uploaded."""
    local_dir = Path(local_dir)
    marker_file = local_dir / OUTPUT_MARKER
    if not marker_file.is_file():
        raise OutputError(f"{local_dir}: not an ingest output (no {OUTPUT_MARKER})")
    old = check_prefix(uri)  # again, right before writing: what is there now
    bucket, prefix = _bucket(uri)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p != marker_file)
    new = {p.relative_to(local_dir).as_posix() for p in files}
    writing = sorted({_top(n) for n in new} | {_top(n) for n in old if n != OUTPUT_MARKER})
    in_progress = {"dwlrec_output": MARKER_VERSION, "step": "ingest", "writing": writing}
    bucket.blob(f"{prefix}/{OUTPUT_MARKER}").upload_from_string(
        json.dumps(in_progress), content_type="application/json"
    )
    for name in old:
        if name != OUTPUT_MARKER and name not in new:
            bucket.blob(f"{prefix}/{name}").delete()  # the previous ingest output's
    for path in files:
        bucket.blob(f"{prefix}/{path.relative_to(local_dir).as_posix()}").upload_from_filename(
            str(path)
        )
    bucket.blob(f"{prefix}/{OUTPUT_MARKER}").upload_from_filename(
        str(marker_file), content_type="application/json"
    )  # complete: last
    log(f"uploaded {len(files) + 1} files to {uri}")
    return len(files) + 1


def download_output(uri: str, dest: str | Path) -> dict[str, Any]:
    """Download the complete ingest output at ``uri`` into ``dest`` (through a local staging
    directory: ``dest`` may be a gcsfuse path) after verifying it; its manifest."""
    from components.ingest.spark_task import verified_output

    bucket, prefix = _bucket(uri, "the Dataproc ingest output")
    objects = _objects(bucket, prefix)
    marker = _marker(objects)
    if marker is None or marker["step"] != "ingest" or "files" not in marker:
        raise InputError(
            f"{uri}: no complete ingest output there ({len(objects)} object(s); its "
            f"{OUTPUT_MARKER} {'is missing' if marker is None else 'says it is incomplete'})"
        )
    with tempfile.TemporaryDirectory(prefix="dwlrec-gcs-ingest-") as tmp:
        local = Path(tmp) / "ingest"
        for name, blob in objects.items():
            parts = name.split("/")
            if {"", ".", ".."} & set(parts) or "\\" in name:
                raise InputError(f"{uri}/{name}: unsafe object name; refusing to download it")
            path = local.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(path))
        manifest = verified_output(local, uri)
        shutil.copytree(local, dest, dirs_exist_ok=True)
    return manifest
