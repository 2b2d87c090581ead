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
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from components.errors import ConfigError, DwlrecError, InputError
from components.io import sha256_file

log = logging.getLogger("dwlrec.download")

GCS_TIMEOUT_ENV = "DWLREC_GCS_TIMEOUT"
DEFAULT_GCS_TIMEOUT = 30.0
HTTP_TIMEOUT = 60.0  # seconds per socket operation (connect, each read)
SIDECAR_VERSION = 1
STALE_PART_SECONDS = 3600  # a .part file untouched this long belongs to a killed download

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
_SHA256 = re.compile(r"[0-9a-f]{64}")


def default_cache_dir() -> Path:
    """``$DWLREC_CACHE`` or ``~/.cache/dwlrec`` (read at call time)."""
    return Path(os.environ.get("DWLREC_CACHE") or Path.home() / ".cache" / "dwlrec")


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
        return _localize_gcs(uri, cache, expected)
    if uri.startswith(("http://", "https://")):
        return _localize_url(uri, cache, expected)
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


def _cache_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def _reason(exc: BaseException) -> str:
    """A short one-line reason (no temp-file paths: messages name the URL)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return _reason(reason) if isinstance(reason, BaseException) else str(reason)
    if isinstance(exc, http.client.IncompleteRead):
        return "IncompleteRead: the connection closed in the middle of the body"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _make_cache_dir(directory: Path, cache_dir: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{cache_dir}: cannot use as the download cache ({_reason(exc)}); "
            f"pass --cache-dir or set DWLREC_CACHE to a writable directory"
        ) from exc


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def _make_readable(path: str | Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private entries; cached downloads get the usual umask mode."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~umask)


# --------------------------------------------------------------------------- http(s)://


def _url_file_name(url: str) -> str:
    name = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name if name not in ("", ".", "..") else "download"


def _sidecar_path(target: Path) -> Path:
    return target.parent / f".{target.name}.dwlrec.json"


def _cached_problem(target: Path, expected: str | None) -> str | None:
    """Why the cached copy cannot be reused (None: it can)."""
    try:
        record = json.loads(_sidecar_path(target).read_text())
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


def _clean_stale_parts(directory: Path) -> None:
    """Remove ``.part`` files left by a killed download (an active one is touched constantly)."""
    with contextlib.suppress(OSError):
        now = time.time()
        for part in directory.glob(".*.part"):
            with contextlib.suppress(OSError):
                if now - part.stat().st_mtime > STALE_PART_SECONDS:
                    part.unlink()


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


def _localize_url(url: str, cache_dir: Path, expected: str | None) -> Path:
    name = _url_file_name(url)
    entry = cache_dir / "http" / _cache_key(url)
    target = entry / name
    if target.is_file():
        problem = _cached_problem(target, expected)
        if problem is None:
            log.info("%s: using the cached copy %s", url, target)
            return target
        log.warning("%s: the cached copy %s; downloading it again", url, problem)
        for stale in (target, _sidecar_path(target)):  # never reused: drop it now
            with contextlib.suppress(OSError):
                stale.unlink()
    _make_cache_dir(entry, cache_dir)
    _clean_stale_parts(entry)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=entry, prefix=f".{name}.", suffix=".part")
    except OSError as exc:
        raise ConfigError(
            f"{cache_dir}: cannot write to the download cache ({_reason(exc)}); "
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
                f"{url}: download failed ({_reason(exc)}); nothing was cached"
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
        _make_readable(tmp_name)
        try:
            os.replace(tmp_name, target)
            _write_sidecar(target, url, size, got)
        except OSError as exc:
            with contextlib.suppress(OSError):
                target.unlink()
            raise InputError(
                f"{url}: cannot store the download in the cache {cache_dir} ({_reason(exc)})"
            ) from exc
        done = True
        log.info("%s: downloaded %d bytes (sha256 %s)", url, size, got)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if not done:  # leave no empty entry behind
            _remove_if_empty(entry)
            _remove_if_empty(entry.parent)
    return target


def _write_sidecar(target: Path, url: str, size: int, sha256: str) -> None:
    sidecar = _sidecar_path(target)
    record = {"version": SIDECAR_VERSION, "url": url, "size": size, "sha256": sha256}
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f"{sidecar.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        _make_readable(tmp_name)
        os.replace(tmp_name, sidecar)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


# --------------------------------------------------------------------------- gs://


def gcs_timeout() -> float:
    """How long GCS calls keep retrying, in seconds (``$DWLREC_GCS_TIMEOUT``, default 30)."""
    value = os.environ.get(GCS_TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_GCS_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{GCS_TIMEOUT_ENV}={value!r}: expected a positive number of seconds")
    return seconds


def _gcs_endpoint() -> str:
    return os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"


def _gcs_client():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(credentials=AnonymousCredentials(), project="dwlrec-test")
    return storage.Client()


def _gcs_retry(uri: str, deadline: float):
    """google-cloud-storage's default retry policy, bounded by ``deadline``, logging each retry."""
    from google.api_core.retry import Retry, if_transient_error
    from google.cloud.storage.retry import DEFAULT_RETRY

    endpoint = _gcs_endpoint()

    def on_error(exc: Exception) -> None:
        log.warning(
            "%s: %s from %s; retrying for up to %gs in all (%s)",
            uri, _reason(exc), endpoint, deadline, GCS_TIMEOUT_ENV,
        )  # fmt: skip

    return Retry(
        # the library's own "is this transient" test
        predicate=getattr(DEFAULT_RETRY, "_predicate", None) or if_transient_error,
        initial=min(1.0, deadline / 4),
        maximum=min(10.0, deadline / 2),
        timeout=deadline,
        on_error=on_error,
    )


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not bucket:
        raise InputError(f"{uri}: not a gs://bucket/path URI")
    return bucket, prefix


