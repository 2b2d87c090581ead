"""Inputs from anywhere: ``localize`` makes a local path, a ``gs://bucket/prefix`` URI or an
``http(s)://`` URL a local path (remote data is downloaded once into a cache dir).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from components.errors import InputError
from components.io import atomic_dir, sha256_file

DEFAULT_CACHE = Path(os.environ.get("DWLREC_CACHE", Path.home() / ".cache" / "dwlrec"))


def is_remote(uri: str) -> bool:
    return uri.startswith(("gs://", "http://", "https://"))


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
