"""String columns → numbers and times (``to_numeric``, ``parse_timestamps``).

Malformed values (non-numeric, non-finite, beyond int64, empty where required, not a time) drop
their row, counted in ``BadRows`` with the row's line (``delimited.Delimited.lines``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.ingest.sources.bad_rows import MAX_EXAMPLES, BadRows
from components.ingest.sources.delimited import Delimited
from components.ingest.sources.files import FileRef

INT_PATTERN = r"^[+-]?[0-9]{1,18}$"
FLOAT_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
DATETIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
# ISO 8601 with a zone ("Z", "+01:00", "-0500"; fractional seconds dropped), after normalising
ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z")
INT64_LIMIT = 2**63 - 2**10  # |seconds| a float may hold and still cast to int64 exactly enough
SECONDS = "seconds"  # to_numeric target: integer/float seconds or an ISO date-time → int64


NumericSpec = tuple[Any, bool]  # (pa type or SECONDS, required: empty is malformed, not null)


def to_numeric(
    data: Delimited,
    ref: FileRef,
    bad: BadRows,
    columns: dict[str, NumericSpec],
    id_columns: Sequence[str] = (),
    nonempty: Sequence[str] = (),
    integer_ids: bool = False,
) -> pa.Table:
    """Cast ``columns`` to numbers and check ``id_columns`` are integers (kept as strings).

    Rows with a non-numeric, non-finite (NaN, inf) or out-of-range (beyond int64) value, or an
    empty (blank) value in ``nonempty`` (string ids), are dropped and recorded in ``bad``; a
    fully valid column is cast in one pyarrow call, the per-row check only runs when that cast
    fails. The kept rows' indices into ``data.table`` are left in ``data.kept``.
    ``integer_ids``: an id column whose every value is a canonical small integer
    (``canonical_integers``) comes back as int64 (``raw.INTEGER_ID``), else as strings.
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

    # the columns' casts at once: pyarrow's kernels release the GIL, and each is one core's work
    def convert(check: tuple) -> tuple[pa.ChunkedArray, pa.Array | None, bool]:
        name, target, _ = check
        cast, ok = _cast_checked(table.column(name), target)
        integers = integer_ids and name in id_columns and ok is None
        return cast, ok, integers and canonical_integers(table.column(name), cast)

    with ThreadPoolExecutor(max_workers=max(1, min(len(checks), os.cpu_count() or 1))) as pool:
        casts = list(pool.map(convert, checks))
    for (name, _, required), (cast, ok, integers) in zip(checks, casts, strict=True):
        values = table.column(name)
        if not required and ok is not None:  # an empty optional value is null, not malformed
            ok = pc.or_(ok, pc.equal(pc.utf8_length(values), 0))
        if ok is not None:
            ok_np = ok.to_numpy(zero_copy_only=False)
            kind = "id" if name in id_columns else "value"
            for row in np.flatnonzero(~ok_np & ~invalid)[:MAX_EXAMPLES]:
                reasons[int(row)] = _numeric_reason(name, kind, values[int(row)].as_py())
            invalid |= ~ok_np
        if name not in id_columns or integers:
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


def canonical_integers(text: pa.ChunkedArray, ints: pa.ChunkedArray) -> bool:
    """Whether every string of ``text`` is the canonical decimal form of its integer ``ints``
    (no sign, leading zero or hex: "7", never "07", "-0", "0x7"), the integers >= 0 and dense
    enough to count with a bincount (<= 4 x rows + 2**20): then distinct strings are distinct
    integers and each string is ``str`` of its integer.

    pyarrow's cast reads ``-?[0-9]+`` and ``0[xX][0-9a-fA-F]+``; without an x every string is
    ``-?[0-9]+``, no shorter than its integer's digits, so equal total lengths mean each is
    canonical. A few linear passes (~0.2 s for 20M ids), no hashing."""
    n = len(ints)
    if n == 0 or ints.null_count:
        return False
    lo, hi = (scalar.as_py() for scalar in pc.min_max(ints).values())
    if lo < 0 or hi > 4 * n + (1 << 20):
        return False
    text_bytes = 0
    for chunk in text.chunks:  # an x anywhere in the strings' bytes: maybe hex, not canonical
        if len(chunk) == 0:
            continue
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)
        if ((data | 0x20) == ord("x")).any():
            return False
        text_bytes += int(pc.sum(pc.binary_length(chunk)).as_py())
    counts = np.zeros(hi + 1, dtype=np.int64)
    for chunk in ints.chunks:
        counts += np.bincount(chunk.to_numpy(), minlength=hi + 1)
    values = np.flatnonzero(counts)
    digits = np.searchsorted(POWERS_OF_TEN, values, side="right") + 1
    return text_bytes == int((counts[values] * digits).sum())


POWERS_OF_TEN = 10 ** np.arange(1, 19, dtype=np.int64)


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
