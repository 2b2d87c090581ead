"""Parsing helpers shared by the source readers.

- ``FileRef`` / ``locate``: a data file that may be plain, gzip'd, or a member of a zip archive.
- ``read_delimited`` + ``to_numeric``: delimited text through pyarrow's CSV reader; malformed rows
  (wrong field count, non-numeric, non-finite or out-of-range values, empty ids, lines that are
  not valid UTF-8) are skipped and counted with their physical line number.
- ``read_json_lines``: JSON lines (pyarrow's fast reader, or an exact line-by-line loop that also
  accepts the Python-literal dicts of Amazon's 2014 metadata).
- ``decode_text``: the text encoding rule every reader shares. A file is UTF-8 (a leading BOM is
  dropped). A file that is not valid UTF-8 is read as latin-1 only when it holds no valid
  multi-byte UTF-8 sequence at all (old MovieLens/HetRec files); otherwise it is a UTF-8 file with a
  few bad bytes, which are replaced (U+FFFD) and *their lines counted as malformed*, named
  ``FILE:LINE`` (never a whole file turned into latin-1 mojibake).
"""

from __future__ import annotations

import ast
import bisect
import codecs
import contextlib
import gzip
import io
import json
import logging
import math
import re
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from components.errors import ConfigError, InputError
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA, RAW_ITEMS_SCHEMA

log = logging.getLogger("dwlrec.ingest")

MAX_EXAMPLES = 5
INT_PATTERN = r"^[+-]?[0-9]{1,18}$"
FLOAT_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATETIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
# ISO 8601 with a zone ("Z", "+01:00", "-0500"; fractional seconds dropped), after normalising
ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z")
INT64_LIMIT = 2**63 - 2**10  # |seconds| a float may hold and still cast to int64 exactly enough
SECONDS = "seconds"  # to_numeric target: integer/float seconds or an ISO date-time → int64
_SEP = "\x1f"  # stands in for multi-character delimiters such as MovieLens' "::"


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class FileRef:
    """A data file: a plain (maybe .gz) file, or a member of a zip archive."""

    path: Path  # the file itself, or the zip archive holding it
    member: str | None = None  # path inside the zip archive

    @property
    def name(self) -> str:
        """How messages name the file (``archive.zip/member`` for zip members)."""
        return f"{self.path}/{self.member}" if self.member else str(self.path)

    @property
    def basename(self) -> str:
        name = Path(self.member or self.path).name
        return name[: -len(".gz")] if name.endswith(".gz") else name

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The file's bytes, gunzipped when its name ends in .gz."""
        with contextlib.ExitStack() as stack:
            if self.member is None:
                handle: IO[bytes] = stack.enter_context(open(self.path, "rb"))
            else:
                archive = stack.enter_context(zipfile.ZipFile(self.path))
                handle = stack.enter_context(archive.open(self.member))
            if (self.member or self.path.name).endswith(".gz"):
                handle = stack.enter_context(gzip.GzipFile(fileobj=handle))
            try:
                yield handle
            except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
                raise InputError(f"{self.name}: cannot read ({type(exc).__name__}: {exc})") from exc

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def read_text(self) -> str:
        """Whole file as text (``decode_text``'s rule; bad UTF-8 lines replaced and logged)."""
        return self.read_text_checked()[0]

    def read_text_checked(self) -> tuple[str, set[int]]:
        """Whole file as text and the line numbers holding invalid UTF-8 (see ``decode_text``)."""
        text, bad = decode_text(self.read_bytes(), self.name)
        return text, set(bad.tolist())

    def first_line(self) -> str:
        with self.open() as handle:
            return decode_text(handle.readline(), self.name, quiet=True)[0].rstrip("\r\n")

    def sibling(self, names: Sequence[str]) -> FileRef | None:
        """A file with one of ``names`` (or name.gz) in the same directory / zip folder."""
        for name in names:
            for candidate in (name, name + ".gz"):
                if self.member is None:
                    if (self.path.parent / candidate).is_file():
                        return FileRef(self.path.parent / candidate)
                else:
                    folder = str(Path(self.member).parent)
                    member = candidate if folder == "." else f"{folder}/{candidate}"
                    if member in _zip_members(self.path):
                        return FileRef(self.path, member)
        return None


