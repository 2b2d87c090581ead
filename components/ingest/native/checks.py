"""The value rules of ``--engine duckdb``'s scans: each column's check (``Check``) as SQL over
the raw text and in Python, the timestamp parsing of ``sources/numeric.py`` in SQL, the
classifying SELECT (``_classified_sql``: a status per row) and ``Fallback``, raised when a
file needs the in-memory reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from components.ingest.sources.numeric import INT64_LIMIT, _numeric_reason

# value rules, RE2 patterns matched in full (regexp_full_match) unless noted
INT_GOOD = "-?[0-9]{1,18}"  # pyarrow's int64 cast and INT_PATTERN both take it
INT_MAYBE = "[0-9a-fA-FxX+-]*"  # anything else of these characters: pyarrow's cast decides
INT_BEYOND = "-?0*[1-9][0-9]{19,}"  # >= 1e19: no int64 cast takes it
FLOAT_PATTERN = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"  # numeric.FLOAT_PATTERN
FLOAT_MAYBE = r"[0-9+.eE-]*"
DATE = "[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
DATETIME_FORMATS = {  # numeric.DATETIME_FORMATS, in its order, as (pattern, strptime format)
    f"{DATE}T{TIME}": "%Y-%m-%dT%H:%M:%S",
    f"{DATE} {TIME}": "%Y-%m-%d %H:%M:%S",
    DATE: "%Y-%m-%d",
}
NAME_CHAR = r"[!-~\p{L}\p{N}]"  # found (regexp_matches): the value is not blank
UNCERTAIN, BLANK = 64, 128  # status bits beside one bit per check (1 << k)


class Fallback(Exception):
    """The file needs the in-memory reader (the message says why)."""


@dataclass(frozen=True)
class Check:
    """One column's rule: ``kind`` int | float | seconds | name; ``required``: empty is
    malformed (else null); ``name``: the reader's column name (its reasons say it); ``kind_word``:
    "id" or "value" (``_numeric_reason``'s)."""

    column: str  # the SQL expression of the raw text
    name: str
    kind: str
    required: bool = True
    kind_word: str = "value"

    def klass(self, seconds: str | None = None, lines: bool = True) -> str:
        """SQL: 0 the value is good, 1 malformed (the reader skips the row), 2 uncertain;
        each test runs only on the values the ones before left open (DuckDB's CASE).
        ``seconds``: the column holding ``_seconds_sql`` of this one (kind seconds);
        ``lines``: a text file's field, where a line break is uncertain (pyarrow would split
        the row)."""
        v = self.column
        brk = f"WHEN {_breaks(v)} THEN 2" if lines else ""
        if self.kind == "int":
            return (
                f"CASE WHEN regexp_full_match({v}, '{INT_GOOD}') THEN 0 WHEN {v} IS NULL THEN 1 "
                f"{brk} WHEN NOT regexp_full_match({v}, '{INT_MAYBE}') "
                f"OR regexp_full_match({v}, '{INT_BEYOND}') THEN 1 ELSE 2 END"
            )
        if self.kind == "float":
            finite = f"isfinite(TRY_CAST({v} AS DOUBLE))"
            return (
                f"CASE WHEN {v} IS NULL THEN {int(self.required)} "
                f"WHEN regexp_full_match({v}, '{FLOAT_PATTERN}') THEN (NOT {finite})::INTEGER "
                f"{brk} WHEN NOT regexp_full_match({v}, '{FLOAT_MAYBE}') THEN 1 ELSE 2 END"
            )
        if self.kind == "seconds":
            return (
                f"CASE WHEN {seconds} IS NOT NULL THEN 0 WHEN {v} IS NULL THEN 1 {brk} "
                f"WHEN NOT regexp_matches({v}, '[0-9]') OR {_float_seconds_beyond(v)} THEN 1 "
                "ELSE 2 END"
            )
        return (
            f"CASE WHEN {v} IS NULL THEN 1 {brk} WHEN regexp_matches({v}, '{NAME_CHAR}') THEN 0 "
            f"WHEN regexp_full_match({v}, '[ \t]*') THEN 1 ELSE 2 END"
        )

    def reason(self, value: str | None) -> str:
        """The reader's words for a malformed ``value`` (``numeric.to_numeric``'s)."""
        if self.kind == "name":
            return f"empty {self.name}"
        return _numeric_reason(self.name, self.kind_word, "" if value is None else value)

    def is_bad(self, value: str | None) -> bool:
        """This rule in Python, for the few rows whose reason is looked up (never a value
        whose reading is uncertain: those made the scan fall back)."""
        text = value or ""
        if self.kind == "name":
            return re.fullmatch(r"[ \t]*", text) is not None
        if self.kind == "seconds":
            return _seconds_python(text) is None
        if not text:
            return self.required
        if self.kind == "int":
            return re.fullmatch(INT_GOOD, text) is None
        return not (re.fullmatch(FLOAT_PATTERN, text) and np.isfinite(float(text)))


INT_PATTERN = "[+-]?[0-9]{1,18}"  # numeric.INT_PATTERN: parse_timestamps' integers
FLOOR_LIMIT = float(INT64_LIMIT)


def _float_seconds_beyond(v: str) -> str:
    """A float (not an integer) whose floor lies beyond int64: parse_timestamps' null."""
    number = f"floor(TRY_CAST({v} AS DOUBLE))"
    return (
        f"(regexp_full_match({v}, '{FLOAT_PATTERN}') AND NOT regexp_full_match({v}, "
        f"'{INT_PATTERN}') AND NOT abs({number}) < {FLOOR_LIMIT!r})"
    )


def _seconds_sql(v: str) -> str:
    """``numeric.parse_timestamps`` of a text ``v`` for the values whose reading is certain:
    integers, floats (floored, within int64) and the naive ISO formats; else NULL (``+5``:
    pyarrow's int64 cast decides, so it is left uncertain)."""
    number = f"floor(TRY_CAST({v} AS DOUBLE))"
    cases = [
        f"WHEN regexp_full_match({v}, '{INT_GOOD}') THEN TRY_CAST({v} AS BIGINT)",
        f"WHEN regexp_full_match({v}, '{INT_PATTERN}') THEN NULL",
        f"WHEN regexp_full_match({v}, '{FLOAT_PATTERN}') "
        f"THEN CASE WHEN abs({number}) < {FLOOR_LIMIT!r} THEN {number}::BIGINT END",
    ]
    for pattern, fmt in DATETIME_FORMATS.items():
        cases.append(
            f"WHEN regexp_full_match({v}, '{pattern}') "
            f"THEN epoch(try_strptime({v}, '{fmt}'))::BIGINT"
        )
    return f"CASE {' '.join(cases)} END"


def _seconds_python(text: str) -> int | None:
    """``_seconds_sql`` for one value (None: malformed or not certain)."""
    if re.fullmatch(INT_GOOD, text):
        return int(text)
    if re.fullmatch(INT_PATTERN, text):
        return None
    if re.fullmatch(FLOAT_PATTERN, text):
        number = float(np.floor(float(text)))
        return int(number) if abs(number) < FLOOR_LIMIT else None
    return 0 if any(re.fullmatch(p, text) for p in DATETIME_FORMATS) else None


def _breaks(v: str) -> str:
    """SQL: the text holds a line break (or the stand-in of a multi-character delimiter)."""
    return f"(contains({v}, chr(10)) OR contains({v}, chr(13)) OR contains({v}, chr(31)))"


def _classified_sql(
    source: str, roles: dict[str, str], checks: Sequence[Check], typed: Callable
) -> str:
    """SELECT over ``source`` (the CSV's text columns c0…) of the typed columns and ``status``:
    0 good; bit 1 << k: check k fails; UNCERTAIN: a value whose reading is not certain (or a
    field holding a line break); BLANK: every wanted field empty, a row the reader drops unseen.
    Three levels so that each rule's tests run once per value. ``typed(klass, seconds)``: the
    typed columns' SQL from the checks' class and seconds columns."""
    texts = list(roles.values())
    seconds = {c.name: f"s_{c.name}" for c in checks if c.kind == "seconds"}
    level1 = ", ".join(
        [
            *texts,
            *(
                f"{_seconds_sql(c.column)} AS {seconds[c.name]}"
                for c in checks
                if c.name in seconds
            ),
        ]
    )
    klass = {c.name: f"k_{c.name}" for c in checks}
    unchecked = [t for t in texts if t not in {c.column for c in checks}]  # e.g. the domain
    level2 = ", ".join(
        [
            *texts,
            *seconds.values(),
            *(f"coalesce({c.klass(seconds.get(c.name))}, 2) AS {klass[c.name]}" for c in checks),
            f"({' OR '.join([_breaks(t) for t in unchecked] or ['false'])}) AS k_breaks",
        ]
    )
    bits = " | ".join(
        f"(CASE WHEN {klass[c.name]} = 1 THEN {1 << k} ELSE 0 END)" for k, c in enumerate(checks)
    )
    unsure = " OR ".join([f"{klass[c.name]} = 2" for c in checks] + ["coalesce(k_breaks, false)"])
    blank = " AND ".join(f"{t} IS NULL" for t in texts)  # pyarrow: a row of empty fields
    status = (
        f"(CASE WHEN {blank} THEN {BLANK} ELSE ({bits}) | "
        f"(CASE WHEN {unsure} THEN {UNCERTAIN} ELSE 0 END) END)::UTINYINT"
    )
    columns = ", ".join(f"{sql} AS {name}" for name, sql in typed(klass, seconds).items())
    return (
        f"SELECT {columns}, {status} AS status FROM (SELECT {level2} FROM "
        f"(SELECT {level1} FROM {source}))"
    )


def _fallback_or_raise(exc: Exception, what: str) -> Fallback:
    """A DuckDB error while loading the file: the in-memory reader takes the file over, unless
    the error is the machine's (out of memory, a full disk while spilling), which is raised."""
    import duckdb

    if isinstance(exc, duckdb.OutOfMemoryException | duckdb.IOException):
        raise exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return Fallback(f"{what} ({first})")
