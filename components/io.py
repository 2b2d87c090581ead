"""Paths and atomic writes shared by every step.

Inputs may be local paths, ``gs://bucket/prefix`` URIs or ``http(s)://`` URLs: ``localize`` makes
any of them a local path (remote data is downloaded once into a cache dir). Outputs are written
under a temporary name and renamed into place only on success, so a failed step leaves nothing
half-written and a re-run replaces the previous output in one rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from components.errors import InputError

DEFAULT_CACHE = Path(os.environ.get("DWLREC_CACHE", Path.home() / ".cache" / "dwlrec"))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _make_readable(path: str | Path, directory: bool) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; outputs get the usual umask modes."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def is_remote(uri: str) -> bool:
    return uri.startswith(("gs://", "http://", "https://"))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def localize(
    uri: str | Path, cache_dir: str | Path | None = None, sha256: str | None = None
) -> Path:
    """Return a local path holding ``uri``'s content (a file or a directory).

    ``gs://bucket/prefix`` downloads the object or every object under the prefix; ``https://``
    downloads one file. Downloads go to ``cache_dir`` (default ``$DWLREC_CACHE`` or
    ``~/.cache/dwlrec``) and are reused; ``sha256`` (for URLs) is verified.
    """
    uri = str(uri)
    if uri.startswith("gs://"):
        return _localize_gcs(uri, Path(cache_dir or DEFAULT_CACHE))
    if uri.startswith(("http://", "https://")):
        return _localize_url(uri, Path(cache_dir or DEFAULT_CACHE), sha256)
    path = Path(uri).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if sha256 and path.is_file() and sha256_file(path) != sha256.lower():
        raise InputError(f"{path}: sha256 mismatch (expected {sha256})")
    return path


def _cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def _localize_url(url: str, cache_dir: Path, sha256: str | None) -> Path:
    name = Path(url.split("?", 1)[0].rstrip("/")).name or "download"
    target = cache_dir / "http" / _cache_key(url) / name
    if target.exists() and (not sha256 or sha256_file(target) == sha256.lower()):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        if sha256:
            got = sha256_file(tmp_name)
            if got != sha256.lower():
                raise InputError(f"{url}: sha256 mismatch (expected {sha256}, downloaded {got})")
        os.replace(tmp_name, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise InputError(f"{url}: download failed ({exc})") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return target


def _gcs_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(credentials=AnonymousCredentials(), project="dwlrec-test")
    return storage.Client()


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not bucket:
        raise InputError(f"{uri}: not a gs://bucket/path URI")
    return bucket, prefix


def _localize_gcs(uri: str, cache_dir: Path) -> Path:
    """Download one object, or every object under a prefix, into the cache (atomically)."""
    bucket_name, name = _split_gcs(uri)
    root = cache_dir / "gcs" / _cache_key(uri)
    try:
        client = _gcs_client()
        single = (
            client.bucket(bucket_name).get_blob(name) if name and not name.endswith("/") else None
        )
        if single is not None:
            blobs, prefix = [single], name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        else:
            prefix = name.rstrip("/") + "/" if name else ""
            blobs = [
                b
                for b in client.list_blobs(bucket_name, prefix=prefix or None)
                if not b.name.endswith("/")
            ]
        if not blobs:
            raise InputError(f"{uri}: no such object or prefix")
        with atomic_dir(root) as staging:
            for blob in blobs:
                dest = staging / blob.name[len(prefix) :]
                dest.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(dest))
    except InputError:
        raise
    except Exception as exc:  # google.api_core, auth and connection errors
        raise InputError(f"{uri}: cannot read from GCS ({type(exc).__name__}: {exc})") from exc
    return root / single.name[len(prefix) :] if single is not None else root


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
