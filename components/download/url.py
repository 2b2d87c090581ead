"""``http(s)://`` downloads into the cache: complete (Content-Length), matching ``--sha256``, not
an HTML error page or a truncated archive under a binary name, and reused while the sidecar holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from components.download.cache import (
    HTTP_TIMEOUT,
    cache_key,
    cached_problem,
    clean_stale_parts,
    failure_reason,
    make_cache_dir,
    make_readable,
    remove_if_empty,
    sidecar_path,
    write_sidecar,
)
from components.errors import ConfigError, InputError

log = logging.getLogger("dwlrec.download")

# magic bytes of the binary formats the sources read, by file-name suffix
_MAGIC = {
    ".gz": (b"\x1f\x8b", "gzip"),
    ".tgz": (b"\x1f\x8b", "gzip"),
    ".bz2": (b"BZh", "bzip2"),
    ".xz": (b"\xfd7zXZ\x00", "xz"),
    ".zst": (b"\x28\xb5\x2f\xfd", "zstd"),
    ".parquet": (b"PAR1", "Parquet"),
}
_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")


def _url_file_name(url: str) -> str:
    name = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name if name not in ("", ".", "..") else "download"


def _content_problem(name: str, content_type: str, head: bytes, path: str) -> str | None:
    """Why the downloaded body is not the file ``name`` says (None: it looks right)."""
    lower = name.lower()
    if lower.endswith((".html", ".htm")):
        return None
    looks_html = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_START)
    binary = lower.endswith((".zip", *_MAGIC))
    if looks_html or (binary and content_type == "text/html"):
        return (
            f"the server sent an HTML page (Content-Type {content_type}), not {name} "
            f"(an error or login page?)"
        )
    if lower.endswith(".zip"):
        if zipfile.is_zipfile(path):
            return None
        if head.startswith(b"PK"):
            return "not a complete zip archive (no end-of-archive record: truncated)"
        return f"not a zip archive (starts with {head[:16]!r}: an error page?)"
    for suffix, (magic, kind) in _MAGIC.items():
        if lower.endswith(suffix):
            if not head.startswith(magic):
                return f"not a {kind} file (starts with {head[:16]!r}: an error page?)"
            if kind == "Parquet":
                with open(path, "rb") as handle:
                    handle.seek(0, os.SEEK_END)
                    size = handle.tell()
                    handle.seek(max(0, size - 4))
                    if size < 12 or handle.read(4) != magic:
                        return "not a complete Parquet file (no footer: truncated?)"
            return None
    return None


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or response.headers.get("Transfer-Encoding"):
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def localize_url(url: str, cache_dir: Path, expected: str | None) -> Path:
    name = _url_file_name(url)
    entry = cache_dir / "http" / cache_key(url)
    target = entry / name
    if target.is_file():
        problem = cached_problem(target, expected)
        if problem is None:
            log.info("%s: using the cached copy %s", url, target)
            return target
        log.warning("%s: the cached copy %s; downloading it again", url, problem)
        for stale in (target, sidecar_path(target)):  # never reused: drop it now
            with contextlib.suppress(OSError):
                stale.unlink()
    make_cache_dir(entry, cache_dir)
    clean_stale_parts(entry)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=entry, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise ConfigError(
            f"{cache_dir}: cannot write to the download cache ({failure_reason(exc)}); "
            f"pass --cache-dir or set DWLREC_CACHE to a writable directory"
        ) from exc
    done = False
    try:
        log.info("%s: downloading", url)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response,
            ):
                length = _content_length(response)
                content_type = response.headers.get_content_type()
                digest, size, head = hashlib.sha256(), 0, b""
                while chunk := response.read(1 << 20):
                    if len(head) < 512:
                        head += chunk[: 512 - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
            TimeoutError,
            ValueError,
        ) as exc:
            raise InputError(
                f"{url}: download failed ({failure_reason(exc)}); nothing was cached"
            ) from exc
        if length is not None and size != length:
            raise InputError(
                f"{url}: download incomplete, {size} of {length} bytes (Content-Length): the "
                f"connection closed early; nothing was cached, try again"
            )
        got = digest.hexdigest()
        if expected and got != expected:
            raise InputError(
                f"{url}: sha256 mismatch (expected {expected}, downloaded {got}); "
                f"nothing was cached"
            )
        problem = _content_problem(name, content_type, head, tmp_name)
        if problem:
            raise InputError(f"{url}: {problem}; nothing was cached")
        make_readable(tmp_name)
        try:
            os.replace(tmp_name, target)
            write_sidecar(target, url, size, got)
        except OSError as exc:
            with contextlib.suppress(OSError):
                target.unlink()
            raise InputError(
                f"{url}: cannot store the download in the cache {cache_dir} ({failure_reason(exc)})"
            ) from exc
        done = True
        log.info("%s: downloaded %d bytes (sha256 %s)", url, size, got)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if not done:  # leave no empty entry behind
            remove_if_empty(entry)
            remove_if_empty(entry.parent)
    return target
