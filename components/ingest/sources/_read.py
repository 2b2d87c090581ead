"""Parsing helpers shared by the source readers.

- ``FileRef`` / ``locate``: a data file that may be plain, gzip'd, or a member of a zip archive.
- ``read_delimited`` + ``to_numeric``: delimited text through pyarrow's CSV reader; malformed rows
  (wrong field count, non-numeric values) are skipped and counted with their physical line number.
- ``read_json_lines``: JSON lines (pyarrow's fast reader, or an exact line-by-line loop that also
  accepts the Python-literal dicts of Amazon's 2014 metadata).
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import gzip
import io
import json
import logging
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

from components.errors import InputError
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA, RAW_ITEMS_SCHEMA

log = logging.getLogger("dwlrec.ingest")

MAX_EXAMPLES = 5
INT_PATTERN = r"^[+-]?[0-9]{1,18}$"
FLOAT_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATETIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
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
        """Whole file as text: UTF-8, or latin-1 when it is not valid UTF-8 (old MovieLens)."""
        return decode(self.read_bytes(), self.name)

    def first_line(self) -> str:
        with self.open() as handle:
            return decode(handle.readline(), self.name).rstrip("\r\n")

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


def decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        log.info("%s: not UTF-8, decoding as latin-1", name)
        return data.decode("latin-1")


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
    encoding: str = "utf-8",
    include: Sequence[str] | None = None,
) -> Delimited:
    """Read a delimited file with pyarrow, every column as a string.

    Rows with the wrong number of fields are skipped and recorded in ``bad`` with their line
    number (the serial reader knows line numbers; it is as fast as the threaded one here).
    """
    invalid_lines: list[int] = []
    found = BadRows()  # merged into ``bad`` only once the whole file has parsed

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
        source: Any = pa.BufferReader(ref.read_bytes().replace(delimiter.encode(), _SEP.encode()))
        delimiter_char = _SEP
    else:
        source, delimiter_char = None, delimiter
    wanted = list(include or column_names)
    read_options = pacsv.ReadOptions(
        use_threads=False,
        column_names=list(column_names),
        skip_rows=skip_rows,
        encoding=encoding,
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
            if source is None:
                source = ref.path if ref.member is None else stack.enter_context(ref.open())
            table = pacsv.read_csv(source, read_options, parse_options, convert_options)
    except (pa.ArrowInvalid, OSError) as exc:
        if "UTF8" in str(exc) and encoding == "utf-8":
            log.info("%s: not UTF-8, reading as latin-1", ref.name)
            return read_delimited(
                ref,
                column_names,
                bad,
                delimiter=delimiter,
                skip_rows=skip_rows,
                quoting=quoting,
                encoding="latin-1",
                include=include,
            )
        raise InputError(f"{ref.name}: cannot parse as delimited text ({exc})") from exc

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
    return data


NumericSpec = tuple[Any, bool]  # (pa type or SECONDS, required: empty is malformed, not null)


def to_numeric(
    data: Delimited,
    ref: FileRef,
    bad: BadRows,
    columns: dict[str, NumericSpec],
    id_columns: Sequence[str] = (),
) -> pa.Table:
    """Cast ``columns`` to numbers and check ``id_columns`` are integers (kept as strings).

    Rows with a non-numeric value are dropped and recorded in ``bad``; a fully valid column is
    cast in one pyarrow call, the per-row check only runs when that cast fails. The kept rows'
    indices into ``data.table`` are left in ``data.kept`` (for later per-row checks).
    """
    table = data.table
    invalid = np.zeros(table.num_rows, dtype=bool)
    reasons: dict[int, str] = {}
    converted: dict[str, pa.Array] = {}
    checks = [(name, *columns[name]) for name in columns]
    checks += [(name, pa.int64(), True) for name in id_columns]
    for name, target, required in checks:
        values = table.column(name)
        cast, ok = _cast_checked(values, target)
        if not required and ok is not None:  # an empty optional value is null, not malformed
            ok = pc.or_(ok, pc.equal(pc.utf8_length(values), 0))
        if ok is not None:
            ok_np = ok.to_numpy(zero_copy_only=False)
            kind = "id" if name in id_columns else "value"
            for row in np.flatnonzero(~ok_np & ~invalid)[:MAX_EXAMPLES]:
                reasons[int(row)] = f"non-numeric {name} {kind} {values[int(row)].as_py()!r}"
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


def _cast_checked(values: pa.Array, target) -> tuple[pa.Array, pa.Array | None]:
    """(values cast to ``target`` with nulls where invalid, validity mask or None if all ok)."""
    if target == SECONDS:
        seconds = parse_timestamps(values)
        return seconds, (pc.is_valid(seconds) if seconds.null_count else None)
    try:
        return pc.cast(values, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pattern = INT_PATTERN if pa.types.is_integer(target) else FLOAT_PATTERN
        ok = pc.match_substring_regex(values, pattern)
        return pc.cast(pc.if_else(ok, values, None), target), ok


def parse_timestamps(values: pa.Array) -> pa.Array:
    """Strings → int64 seconds: integers, floats (floored), or ISO date-times; null if none."""
    values = pc.utf8_trim_whitespace(values.cast(pa.string()))
    as_int = pc.match_substring_regex(values, INT_PATTERN)
    result = pc.cast(pc.if_else(as_int, values, None), pa.int64())
    as_float = pc.and_(pc.invert(as_int), pc.match_substring_regex(values, FLOAT_PATTERN))
    if pc.any(as_float).as_py():
        floats = pc.floor(pc.cast(pc.if_else(as_float, values, None), pa.float64()))
        result = pc.coalesce(result, pc.cast(floats, pa.int64()))
    for fmt in DATETIME_FORMATS:
        if result.null_count == 0:
            break
        parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
        result = pc.coalesce(result, pc.cast(parsed, pa.int64()))
    return result


def header_fields(ref: FileRef, delimiter: str = ",") -> list[str]:
    """The header line's field names (CSV quoting understood)."""
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

    Fast path: pyarrow's JSON reader. If it fails (a bad line, a type change) or a required field
    is missing somewhere, or when ``exact`` (callers ask for it to get line numbers), an exact
    line-by-line loop skips malformed lines into ``bad`` with their line numbers.
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
            if all(table.column(name).null_count == 0 for name in required):
                return JsonRows(table, table.num_rows, None)
        except (pa.ArrowInvalid, OSError) as exc:
            log.info("%s: fast JSON reader failed (%s); reading line by line", ref.name, exc)
    return _read_json_exact(ref, schema, bad, required, literal_ok)


def _read_json_exact(ref, schema, bad, required, literal_ok) -> JsonRows:
    columns: dict[str, list] = {name: [] for name in schema.names}
    converters = {f.name: _converter(f.type) for f in schema}
    lines: list[int] = []
    rows_read = 0
    with ref.open() as handle:
        for number, raw in enumerate(io.TextIOWrapper(handle, "utf-8", errors="replace"), 1):
            text = raw.strip()
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
                except (TypeError, ValueError):
                    problem = f"bad {name!r} value {value!r}"[:120]
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
            return [inner(v) for v in value]

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
    if number != number:
        raise ValueError("NaN")
    return number


def _as_int(value) -> int:
    if isinstance(value, bool):
        raise TypeError("bool")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("not an integer")
        return int(value)
    return int(value)
