"""``gs://bucket/object`` and ``gs://bucket/prefix`` downloads into the cache: sizes checked, every
object name confined to the cache directory, staged and swapped into place atomically, retried for
at most ``$DWLREC_GCS_TIMEOUT`` seconds (default 30).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from components.download.cache import (
    HTTP_TIMEOUT,
    cache_key,
    failure_reason,
    make_cache_dir,
    make_readable,
    remove_if_empty,
)
from components.errors import ConfigError, DwlrecError, InputError
from components.io import sha256_file

log = logging.getLogger("dwlrec.download")

GCS_TIMEOUT_ENV = "DWLREC_GCS_TIMEOUT"
DEFAULT_GCS_TIMEOUT = 30.0


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
            uri, failure_reason(exc), endpoint, deadline, GCS_TIMEOUT_ENV,
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


def localize_gcs(uri: str, cache_dir: Path, expected: str | None) -> Path:
    """Download one object, or every object under a prefix, into the cache (atomically)."""
    bucket_name, name = _split_gcs(uri)
    root = cache_dir / "gcs" / cache_key(uri)
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
        make_cache_dir(root.parent, cache_dir)
        staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
        make_readable(staging, directory=True)
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
                make_readable(dest)
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
            remove_if_empty(root.parent)
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
            f"cannot reach GCS at {endpoint} within {deadline:g}s ({failure_reason(last)}); "
            f"{GCS_TIMEOUT_ENV} sets the limit"
        )
    return f"cannot read from GCS at {endpoint} ({failure_reason(exc)})"


def _swap_into_place(staging: Path, root: Path) -> None:
    """Replace ``root`` (a previous download of the same URI) by ``staging`` in two renames."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.old-"))
        os.replace(root, old / "entry")
    os.replace(staging, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
