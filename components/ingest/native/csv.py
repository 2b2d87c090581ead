"""CSV scans: a delimited file loaded into the DuckDB table ``scan`` (every field read as text,
classified by the value rules of ``checks``, malformed rows named as the reader names them),
the ``Scan`` result and the ``raw`` view, and the MovieLens ratings scan.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.errors import InputError
from components.ingest.native.checks import (
    BLANK,
    UNCERTAIN,
    Check,
    Fallback,
    _classified_sql,
    _fallback_or_raise,
)
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA, RawData
from components.ingest.sources import movielens
from components.ingest.sources.bad_rows import MAX_EXAMPLES, BadRows
from components.ingest.sources.delimited import header_fields
from components.ingest.sources.files import FileRef, find_input, items_file
from components.ingest.sources.output import raw_data


@dataclass
class Scan:
    """The table ``scan`` and view ``raw`` in the connection, and what the reader would have
    returned besides the rows (``raw.interactions`` is empty)."""

    raw: RawData
    n_parsed: int
    has_ratings: bool


CSV_BUFFER_MAX = 32 << 20  # DuckDB's default (16 x max_line_size), per scanning thread
CSV_BUFFER_MIN = 4 << 20  # >= max_line_size (2 MiB): a longer line is refused (a fallback)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS.update({"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40})


def csv_buffer_size(memory_limit: str) -> int:
    """The CSV reader's buffer for a memory limit: DuckDB's default 32 MiB per thread does not
    fit small limits (measured: 5M rows under 64MB, 2 threads, failed to allocate one), so a
    sixteenth of the limit, between 4 and 32 MiB."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]+)\s*", memory_limit)
    if match is None or match.group(2).lower() not in _UNITS:
        return CSV_BUFFER_MAX
    limit = float(match.group(1)) * _UNITS[match.group(2).lower()]
    return int(min(CSV_BUFFER_MAX, max(CSV_BUFFER_MIN, limit // 16)))


@dataclass
class CsvLayout:
    ref: FileRef
    local: Path  # the file DuckDB reads (an archive member extracted)
    columns: list[str]  # the header's (or the format's) column names, all read as text
    delimiter: str
    quoting: bool
    skip: int  # header lines
    buffer_size: int = CSV_BUFFER_MAX  # bytes the CSV reader reads at once (per thread)


def _local_file(con, ref: FileRef) -> Path:
    """A path DuckDB can read: the file itself, or a zip member extracted (streamed) into the
    scratch directory (gzip'd files DuckDB reads itself)."""
    from components.ingest.engines.duckdb_engine import scratch_path

    if ref.member is None:
        return ref.path
    name = Path(ref.member).name
    name = name[: -len(".gz")] if name.endswith(".gz") else name  # ref.open() gunzips it
    target = scratch_path(con) / ("member-" + name)
    with ref.open() as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return target


def _read_csv_sql(layout: CsvLayout) -> str:
    """DuckDB's read_csv of ``layout``: every column as text, no sniffing, strict."""
    columns = ", ".join(f"'c{k}': 'VARCHAR'" for k in range(len(layout.columns)))
    quote = "'\"', escape='\"'" if layout.quoting else "'', escape=''"
    path = str(layout.local).replace("'", "''")
    delimiter = layout.delimiter.replace("'", "''")
    compression = "gzip" if layout.local.name.endswith(".gz") else "none"
    return (
        f"read_csv('{path}', columns={{{columns}}}, header=false, skip={layout.skip}, "
        f"delim='{delimiter}', quote={quote}, auto_detect=false, strict_mode=true, "
        f"null_padding=false, ignore_errors=false, compression='{compression}', "
        f"encoding='utf-8', buffer_size={layout.buffer_size})"
    )


def _load_csv(
    con,
    layout: CsvLayout,
    roles: dict[str, str],
    checks: list[Check],
    typed: Callable[[dict, dict], dict[str, str]],
    bad: BadRows,
) -> tuple[int, int]:
    """Load the CSV into table ``scan`` (typed columns, ``status``) in file order; record its
    malformed rows in ``bad``; return (rows read, rows parsed). ``roles``: role → the raw text's
    column (c0…); ``typed``: see ``_classified_sql``."""
    import duckdb

    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    layout.buffer_size = csv_buffer_size(str(limit))
    query = _classified_sql(_read_csv_sql(layout), roles, checks, typed)
    con.execute("SET preserve_insertion_order = true")  # rowid = the data row's number
    try:
        con.execute(f"CREATE TABLE scan AS {query}")
    except duckdb.Error as exc:
        raise _fallback_or_raise(exc, f"{layout.ref.name}: DuckDB's CSV reader refuses it") from exc
    finally:
        con.execute("SET preserve_insertion_order = false")
    summary = con.execute(
        f"SELECT count(*) FILTER (WHERE status <> {BLANK}), "
        f"count(*) FILTER (WHERE status = 0), "
        f"count(*) FILTER (WHERE status & {UNCERTAIN} <> 0 AND status <> {BLANK}), "
        f"min(rowid) FILTER (WHERE status & {UNCERTAIN} <> 0 AND status <> {BLANK}) "
        "FROM scan"
    ).fetchall()[0]
    rows_read, n_parsed, n_unsure, first_unsure = (int(v or 0) for v in summary)
    if n_unsure:
        line = _physical_lines(layout, [first_unsure])[0]
        raise Fallback(
            f"{layout.ref.name}:{line}: {n_unsure} row(s) from here on hold a value whose reading "
            "only pyarrow's cast decides (or a line break)"
        )
    n_bad = rows_read - n_parsed
    if n_bad:
        _record_bad_rows(con, layout, roles, checks, n_bad, bad)
    return rows_read, n_parsed


def _record_bad_rows(con, layout, roles, checks, n_bad, bad: BadRows) -> None:
    """Name the first malformed rows as the reader does: their values read again (the file's
    first rows with a failing status, in order), their physical lines counted in the file."""
    rowids = [
        int(r[0])
        for r in con.execute(
            f"SELECT rowid FROM scan WHERE status BETWEEN 1 AND {UNCERTAIN - 1} "
            f"ORDER BY rowid LIMIT {MAX_EXAMPLES}"
        ).fetchall()
    ]
    query = _classified_sql(_read_csv_sql(layout), roles, checks, lambda k, s: dict(roles))
    con.execute("SET preserve_insertion_order = true")
    try:
        rows = con.execute(
            f"SELECT * EXCLUDE (status) FROM ({query}) "
            f"WHERE status BETWEEN 1 AND {UNCERTAIN - 1} LIMIT {MAX_EXAMPLES}"
        ).fetchall()
    finally:
        con.execute("SET preserve_insertion_order = false")
    lines = _physical_lines(layout, rowids)
    names = list(roles)
    for line, row in zip(lines, rows, strict=True):
        values = dict(zip(names, row, strict=False))
        check = next((c for c in checks if c.is_bad(values[c.name])), None)
        if check is None:  # the SQL and the Python rule disagree: let the reader name it
            raise Fallback(f"{layout.ref.name}:{line}: a malformed row this module cannot name")
        bad.add(layout.ref.name, line, check.reason(values[check.name]))
    bad.count += n_bad - len(rows)


def _physical_lines(layout: CsvLayout, rowids: list[int]) -> list[int]:
    """The 1-based line numbers of data rows ``rowids`` (DuckDB's: after the header, empty
    lines not counted). A field holding a line break never gets here (UNCERTAIN)."""
    wanted = sorted(set(rowids))
    found: dict[int, int] = {}
    line = 0  # lines seen
    data_row = -1
    tail = b""
    with layout.ref.open() as handle:
        while wanted and len(found) < len(wanted):
            chunk = handle.read(16 << 20)
            if not chunk:
                pieces = [tail] if tail else []
                tail = b""
            else:
                pieces = (tail + chunk).split(b"\n")
                tail = pieces.pop()
            for piece in pieces:
                line += 1
                if line <= layout.skip or piece in (b"", b"\r"):
                    continue
                data_row += 1
                if data_row in wanted:
                    found[data_row] = line
                    if len(found) == len(wanted):
                        break
            if not chunk:
                break
    return [found.get(r, 0) for r in rowids]


def _scan_movielens(con, path: Path, options: dict) -> Scan:
    ratings = find_input(path, movielens.RATINGS_NAMES, movielens.NOT_FOUND)
    layout_name = movielens._layout(ratings)
    if layout_name == "ratings.csv":
        header = [h.lower() for h in header_fields(ratings)]
        if header != movielens.RATINGS_HEADER:
            raise InputError(
                f"{ratings.name}:1: expected the header userId,movieId,rating,timestamp, "
                f"found {','.join(header_fields(ratings))[:100]!r}"
            )
    delimiter = {"ratings.csv": ",", "u.data": "\t", "ratings.dat": "::"}[layout_name]
    layout = CsvLayout(
        ref=ratings,
        local=_local_file(con, ratings),
        columns=list(movielens.COLUMNS),
        delimiter=delimiter,
        quoting=layout_name == "ratings.csv",
        skip=1 if layout_name == "ratings.csv" else 0,
    )
    roles = {name: f"c{k}" for k, name in enumerate(movielens.COLUMNS)}
    checks = [  # to_numeric's order: the columns, then the ids
        Check(roles["rating"], "rating", "float"),
        Check(roles["timestamp"], "timestamp", "int"),
        Check(roles["user_id"], "user_id", "int", kind_word="id"),
        Check(roles["item_id"], "item_id", "int", kind_word="id"),
    ]

    def typed(klass: dict, seconds: dict) -> dict[str, str]:
        return {
            "user_id": roles["user_id"],
            "item_id": roles["item_id"],
            "timestamp": f"CASE WHEN {klass['timestamp']} = 0 "
            f"THEN TRY_CAST({roles['timestamp']} AS BIGINT) END",
            "rating": f"CASE WHEN {klass['rating']} = 0 THEN TRY_CAST({roles['rating']} AS DOUBLE) END",
        }

    bad = BadRows()
    rows_read, n_parsed = _load_csv(con, layout, roles, checks, typed, bad)
    items_ref = items_file(options, ratings, [movielens.ITEMS_NAMES[layout_name]])
    if items_ref is None:
        raise InputError(
            f"{ratings.name}: no MovieLens items file {movielens.ITEMS_NAMES[layout_name]} next "
            f"to it (genres are the domains); pass its location with --items"
        )
    items = movielens._read_items(items_ref, ratings)
    _define_raw(con)
    raw = raw_data(
        RAW_INTERACTIONS_SCHEMA.empty_table(),
        items,
        rows_read=rows_read,
        bad=bad,
        files=[ratings, items_ref],
        items_source=items_ref,
    )
    return Scan(raw=raw, n_parsed=n_parsed, has_ratings=n_parsed > 0)


def _define_raw(con, pos: str = "rowid") -> None:
    """The engine's input: the parsed rows of ``scan``, ``pos`` their file order."""
    con.execute(
        "CREATE VIEW raw AS SELECT user_id, item_id, timestamp, rating, "
        f"{pos} AS pos FROM scan WHERE status = 0"
    )
