"""Atomic writes shared by every step (inputs are fetched by ``components.download``).

Outputs are written under a temporary name and renamed into place only on success, so a failed
step leaves nothing half-written and a re-run replaces the previous output in one rename. What a
step's ``--output`` may replace is decided here, once (``check_output``): only a previous output
of the same step (``OUTPUT_MARKER`` says so), never an input, a URL, or other files unless the
user passes ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from components.errors import OutputError


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


# ---- step outputs: what --output may replace (README "Safety") ----

OUTPUT_MARKER = ".dwlrec-output.json"  # {"dwlrec_output": 1, "step": …, "files": [...]}
MARKER_VERSION = 1
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# errno of a write that fails because of the disk, not of the step: full, quota, read-only
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
# errno of a failure to create the output (permissions, a file where a directory must be)
CREATE_ERRNOS = DISK_ERRNOS | {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}


def _listing(names: list[str], limit: int = 5) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def read_output_marker(directory: str | Path) -> dict | None:
    """The marker a step wrote into its output directory, or None (absent or unreadable)."""
    try:
        marker = json.loads((Path(directory) / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("step"), str) else None


def write_output_marker(directory: str | Path, step: str, *, complete: bool = True) -> None:
    """Mark ``directory`` as ``step``'s output. ``complete``: record the entries it holds now
    (later extra entries are someone else's); otherwise the step is still writing in place."""
    directory = Path(directory)
    marker: dict = {"dwlrec_output": MARKER_VERSION, "step": step}
    if complete:
        marker["files"] = sorted(p.name for p in directory.iterdir() if p.name != OUTPUT_MARKER)
    write_json_atomic(directory / OUTPUT_MARKER, marker)


def _is_url(text: str) -> re.Match | None:
    return _URL.match(text)


def check_output(
    output: str | Path,
    step: str,
    *,
    inputs=(),
    overwrite: bool = False,
    in_place: bool = False,
    option: str = "--output",
) -> Path:
    """Refuse an output ``step`` must not write; return its absolute path.

    Refused always: a URL (``scheme://``), the current directory or one of its parents, a path
    under a regular file, and a path that is, contains or lies inside one of ``inputs``
    (None and URLs among them are skipped). Refused unless ``overwrite``: an existing entry that
    is not recognisably a previous output of ``step`` (its marker file says so and it holds
    nothing the step did not write) — a regular file, a non-empty directory of other files,
    another step's output. ``in_place``: the step writes into the directory itself (train
    --resume), so a regular file is refused even with ``overwrite``.
    """
    text = str(output)
    url = _is_url(text)
    if url:
        raise OutputError(
            f"{option} {text}: writing to {url.group(1)}:// is not supported; write to a local "
            f"directory and copy it there (e.g. gcloud storage cp -r DIR {text})"
        )
    path = Path(text).resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise OutputError(
            f"{option} {text}: is the current directory"
            + ("" if path == cwd else " or contains it")
            + f"; give a new subdirectory instead (e.g. {option} {step}-out)"
        )
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"{option} {text}: {ancestor} is a file, not a directory")
            break
    for given in inputs:
        if given is None or str(given) == "" or _is_url(str(given)):  # "": no input (KFP)
            continue
        source = Path(given).resolve()
        if source == path:
            relation = "is"
        elif path in source.parents:
            relation = "contains"
        elif source in path.parents:
            relation = "lies inside"
        else:
            continue
        raise OutputError(
            f"{option} {text}: {relation} the step's input {given}; a step never writes over "
            f"its inputs: choose another {option}"
        )
    if not (path.exists() or path.is_symlink()):
        return path
    how = f"pass --overwrite to replace it, or choose another {option}"
    if not path.is_dir():
        kind = "a file" if path.is_file() else "an entry that is not a directory"
        if in_place:
            raise OutputError(f"{option} {text}: is {kind}, not a directory; choose another path")
        if not overwrite:
            size = f" of {path.stat().st_size:,} bytes" if path.is_file() else ""
            raise OutputError(
                f"{option} {text}: is {kind}{size}, not a previous {step} output; {how}"
            )
        return path
    try:
        entries = [entry.name for entry in os.scandir(path)]
    except OSError as exc:
        raise OutputError(f"{option} {text}: cannot list it ({exc.strerror})") from exc
    if not entries or overwrite:
        return path
    marker = read_output_marker(path)
    if marker is None:
        raise OutputError(
            f"{option} {text}: holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
            f"({_listing(entries)}) and is not a previous {step} output (no {OUTPUT_MARKER}); "
            f"refusing to replace it: {how}"
        )
    if marker["step"] != step:
        raise OutputError(
            f"{option} {text}: is the output of the {marker['step']} step, not of {step}; "
            f"refusing to replace it: {how}"
        )
    written = marker.get("files")
    extra = [] if written is None else sorted(set(entries) - set(written) - {OUTPUT_MARKER})
    if extra:
        raise OutputError(
            f"{option} {text}: is a previous {step} output but also holds entries it did not "
            f"write ({_listing(extra)}); refusing to replace it: {how}"
        )
    return path


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def clean_stale_staging(final: str | Path) -> list[Path]:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` siblings of ``final`` that a killed run left
    (their process is gone; names without a process id are from older versions)."""
    final = Path(final)
    removed = []
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:tmp|old)-(?:(\d+)-)?")
    with contextlib.suppress(OSError):
        for entry in os.scandir(final.parent):
            match = pattern.match(entry.name)
            if not match or not entry.is_dir(follow_symlinks=False):
                continue
            if match.group(1) is not None and _pid_alive(int(match.group(1))):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _disk_error(option: str, output, exc: OSError, doing: str) -> OutputError:
    where = f" ({exc.filename})" if exc.filename else ""
    return OutputError(
        f"{option} {output}: cannot {doing}: {exc.strerror or exc}{where}; "
        "nothing was written and what was there is unchanged"
    )


@contextlib.contextmanager
def atomic_dir(
    final: str | Path,
    *,
    step: str,
    inputs=(),
    overwrite: bool = False,
    option: str = "--output",
) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces ``final`` in one rename.

    ``final`` is first checked by ``check_output`` (what may be replaced; see there). The
    staging directory ``.NAME.tmp-PID-*`` lives next to ``final``; on success the step's marker
    (``OUTPUT_MARKER``) is written into it, so the swapped-in output is recognisable as
    ``step``'s. On any exception (Ctrl-C included) the staging directory is deleted and
    ``final`` is left as it was; a full, quota-exceeded or read-only disk becomes an
    ``OutputError`` naming ``option`` and the path. Staging directories left by a killed run are
    removed first.
    """
    shown = final
    final = check_output(final, step, inputs=inputs, overwrite=overwrite, option=option)
    clean_stale_staging(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(
            tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-{os.getpid()}-")
        )
        _make_readable(staging, directory=True)
    except OSError as exc:
        if exc.errno in CREATE_ERRNOS:
            raise _disk_error(option, shown, exc, "create it") from exc
        raise
    try:
        yield staging
        write_output_marker(staging, step)
        # what is there now (another process may have written it meanwhile) is checked again
        check_output(final, step, inputs=inputs, overwrite=overwrite, option=option)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            raise _disk_error(option, shown, exc, "write it") from exc
        raise
    old = None
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{staging.name[-8:]}"
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        _remove(old)


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


def json_safe(obj):
    """NaN → None recursively (JSON has no NaN), tuples → lists, numpy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy" and getattr(obj, "ndim", None) == 0:  # np.float64(…) …
        obj = obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def write_parquet_atomic(table, path: str | Path) -> None:
    """Deterministic Parquet (same table → same bytes) written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Dictionary pages only for string columns (split names, ids, domains): on integer columns
    # pyarrow builds a dictionary, finds it too large and falls back, which cost ~40% of the
    # write of a 20M-row interactions table (benchmarks/ingest.py)
    strings = [
        field.name
        for field in table.schema
        if pa.types.is_string(field.type)
        or (pa.types.is_list(field.type) and pa.types.is_string(field.type.value_type))
    ]
    with atomic_file(path, "wb") as handle:
        pq.write_table(
            table, handle, compression="zstd", write_statistics=True, use_dictionary=strings
        )


def library_versions() -> dict[str, str]:
    """Versions recorded in manifests, so an artifact says what produced it."""
    import importlib.metadata as md

    versions = {}
    for name in ("dwlrec", "pyarrow", "numpy", "kfp", "torch"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions
