"""Inputs from anywhere: ``localize`` makes a local path, a ``gs://bucket/prefix`` URI or an
``http(s)://`` URL a local path (remote data is downloaded into a cache dir).

Integrity rules (SPEC §3): a download enters the cache only when it is complete — its length
matches ``Content-Length`` (GCS: the object's size), its sha256 matches ``--sha256`` when given,
and it is not an HTML error page or a truncated archive saved under a binary name. It is written to
a temporary file and renamed into place only then; a failed or short download leaves nothing in
the cache. Each cached URL download has a sidecar record (size, sha256) that is checked before the
copy is reused, so an entry poisoned by an older version is downloaded again. Every object name
from GCS is confined to the cache directory (``..`` components are refused). GCS calls retry for at
most ``$DWLREC_GCS_TIMEOUT`` seconds (default 30).

``cache`` holds the cache layout and the sidecar, ``url`` the http(s) reader, ``gcs`` the GCS one.
"""

from __future__ import annotations

import re
from pathlib import Path

from components.download.cache import default_cache_dir
from components.download.gcs import DEFAULT_GCS_TIMEOUT, GCS_TIMEOUT_ENV, gcs_timeout, localize_gcs
from components.download.url import localize_url
from components.errors import ConfigError, InputError
from components.io import sha256_file

__all__ = [
    "DEFAULT_GCS_TIMEOUT",
    "GCS_TIMEOUT_ENV",
    "default_cache_dir",
    "gcs_timeout",
    "is_remote",
    "localize",
]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_remote(uri: str) -> bool:
    return uri.startswith(("gs://", "http://", "https://"))


def localize(
    uri: str | Path, cache_dir: str | Path | None = None, sha256: str | None = None
) -> Path:
    """Return a local path holding ``uri``'s content (a file or a directory).

    ``gs://bucket/prefix`` downloads the object or every object under the prefix; ``https://``
    downloads one file. Downloads go to ``cache_dir`` (default ``$DWLREC_CACHE`` or
    ``~/.cache/dwlrec``); URL downloads are reused while their integrity record holds.
    ``sha256`` is verified for any single file (local, URL or GCS object) and refused for a
    directory or a GCS prefix, where it cannot apply.
    """
    uri = str(uri)
    expected = _normalise_sha256(sha256)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if uri.startswith("gs://"):
        return localize_gcs(uri, cache, expected)
    if uri.startswith(("http://", "https://")):
        return localize_url(uri, cache, expected)
    path = Path(uri).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if expected and path.is_dir():
        raise ConfigError(
            f"--sha256 applies to a single file, but {path} is a directory: "
            f"drop --sha256 or point --input at the file"
        )
    if expected:
        got = sha256_file(path)
        if got != expected:
            raise InputError(f"{path}: sha256 mismatch (expected {expected}, got {got})")
    return path


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None or str(sha256).strip() == "":
        return None
    value = str(sha256).strip().lower()
    if not _SHA256.fullmatch(value):
        raise ConfigError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    return value