_DECODE_ERRORS = threading.local()


def _record_decode_error(exc: UnicodeDecodeError) -> tuple[str, int]:
    _DECODE_ERRORS.positions.append(exc.start)
    return "\ufffd", exc.end


codecs.register_error("dwlrec-record", _record_decode_error)


def decode_text(data: bytes, name: str, *, quiet: bool = False) -> tuple[str, np.ndarray]:
    """``data`` as text, and the sorted 1-based line numbers holding invalid UTF-8.

    UTF-8 (a leading BOM dropped). Not valid UTF-8: latin-1 when the bytes hold no valid
    multi-byte UTF-8 sequence, or fewer of them than invalid bytes (a legacy single-byte file:
    no bad lines); otherwise a UTF-8 file with stray bytes, replaced by U+FFFD, their lines
    returned so that callers count them as malformed.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8"), np.zeros(0, dtype=np.int64)
    except UnicodeDecodeError:
        pass
    _DECODE_ERRORS.positions = []
    try:
        text = data.decode("utf-8", "dwlrec-record")
        positions = np.array(_DECODE_ERRORS.positions, dtype=np.int64)
    finally:
        _DECODE_ERRORS.positions = []
    raw = np.frombuffer(data, dtype=np.uint8)
    n_high = int(np.count_nonzero(raw >= 0x80))
    valid_multibyte = len(text) - (len(data) - n_high) - len(positions)
    if valid_multibyte < len(positions):
        if not quiet:
            log.info("%s: not UTF-8, decoding as latin-1", name)
        return data.decode("latin-1"), np.zeros(0, dtype=np.int64)
    newlines = np.flatnonzero(raw == 0x0A)
    lines = np.unique(np.searchsorted(newlines, positions, side="right") + 1)
    if not quiet:
        shown = ", ".join(f"{name}:{n}" for n in lines[:MAX_EXAMPLES])
        log.warning(
            "%s: UTF-8 with %d invalid byte(s) on %d line(s) (%s%s): those lines are malformed",
            name,
            len(positions),
            len(lines),
            shown,
            ", …" if len(lines) > MAX_EXAMPLES else "",
        )
    return text, lines


def _zip_members(archive: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as handle:
            return [n for n in handle.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc})") from exc


def is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def locate(root: Path, names: Sequence[str]) -> FileRef | None:
    """Find the first of ``names`` (preference order; ``name.gz`` too) under ``root``.

    ``root`` is a directory (searched directly, one sub-directory deep, then inside any .zip in
    it) or a zip archive (members matched by base name, shallowest first).
    """
    wanted = [c for name in names for c in (name, name + ".gz")]
    if is_zip(root):
        return _locate_in_zip(root, wanted)
    if not root.is_dir():
        return None
    for candidate in wanted:
        if (root / candidate).is_file():
            return FileRef(root / candidate)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for candidate in wanted:
        for subdir in subdirs:
            if (subdir / candidate).is_file():
                return FileRef(subdir / candidate)
    for archive in sorted(root.glob("*.zip")):
        found = _locate_in_zip(archive, wanted)
        if found is not None:
            return found
    return None


def _locate_in_zip(archive: Path, wanted: Sequence[str]) -> FileRef | None:
    members = _zip_members(archive)
    for candidate in wanted:
        matches = [m for m in members if Path(m).name == candidate and "__MACOSX" not in m]
        if matches:
            return FileRef(archive, min(matches, key=lambda m: (m.count("/"), m)))
    return None


def list_files(root: Path) -> list[FileRef]:
    """Every file directly in ``root`` (a directory or a zip archive), sorted by name."""
    if is_zip(root):
        return [FileRef(root, m) for m in sorted(_zip_members(root)) if "__MACOSX" not in m]
    return [
        FileRef(p) for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")
    ]


def raw_interactions(table: pa.Table) -> pa.Table:
    """``table``'s user_id, item_id, timestamp, rating columns as RAW_INTERACTIONS_SCHEMA."""
    if "rating" not in table.column_names:
        table = table.append_column("rating", pa.nulls(table.num_rows, pa.float64()))
    return table.select(RAW_INTERACTIONS_SCHEMA.names).cast(RAW_INTERACTIONS_SCHEMA)


def raw_items(item_ids: Sequence[str] | pa.Array, domains: Sequence[list] | pa.Array) -> pa.Table:
    return pa.table({"item_id": item_ids, "domains": domains}, schema=RAW_ITEMS_SCHEMA)


def split_domains(values: pa.Array | pa.ChunkedArray, sep: str) -> pa.Array:
    """``"A|B"`` strings → ``["A", "B"]`` lists (trimmed, empty parts and nulls dropped)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    parts = (
        pc.split_pattern(pc.fill_null(values.cast(pa.string()), ""), sep)
        if sep
        else (pa.ListArray.from_arrays(np.arange(len(values) + 1, dtype=np.int32), values))
    )
    return clean_domain_lists(parts)


def clean_domain_lists(lists: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Trim every domain name and drop empty ones; null lists become []."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    lists = pc.fill_null(lists, pa.scalar([], lists.type))
    flat = pc.utf8_trim_whitespace(pc.fill_null(pc.list_flatten(lists), ""))
    parent = pc.list_parent_indices(lists).to_numpy()
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    counts = np.bincount(parent[keep], minlength=len(lists))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)))


def domains_per_item(item_ids: pa.Array, domain_lists: pa.Array) -> tuple[pa.Table, int, str]:
    """One domain list per item from per-interaction values (a domain column of the events).

    Each item keeps its most common non-empty value (ties: the one seen first); returns the raw
    items table, the number of items whose rows disagree, and an example of such an item.
    """
    keys = pc.fill_null(pc.binary_join(domain_lists, _SEP), "")
    table = pa.table(
        {"item": item_ids, "key": keys, "row": pa.array(np.arange(len(keys), dtype=np.int64))}
    ).filter(pc.greater(pc.utf8_length(keys), 0))
    if table.num_rows == 0:
        return raw_items(pa.array([], pa.string()), pa.array([], pa.list_(pa.string()))), 0, ""
    grouped = table.group_by(["item", "key"]).aggregate([("row", "count"), ("row", "min")])
    codes = pc.dictionary_encode(grouped.column("item")).combine_chunks().indices.to_numpy()
    count = grouped.column("row_count").to_numpy()
    first_row = grouped.column("row_min").to_numpy()
    order = np.lexsort((first_row, -count, codes))
    best = order[np.r_[True, codes[order][1:] != codes[order][:-1]]]
    values_per_item = np.bincount(codes)
    conflicting = int((values_per_item > 1).sum())
    example = ""
    if conflicting:
        rows = np.flatnonzero(values_per_item[codes] > 1)
        code = codes[rows[np.argmin(first_row[rows])]]
        members = np.flatnonzero(codes == code)
        members = members[np.lexsort((first_row[members], -count[members]))]
        shown = ", ".join(
            f"{grouped.column('key')[int(k)].as_py().replace(_SEP, '|')!r} ×{int(count[k])}"
            for k in members[:4]
        )
        example = f"item {grouped.column('item')[int(members[0])].as_py()!r}: {shown}"
    items = raw_items(
        grouped.column("item").take(pa.array(best)),
        pc.split_pattern(grouped.column("key").take(pa.array(best)), _SEP),
    )
    return items, conflicting, example


def as_domain_lists(column: pa.Array | pa.ChunkedArray, sep: str, where: str) -> pa.Array:
    """A domain column (a list of names, or ``sep``-separated names) as clean string lists."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        inner = kind.value_type
        if pa.types.is_dictionary(inner):
            inner = inner.value_type
        if not _is_scalar_name(inner):
            raise ConfigError(f"{where}: a list of {kind.value_type} values; expected names")
        return clean_domain_lists(pc.cast(column, pa.list_(pa.string())))
    if not _is_scalar_name(kind):
        raise ConfigError(f"{where}: values of type {kind}; expected names or lists of names")
    return split_domains(column, sep)


def _is_scalar_name(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_null(kind)
        or pa.types.is_boolean(kind)
    )


# --------------------------------------------------------------------------- bad rows


@dataclass
class BadRows:
    """Counts malformed rows; keeps the first few as ``"FILE:LINE: reason"`` (file order)."""

    count: int = 0
    _files: list[str] = field(default_factory=list)
    _examples: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, file: str, line: int, reason: str) -> None:
        self.count += 1
        if file not in self._files:
            self._files.append(file)
        key = (self._files.index(file), int(line), reason)
        if len(self._examples) < MAX_EXAMPLES or key < self._examples[-1]:
            bisect.insort(self._examples, key)
            del self._examples[MAX_EXAMPLES:]

    def add_many(self, file: str, lines: np.ndarray, reasons: Sequence[str]) -> None:
        """Record ``len(lines)`` bad rows; only the first few need a reason string."""
        first = np.argsort(lines, kind="stable")[:MAX_EXAMPLES]
        for position in first:
            self.add(file, int(lines[position]), reasons[position])
        self.count += len(lines) - len(first)

    def merge(self, other: BadRows) -> None:
        for file, line, reason in other._examples:
            self.add(other._files[file], line, reason)
        self.count += other.count - len(other._examples)

    @property
    def examples(self) -> list[str]:
        return [f"{self._files[f]}:{line}: {reason}" for f, line, reason in self._examples]


# --------------------------------------------------------------------------- delimited text


@dataclass
class Delimited:
    """Rows of a delimited file as string columns, malformed-by-field-count and blank rows removed."""

    table: pa.Table
    rows_read: int  # data rows seen, malformed ones included (blank lines are not rows)
    first_line: int  # physical line number of the first data row
    skipped_lines: np.ndarray  # sorted physical line numbers of removed (malformed, blank) rows
    kept: np.ndarray | None = None  # set by to_numeric: rows of ``table`` it kept (None = all)

    def lines(self, index: np.ndarray) -> np.ndarray:
        """Physical 1-based line numbers of table rows ``index`` (one record per line)."""
        rows_before = self.skipped_lines - self.first_line - np.arange(len(self.skipped_lines))
        return index + self.first_line + np.searchsorted(rows_before, index, side="right")

    def lines_after_numeric(self, index: np.ndarray) -> np.ndarray:
        """Line numbers of rows ``index`` of the table ``to_numeric`` returned."""
        return self.lines(index if self.kept is None else self.kept[index])


def read_delimited(
    ref: FileRef,
    column_names: Sequence[str],
    bad: BadRows,
    *,
    delimiter: str = ",",
    skip_rows: int = 0,
    quoting: bool = True,
    include: Sequence[str] | None = None,
) -> Delimited:
    """Read a delimited file with pyarrow, every column as a string.

    Rows with the wrong number of fields are skipped and recorded in ``bad`` with their line
    number (the serial reader knows line numbers; it is as fast as the threaded one here). Text
    is decoded by ``decode_text``'s rule: rows on lines with invalid UTF-8 bytes in an otherwise
    UTF-8 file are malformed too; a legacy latin-1 file is read as latin-1.
    """
    wanted = list(include or column_names)
    payload = ref.read_bytes() if len(delimiter) > 1 else None
    bad_utf8 = np.zeros(0, dtype=np.int64)
    try:
        table, found, invalid_lines = _parse_delimited(
            ref, payload, column_names, wanted, delimiter, skip_rows, quoting
        )
    except _NotUtf8:
        text, bad_utf8 = decode_text(payload if payload is not None else ref.read_bytes(), ref.name)
        table, found, invalid_lines = _parse_delimited(
            ref, text.encode("utf-8"), column_names, wanted, delimiter, skip_rows, quoting
        )
        del text

    bad.merge(found)
    data = Delimited(
        table=table,
        rows_read=0,
        first_line=skip_rows + 1,
        skipped_lines=np.array(sorted(invalid_lines), dtype=np.int64),
    )
    # A blank line parses as a row of empty fields (we read with ignore_empty_lines=False so
    # that line numbers stay exact): drop it, and remember its line as skipped. Only rows whose
    # first field is empty can be blank, so the other columns are checked only when there are.
    blank = pc.equal(pc.utf8_length(table.column(wanted[0])), 0)
    if pc.any(blank).as_py():
        for name in wanted[1:]:
            blank = pc.and_(blank, pc.equal(pc.utf8_length(table.column(name)), 0))
    blank_index = np.flatnonzero(blank.to_numpy(zero_copy_only=False))
    if len(blank_index):
        blank_lines = data.lines(blank_index)
        data.table = data.table.filter(pc.invert(blank))
        data.skipped_lines = np.sort(np.concatenate([data.skipped_lines, blank_lines]))
    data.rows_read = data.table.num_rows + len(invalid_lines)
    if len(bad_utf8):
        row_lines = data.lines(np.arange(data.table.num_rows))
        on_bad_line = np.isin(row_lines, bad_utf8)
        if on_bad_line.any():
            lines = row_lines[on_bad_line]
            bad.add_many(ref.name, lines, ["not valid UTF-8 (undecodable byte)"] * len(lines))
            data.table = data.table.filter(pa.array(~on_bad_line))
            data.skipped_lines = np.sort(np.concatenate([data.skipped_lines, lines]))
    return data


class _NotUtf8(Exception):
    """pyarrow refused the bytes as UTF-8: decode them ourselves (``decode_text``)."""


def _parse_delimited(ref, payload, column_names, wanted, delimiter, skip_rows, quoting):
    """pyarrow's CSV reader over the file (or ``payload`` bytes): (table, bad rows, their lines)."""
    invalid_lines: list[int] = []
    found = BadRows()  # merged into the caller's only once the whole file has parsed

    def on_invalid(row) -> str:
        line = int(row.number) if row.number is not None else -1
        invalid_lines.append(line)
        text = row.text.replace(_SEP, delimiter)
        found.add(
            ref.name,
            line,
            f"expected {row.expected_columns} fields, found {row.actual_columns}: {text[:80]!r}",
        )
        return "skip"

    if len(delimiter) > 1:
        payload = payload.replace(delimiter.encode(), _SEP.encode())
        delimiter_char = _SEP
    else:
        delimiter_char = delimiter
    if payload is not None and payload.startswith(codecs.BOM_UTF8):
        payload = payload[len(codecs.BOM_UTF8) :]
    read_options = pacsv.ReadOptions(
        use_threads=False,
        column_names=list(column_names),
        skip_rows=skip_rows,
        encoding="utf-8",
        block_size=16 << 20,
    )
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter_char,
        quote_char='"' if quoting else False,
        ignore_empty_lines=False,
        invalid_row_handler=on_invalid,
    )
    convert_options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in column_names},
        include_columns=wanted,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        with contextlib.ExitStack() as stack:
            if payload is not None:
                source: Any = pa.BufferReader(payload)
            elif ref.member is None:
                source = ref.path
            else:
                source = stack.enter_context(ref.open())
            table = pacsv.read_csv(source, read_options, parse_options, convert_options)
    except (pa.ArrowInvalid, OSError) as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise _NotUtf8() from exc
        raise InputError(f"{ref.name}: cannot parse as delimited text ({exc})") from exc
    return table, found, invalid_lines


