"""The download cache shared by the http(s) and GCS readers: its location, entry names, file modes,
the integrity record (sidecar) of each cached URL download and the one-line reasons of failures.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
from pathlib import Path

from components.errors import ConfigError
from components.io import sha256_file

HTTP_TIMEOUT = 60.0  # seconds per socket operation (connect, each read)
SIDECAR_VERSION = 1
STALE_PART_SECONDS = 3600  # a .part file untouched this long belongs to a killed download


def default_cache_dir() -> Path:
    """``$DWLREC_CACHE`` or ``~/.cache/dwlrec`` (read at call time)."""
    return Path(os.environ.get("DWLREC_CACHE") or Path.home() / ".cache" / "dwlrec")


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def failure_reason(exc: BaseException) -> str:
    """A short one-line reason (no temp-file paths: messages name the URL)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        cause = exc.reason
        return failure_reason(cause) if isinstance(cause, BaseException) else str(cause)
    if isinstance(exc, http.client.IncompleteRead):
        return "IncompleteRead: the connection closed in the middle of the body"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def make_cache_dir(directory: Path, cache_dir: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{cache_dir}: cannot use as the download cache ({failure_reason(exc)}); "
            f"pass --cache-dir or set DWLREC_CACHE to a writable directory"
        ) from exc


def remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def make_readable(path: str | Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private entries; cached downloads get the usual umask mode."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def sidecar_path(target: Path) -> Path:
    return target.parent / f".{target.name}.dwlrec.json"


def cached_problem(target: Path, expected: str | None) -> str | None:
    """Why the cached copy cannot be reused (None: it can)."""
    try:
        record = json.loads(sidecar_path(target).read_text())
    except FileNotFoundError:
        return "has no integrity record (cached by an older dwlrec or an interrupted download)"
    except (OSError, ValueError):
        return "has an unreadable integrity record"
    if not (
        isinstance(record, dict)
        and isinstance(record.get("size"), int)
        and isinstance(record.get("sha256"), str)
    ):
        return "has an unreadable integrity record"
    size = target.stat().st_size
    if size != record["size"]:
        return f"is {size} bytes, {record['size']} were downloaded (truncated or modified)"
    if expected and record["sha256"] != expected:
        return f"has sha256 {record['sha256']}, --sha256 asks for {expected}"
    if sha256_file(target) != record["sha256"]:
        return "fails its sha256 check (modified since it was downloaded)"
    return None


def write_sidecar(target: Path, url: str, size: int, sha256: str) -> None:
    sidecar = sidecar_path(target)
    record = {"version": SIDECAR_VERSION, "url": url, "size": size, "sha256": sha256}
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f"{sidecar.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        make_readable(tmp_name)
        os.replace(tmp_name, sidecar)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def clean_stale_parts(directory: Path) -> None:
    """Remove ``.part`` files left by a killed download (an active one is touched constantly)."""
    with contextlib.suppress(OSError):
        now = time.time()
        for part in directory.glob(".*.part"):
            with contextlib.suppress(OSError):
                if now - part.stat().st_mtime > STALE_PART_SECONDS:
                    part.unlink()
