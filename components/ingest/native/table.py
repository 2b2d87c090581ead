"""The generic ``table`` source's scan: a CSV/TSV (through ``csv``) or Parquet interaction
table (its own column types mapped to the reader's rules), with its items from ``--items``, an
items table next to it, or the interactions' own domain column (grouped in DuckDB).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.errors import ConfigError, InputError
from components.ingest.native.checks import (
    UNCERTAIN,
    Check,
    Fallback,
    _fallback_or_raise,
    _seconds_sql,
)
from components.ingest.native.csv import CsvLayout, Scan, _define_raw, _load_csv, _local_file
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA
from components.ingest.sources import table
from components.ingest.sources.bad_rows import MAX_EXAMPLES, BadRows
from components.ingest.sources.delimited import header_fields
from components.ingest.sources.domain_lists import as_domain_lists, domains_per_item_counted
from components.ingest.sources.files import FileRef, find_input, items_file
from components.ingest.sources.numeric import INT64_LIMIT
from components.ingest.sources.output import raw_data

log = logging.getLogger("dwlrec.ingest")


def _scan_table(con, path: Path, options: dict) -> Scan:
    ref = find_input(path, table.INTERACTION_NAMES, table.NOT_FOUND)
    columns = {
        "user_id": options.get("user_col") or "user_id",
        "item_id": options.get("item_col") or "item_id",
        "timestamp": options.get("time_col") or "timestamp",
        "rating": options.get("rating_col") or "rating",
    }
    items_ref = items_file(options, ref, table.ITEMS_NAMES)
    if items_ref is not None and items_ref.path == ref.path and items_ref.member == ref.member:
        items_ref = None
    if items_ref is None:
        columns["domain"] = options.get("domain_col") or table.DEFAULT_DOMAIN_COL
    bad = BadRows()
    if table._is_parquet(ref):
        rows_read, n_parsed, has_domain = _load_parquet(con, ref, columns, bad, options)
        pos = "pos"
    else:
        rows_read, n_parsed, has_domain = _load_table_csv(con, ref, columns, bad, options)
        pos = "rowid"  # the insertion order: the file's
    has_ratings = bool(
        con.execute("SELECT count(rating) > 0 FROM scan WHERE status = 0").fetchall()[0][0]
    )

    counts: dict[str, int] = {}
    items, items_source = None, None
    if items_ref is not None:
        items, items_source = table._read_items(items_ref, options), items_ref.name
    elif has_domain:
        items, items_source, counts = _domains_from_interactions(con, ref, columns, options, pos)
    _define_raw(con, pos=pos)
    raw = raw_data(
        RAW_INTERACTIONS_SCHEMA.empty_table(),
        items,
        rows_read=rows_read,
        bad=bad,
        files=[ref, items_ref],
        items_source=items_source,
        counts=counts,
    )
    return Scan(raw=raw, n_parsed=n_parsed, has_ratings=has_ratings)


def _load_table_csv(con, ref: FileRef, columns: dict, bad: BadRows, options: dict):
    delimiter = table._delimiter(ref, options)
    header = header_fields(ref, delimiter)
    table._require_columns(ref, header, columns, options)
    wanted = {k: c for k, c in columns.items() if c in header}
    if len(set(wanted.values())) != len(wanted):
        raise ConfigError(f"{ref.name}: the same column is used for two roles: {wanted}")
    if len(set(header)) != len(header):
        raise Fallback(f"{ref.name}: its header repeats a column name")
    layout = CsvLayout(
        ref=ref,
        local=_local_file(con, ref),
        columns=header,
        delimiter=delimiter,
        quoting=True,
        skip=1,
    )
    roles = {role: f"c{header.index(name)}" for role, name in wanted.items()}
    checks = [
        Check(roles["user_id"], "user_id", "name"),
        Check(roles["item_id"], "item_id", "name"),
        Check(roles["timestamp"], "timestamp", "seconds"),
    ]
    if "rating" in roles:
        checks.append(Check(roles["rating"], "rating", "float", required=False))

    def typed(klass: dict, seconds: dict) -> dict[str, str]:
        columns = {
            "user_id": roles["user_id"],
            "item_id": roles["item_id"],
            "timestamp": seconds["timestamp"],
            "rating": (
                f"CASE WHEN {klass['rating']} = 0 THEN TRY_CAST({roles['rating']} AS DOUBLE) END"
                if "rating" in roles
                else "NULL::DOUBLE"
            ),
        }
        if "domain" in roles:
            columns["domain"] = roles["domain"]
        return columns

    rows_read, n_parsed = _load_csv(con, layout, roles, checks, typed, bad)
    return rows_read, n_parsed, "domain" in roles


# Parquet column types → how to read them like table._read_parquet (None: not mapped here)
def _parquet_id_sql(column: str, kind: pa.DataType) -> str | None:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column
    if pa.types.is_dictionary(kind) and pa.types.is_string(kind.value_type):
        return column
    if pa.types.is_integer(kind):
        return f"CAST({column} AS VARCHAR)"
    return None


def _parquet_seconds_sql(column: str, kind: pa.DataType) -> tuple[str, str] | None:
    """(seconds SQL, uncertain SQL) of a time column, ``table._parquet_seconds``'s rule."""
    if pa.types.is_timestamp(kind):
        if kind.unit == "ns":
            return f"epoch_ns({column}) // 1000000000", "false"
        return f"epoch_us({column}) // 1000000", "false"
    if pa.types.is_date(kind):
        return f"({column} - DATE '1970-01-01')::BIGINT * 86400", "false"
    if pa.types.is_unsigned_integer(kind):
        return f"CASE WHEN {column} <= 9223372036854775807 THEN {column}::BIGINT END", "false"
    if pa.types.is_integer(kind):
        return f"{column}::BIGINT", "false"
    if pa.types.is_floating(kind):
        number = f"floor({column})"
        return (
            f"CASE WHEN abs({number}) < {float(INT64_LIMIT)!r} THEN {number}::BIGINT END",
            "false",
        )
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        check = Check(column, "timestamp", "seconds")
        return _seconds_sql(
            column
        ), f"coalesce({check.klass(_seconds_sql(column), lines=False)}, 2) = 2"
    return None


