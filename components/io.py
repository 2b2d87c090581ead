"""Atomic writes shared by every step (inputs are fetched by ``components.download``).

Outputs are written under a temporary name and renamed into place only on success, so a failed
step leaves nothing half-written and a re-run replaces the previous output in one rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _make_readable(path: str | Path, directory: bool) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; outputs get the usual umask modes."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces ``final`` (old content removed).

    On any exception the staging dir is deleted and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    _make_readable(staging, directory=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "wb") -> Iterator:
    """Open a temp file next to ``final``; rename onto it only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        _make_readable(tmp_name, directory=False)
        os.replace(tmp_name, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet_atomic(table, path: str | Path) -> None:
    """Deterministic Parquet (same table → same bytes) written atomically."""
    import pyarrow.parquet as pq

    with atomic_file(path, "wb") as handle:
        pq.write_table(table, handle, compression="zstd", write_statistics=True)


def library_versions() -> dict[str, str]:
    """Versions recorded in manifests, so an artifact says what produced it."""
    import importlib.metadata as md

    versions = {}
    for name in ("dwlrec", "pyarrow", "numpy", "kfp", "torch"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions
