"""JSON lines (``read_json_lines``): pyarrow's fast reader, or an exact line-by-line loop that
names malformed lines and also accepts the Python-literal dicts of Amazon's 2014 metadata."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.files import FileRef

log = logging.getLogger("dwlrec.ingest")


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
            row: dict[str, Any] = {}
            problem: str | None = None
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


def parse_object(text: str, literal_ok: bool) -> Any:
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