NumericSpec = tuple[Any, bool]  # (pa type or SECONDS, required: empty is malformed, not null)


def to_numeric(
    data: Delimited,
    ref: FileRef,
    bad: BadRows,
    columns: dict[str, NumericSpec],
    id_columns: Sequence[str] = (),
    nonempty: Sequence[str] = (),
) -> pa.Table:
    """Cast ``columns`` to numbers and check ``id_columns`` are integers (kept as strings).

    Rows with a non-numeric, non-finite (NaN, inf) or out-of-range (beyond int64) value, or an
    empty (blank) value in ``nonempty`` (string ids), are dropped and recorded in ``bad``; a
    fully valid column is cast in one pyarrow call, the per-row check only runs when that cast
    fails. The kept rows' indices into ``data.table`` are left in ``data.kept``.
    """
    table = data.table
    invalid = np.zeros(table.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    converted: dict[str, pa.Array] = {}
    checks = [(name, *columns[name]) for name in columns]
    checks += [(name, pa.int64(), True) for name in id_columns]
    for name in nonempty:
        ok = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table.column(name))), 0)
        ok_np = ok.to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(~ok_np & ~invalid)[:MAX_EXAMPLES]:
            reasons[int(row)] = f"empty {name}"
        invalid |= ~ok_np
    for name, target, required in checks:
        values = table.column(name)
        cast, ok = _cast_checked(values, target)
        if not required and ok is not None:  # an empty optional value is null, not malformed
            ok = pc.or_(ok, pc.equal(pc.utf8_length(values), 0))
        if ok is not None:
            ok_np = ok.to_numpy(zero_copy_only=False)
            kind = "id" if name in id_columns else "value"
            for row in np.flatnonzero(~ok_np & ~invalid)[:MAX_EXAMPLES]:
                reasons[int(row)] = _numeric_reason(name, kind, values[int(row)].as_py())
            invalid |= ~ok_np
        if name not in id_columns:
            converted[name] = cast
    for name, array in converted.items():
        table = table.set_column(table.schema.get_field_index(name), name, array)
    if invalid.any():
        rows = np.flatnonzero(invalid)
        lines = data.lines(rows)
        row_reasons = [reasons.get(int(r), "non-numeric value") for r in rows]
        bad.add_many(ref.name, lines, row_reasons)
        table = table.filter(pa.array(~invalid))
    data.kept = np.flatnonzero(~invalid) if invalid.any() else None
    return table


def _numeric_reason(name: str, kind: str, value) -> str:
    text = "" if value is None else str(value).strip()
    if not text:
        return f"empty {name}"
    if re.fullmatch(r"[+-]?[0-9]{19,}", text):
        return f"{name} {kind} {text[:40]!r} out of range (beyond int64)"
    try:
        number = float(text)
    except ValueError:
        return f"non-numeric {name} {kind} {value!r}"
    if re.fullmatch(r"[+-]?(nan|inf|infinity)", text, re.IGNORECASE):
        return f"non-finite {name} {kind} {text!r}"
    if not math.isfinite(number) or abs(number) >= 2**63:
        return f"{name} {kind} {text[:40]!r} out of range (beyond int64/float)"
    return f"non-numeric {name} {kind} {value!r}"