def _confined_parts(bucket: str, object_name: str, relative: str) -> tuple[str, ...]:
    """The path components under the cache root for an object; refuse any that could escape."""
    parts = tuple(relative.split("/"))
    if (
        not relative
        or relative.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in relative
        or "\x00" in relative
    ):
        raise InputError(
            f"gs://{bucket}/{object_name}: unsafe object name (an empty, '.' or '..' path "
            f"component, a backslash or an absolute path); refusing to download it outside the "
            f"cache directory"
        )
    return parts


def _localize_gcs(uri: str, cache_dir: Path, expected: str | None) -> Path:
    """Download one object, or every object under a prefix, into the cache (atomically)."""
    bucket_name, name = _split_gcs(uri)
    root = cache_dir / "gcs" / _cache_key(uri)
    deadline = gcs_timeout()
    retry = _gcs_retry(uri, deadline)
    timeout = (min(deadline, 15.0), HTTP_TIMEOUT)  # (connect, read) per request
    endpoint = _gcs_endpoint()
    log.info(
        "%s: reading from %s (retrying up to %gs, %s)", uri, endpoint, deadline, GCS_TIMEOUT_ENV
    )
    try:
        client = _gcs_client()
        single = None
        if name and not name.endswith("/"):
            single = client.bucket(bucket_name).get_blob(name, retry=retry, timeout=timeout)
        if single is not None:
            blobs, prefix = [single], name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        else:
            prefix = name.rstrip("/") + "/" if name else ""
            blobs = [
                b
                for b in client.list_blobs(
                    bucket_name, prefix=prefix or None, retry=retry, timeout=timeout
                )
                if not b.name.endswith("/")
            ]
        if not blobs:
            raise InputError(f"{uri}: no such object or prefix")
        if expected and single is None:
            raise ConfigError(
                f"--sha256 applies to a single file, but {uri} is a prefix of {len(blobs)} "
                f"object(s): drop --sha256 or point --input at one object"
            )
        plan = [(b, _confined_parts(bucket_name, b.name, b.name[len(prefix) :])) for b in blobs]
        _make_cache_dir(root.parent, cache_dir)
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
        _make_readable(staging, directory=True)
        try:
            staged = staging.resolve()
            for blob, parts in plan:
                dest = staging.joinpath(*parts)
                if not dest.resolve().is_relative_to(staged):  # belt and braces
                    _confined_parts(bucket_name, blob.name, "..")
                dest.parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(dest), retry=retry, timeout=timeout)
                size = dest.stat().st_size
                if blob.size is not None and size != int(blob.size):
                    raise InputError(
                        f"gs://{bucket_name}/{blob.name}: download incomplete, {size} of "
                        f"{blob.size} bytes; nothing was cached, try again"
                    )
                _make_readable(dest)
            if expected:
                got = sha256_file(staging.joinpath(*plan[0][1]))
                if got != expected:
                    raise InputError(
                        f"{uri}: sha256 mismatch (expected {expected}, downloaded {got}); "
                        f"nothing was cached"
                    )
            _swap_into_place(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            _remove_if_empty(root.parent)
            raise
    except DwlrecError:
        raise
    except Exception as exc:  # google.api_core, auth and connection errors
        raise InputError(f"{uri}: {_gcs_reason(exc, endpoint, deadline)}") from exc
    return root.joinpath(*plan[0][1]) if single is not None else root


def _gcs_reason(exc: Exception, endpoint: str, deadline: float) -> str:
    from google.api_core import exceptions as api_exceptions

    if isinstance(exc, api_exceptions.RetryError):
        last = exc.cause if exc.cause is not None else exc
        return (
            f"cannot reach GCS at {endpoint} within {deadline:g}s ({_reason(last)}); "
            f"{GCS_TIMEOUT_ENV} sets the limit"
        )
    return f"cannot read from GCS at {endpoint} ({_reason(exc)})"


def _swap_into_place(staging: Path, root: Path) -> None:
    """Replace ``root`` (a previous download of the same URI) by ``staging`` in two renames."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
        os.replace(root, old / "entry")
    os.replace(staging, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