def _load_parquet(con, ref: FileRef, columns: dict, bad: BadRows, options: dict):
    """Table ``scan`` from a Parquet file (its own types, row order from file_row_number);
    returns (rows read, rows parsed, the domain column's type or None)."""
    import duckdb

    if ref.member is not None or ref.path.name.endswith(".gz"):
        raise Fallback(f"{ref.name}: a Parquet file inside an archive or gzip'd")
    try:
        schema = pq.read_schema(ref.path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{ref.name}: cannot read as Parquet ({exc})") from exc
    present = schema.names
    table._require_columns(ref, present, columns, options)
    wanted = {k: c for k, c in columns.items() if c in present}
    if len(set(present)) != len(present):
        raise Fallback(f"{ref.name}: its schema repeats a column name")

    def quoted(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    kinds = {role: schema.field(name).type for role, name in wanted.items()}
    ids: dict[str, str] = {}
    for role in ("user_id", "item_id"):
        sql = _parquet_id_sql(quoted(wanted[role]), kinds[role])
        if sql is None:
            raise Fallback(f"{ref.name}: the {role} column's type {kinds[role]} is not mapped")
        ids[role] = sql
    seconds = _parquet_seconds_sql(quoted(wanted["timestamp"]), kinds["timestamp"])
    if seconds is None:
        raise Fallback(f"{ref.name}: the time column's type {kinds['timestamp']} is not mapped")
    if "rating" in wanted and not (
        pa.types.is_floating(kinds["rating"]) or pa.types.is_integer(kinds["rating"])
    ):
        raise Fallback(f"{ref.name}: the rating column's type {kinds['rating']} is not mapped")
    domain_type = kinds.get("domain")
    if domain_type is not None and not _groupable_domain(domain_type):
        raise Fallback(f"{ref.name}: the domain column's type {domain_type} is not mapped")

    # reasons in table._read_parquet's order; the first that applies names the row
    reasons: list[tuple[str, str]] = []
    for role in ("user_id", "item_id"):
        reasons.append((f"{ids[role]} IS NULL", f"missing {role}"))
        if ids[role] == quoted(wanted[role]):  # text: blank when only whitespace
            name = Check(ids[role], role, "name").klass(lines=False)
            reasons.append((f"({name}) = 1", f"empty {role}"))
    seconds_sql, seconds_unsure = seconds
    reasons.append((f"({seconds_sql}) IS NULL", "missing, unparsable or beyond int64 timestamp"))
    rating = quoted(wanted["rating"]) if "rating" in wanted else "NULL::DOUBLE"
    if "rating" in wanted:
        reasons.append(
            (
                f"{rating} IS NOT NULL AND NOT isfinite({rating}::DOUBLE)",
                "non-finite rating (NaN or inf)",
            )
        )
    unsure = [seconds_unsure]
    for role in ("user_id", "item_id"):
        if ids[role] == quoted(wanted[role]):
            unsure.append(f"coalesce({Check(ids[role], role, 'name').klass(lines=False)}, 2) = 2")
    bits = " | ".join(
        f"(CASE WHEN {cond} THEN {1 << k} ELSE 0 END)" for k, (cond, _) in enumerate(reasons)
    )
    status = f"(({bits}) | (CASE WHEN {' OR '.join(unsure)} THEN {UNCERTAIN} ELSE 0 END))::UTINYINT"
    path = str(ref.path).replace("'", "''")
    domain = f", {quoted(wanted['domain'])} AS domain" if "domain" in wanted else ""
    try:
        con.execute(
            f"CREATE TABLE scan AS SELECT {ids['user_id']} AS user_id, {ids['item_id']} AS item_id, "
            f"({seconds_sql})::BIGINT AS timestamp, {rating}::DOUBLE AS rating{domain}, "
            f"file_row_number AS pos, {status} AS status "
            f"FROM read_parquet('{path}', file_row_number=true)"
        )
    except duckdb.Error as exc:
        raise _fallback_or_raise(exc, f"{ref.name}: DuckDB cannot read it") from exc
    summary = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE status = 0), "
        f"count(*) FILTER (WHERE status & {UNCERTAIN} <> 0) FROM scan"
    ).fetchall()[0]
    rows_read, n_parsed, n_unsure = (int(v or 0) for v in summary)
    if n_unsure:
        raise Fallback(f"{ref.name}: {n_unsure} row(s) hold a value whose reading is not certain")
    if rows_read > n_parsed:
        examples = con.execute(
            f"SELECT pos, status FROM scan WHERE status <> 0 ORDER BY pos LIMIT {MAX_EXAMPLES}"
        ).fetchall()
        for pos, code in examples:
            first_bit = next(k for k in range(len(reasons)) if int(code) & (1 << k))
            bad.add(ref.name, int(pos) + 1, reasons[first_bit][1])  # Parquet: the row number
        bad.count += rows_read - n_parsed - len(examples)
    return rows_read, n_parsed, "domain" in wanted


def _groupable_domain(kind: pa.DataType) -> bool:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)


def _domains_from_interactions(con, ref: FileRef, columns: dict, options: dict, pos: str):
    """``table.read``'s items from the interactions' domain column: grouped by (item, value)
    in DuckDB (count, first row); only the distinct pairs are cleaned and voted on here."""
    grouped = con.sql(
        f"SELECT item_id, domain, count(*) AS n, min({pos}) AS first FROM scan "
        "WHERE status = 0 AND domain IS NOT NULL GROUP BY item_id, domain"
    ).to_arrow_table()
    where = f"{ref.name}: column {columns['domain']!r} (--domain-col)"
    lists = as_domain_lists(grouped.column("domain"), options.get("domain_sep", "|"), where)
    items, conflicting, example = domains_per_item_counted(
        grouped.column("item_id").combine_chunks().cast(pa.string()),
        lists,
        grouped.column("n").to_numpy(),
        grouped.column("first").to_numpy(),
    )
    items_source = f"{ref.name} (column {columns['domain']!r})"
    table.warn_conflicting_domains(ref, columns["domain"], conflicting, items.num_rows, example)
    return items, items_source, {"items_with_conflicting_domains": conflicting}