def _cast_checked(values: pa.Array, target) -> tuple[pa.Array, pa.Array | None]:
    """(values cast to ``target`` with nulls where invalid, validity mask or None if all ok).

    Floats must be finite: NaN and ±inf (which pyarrow's cast accepts) are invalid.
    """
    if target == SECONDS:
        seconds = parse_timestamps(values)
        return seconds, (pc.is_valid(seconds) if seconds.null_count else None)
    try:
        cast, ok = pc.cast(values, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pattern = INT_PATTERN if pa.types.is_integer(target) else FLOAT_PATTERN
        ok = pc.match_substring_regex(values, pattern)
        cast = pc.cast(pc.if_else(ok, values, None), target)
    if pa.types.is_floating(target):
        finite = pc.fill_null(pc.is_finite(cast), False)
        if not pc.all(finite).as_py():
            ok = finite if ok is None else pc.and_(ok, finite)
            cast = pc.if_else(finite, cast, None)
    return cast, ok


def parse_timestamps(values: pa.Array) -> pa.Array:
    """Strings → int64 seconds; null where none of these fits (or beyond int64):

    integers, floats (floored), ISO date-times ``YYYY-MM-DD[( |T)HH:MM:SS]`` read as UTC, and
    ISO date-times with a zone: ``Z``, ``±HH:MM`` or ``±HHMM`` (fractional seconds dropped).
    """
    values = pc.utf8_trim_whitespace(values.cast(pa.string()))
    as_int = pc.match_substring_regex(values, INT_PATTERN)
    result = pc.cast(pc.if_else(as_int, values, None), pa.int64())
    as_float = pc.and_(pc.invert(as_int), pc.match_substring_regex(values, FLOAT_PATTERN))
    if pc.any(as_float).as_py():
        floats = pc.floor(pc.cast(pc.if_else(as_float, values, None), pa.float64()))
        in_range = pc.less(pc.abs(floats), float(INT64_LIMIT))  # null where not a float
        floats = pc.if_else(pc.fill_null(in_range, False), floats, None)
        result = pc.coalesce(result, pc.cast(floats, pa.int64()))
    for fmt in DATETIME_FORMATS:
        if result.null_count == 0:
            break
        parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
        result = pc.coalesce(result, pc.cast(parsed, pa.int64()))
    if result.null_count:
        zoned = pc.replace_substring_regex(values, r"(T| )([0-9:]{8})\.[0-9]+", r"\1\2")
        zoned = pc.replace_substring_regex(zoned, r"[zZ]$", "+0000")
        zoned = pc.replace_substring_regex(zoned, r"([+-][0-9]{2}):([0-9]{2})$", r"\1\2")
        for fmt in ZONED_FORMATS:
            if result.null_count == 0:
                break
            parsed = pc.strptime(zoned, format=fmt, unit="s", error_is_null=True)
            result = pc.coalesce(result, pc.cast(parsed, pa.int64()))
    return result


def header_fields(ref: FileRef, delimiter: str = ",") -> list[str]:
    """The header line's field names (CSV quoting understood; a UTF-8 BOM dropped)."""
    import csv

    line = ref.first_line()
    if len(delimiter) > 1:
        return [f.strip() for f in line.split(delimiter)]
    return [f.strip() for f in next(csv.reader([line], delimiter=delimiter), [])]


# --------------------------------------------------------------------------- JSON lines


@dataclass
class JsonRows:
    table: pa.Table  # the requested fields, rows in file order, malformed rows removed
    rows_read: int
    lines: np.ndarray | None  # physical line of each row; None from the fast reader


def read_json_lines(
    ref: FileRef,
    fields: dict[str, pa.DataType],
    bad: BadRows,
    *,
    required: Sequence[str] = (),
    exact: bool = False,
    literal_ok: bool = False,
) -> JsonRows:
    """Read ``fields`` of a JSON-lines file (other keys ignored).

    Fast path: pyarrow's JSON reader. If it fails (a bad line, a type change, a number beyond
    int64), a required field is missing or blank somewhere, a float is NaN/inf, a string we read
    holds invalid UTF-8 (pyarrow replaces it silently), or when ``exact`` (callers ask for it to
    get line numbers), an exact line-by-line loop skips malformed lines into ``bad`` with their
    line numbers.
    """
    schema = pa.schema([pa.field(name, kind) for name, kind in fields.items()])
    if not exact and not literal_ok:
        try:
            with contextlib.ExitStack() as stack:
                plain = ref.member is None and not ref.path.name.endswith(".gz")
                # a plain file goes to pyarrow by path (native, multi-threaded reads)
                source = str(ref.path) if plain else stack.enter_context(ref.open())
                table = pajson.read_json(
                    source,
                    read_options=pajson.ReadOptions(block_size=16 << 20),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="ignore"
                    ),
                )
            if _fast_rows_ok(table, schema, required):
                return JsonRows(table, table.num_rows, None)
        except (pa.ArrowInvalid, OSError) as exc:
            log.info("%s: fast JSON reader failed (%s); reading line by line", ref.name, exc)
    return _read_json_exact(ref, schema, bad, required, literal_ok)


def _fast_rows_ok(table: pa.Table, schema: pa.Schema, required: Sequence[str]) -> bool:
    """Whether the fast reader's table needs no line-by-line check (see ``read_json_lines``)."""
    for field_ in schema:
        column = table.column(field_.name)
        if field_.name in required:
            if column.null_count:
                return False
            if pa.types.is_string(field_.type):
                blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
                if pc.any(blank).as_py():
                    return False
        if pa.types.is_string(field_.type) and pc.any(pc.match_substring(column, "\ufffd")).as_py():
            return False
        if pa.types.is_floating(field_.type) and column.null_count < len(column):
            if not pc.all(pc.fill_null(pc.is_finite(column), True)).as_py():
                return False
    return True


def _read_json_exact(ref, schema, bad, required, literal_ok) -> JsonRows:
    columns: dict[str, list] = {name: [] for name in schema.names}
    converters = {f.name: _converter(f.type) for f in schema}
    lines: list[int] = []
    rows_read = 0
    with ref.open() as handle:
        for number, raw in enumerate(io.TextIOWrapper(handle, "utf-8", errors="replace"), 1):
            text = raw.strip()
            if number == 1:
                text = text.lstrip("\ufeff")
            if not text:
                continue
            rows_read += 1
            record = parse_object(text, literal_ok)
            if not isinstance(record, dict):
                bad.add(ref.name, number, f"not a JSON object: {text[:60]!r}")
                continue
            row, problem = {}, None
            for name, convert in converters.items():
                value = record.get(name)
                if value is None:
                    if name in required:
                        problem = f"missing {name!r}"
                        break
                    row[name] = None
                    continue
                try:
                    row[name] = convert(value)
                except (TypeError, ValueError, OverflowError):
                    problem = f"bad {name!r} value {value!r}"[:120]
                    break
                if isinstance(row[name], str):
                    if "\ufffd" in row[name]:
                        problem = f"{name!r} is not valid UTF-8: {row[name][:60]!r}"
                        break
                    if name in required and not row[name].strip():
                        problem = f"empty {name!r}"
                        break
            if problem:
                bad.add(ref.name, number, problem)
                continue
            for name, value in row.items():
                columns[name].append(value)
            lines.append(number)
    table = pa.table({f.name: pa.array(columns[f.name], f.type) for f in schema}, schema=schema)
    return JsonRows(table, rows_read, np.array(lines, dtype=np.int64))


def parse_object(text: str, literal_ok: bool):
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM before the first record
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if not literal_ok:
            return None
    try:  # Amazon 2014 metadata: Python dict literals with single quotes
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _converter(kind: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_string(kind):
        return _as_id
    if pa.types.is_floating(kind):
        return _as_float
    if pa.types.is_integer(kind):
        return _as_int
    if pa.types.is_list(kind):
        inner = _converter(kind.value_type)

        def as_list(value):
            if not isinstance(value, list):
                raise TypeError("not a list")
            return [None if v is None else inner(v) for v in value]  # null: no entry

        return as_list
    raise TypeError(f"unsupported JSON field type {kind}")


def _as_id(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError("not a string")
    return str(value)


def _as_float(value) -> float:
    if isinstance(value, bool):
        raise TypeError("bool")
    number = float(value)  # numbers, or numeric strings
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _as_int(value) -> int:
    if isinstance(value, bool):
        raise TypeError("bool")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not an integer")
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise ValueError("beyond int64")
    return number
