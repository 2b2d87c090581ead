"""Any interactions table: CSV (optionally .gz) or Parquet with named columns.

Interactions: ``--user-col`` (default ``user_id``), ``--item-col`` (``item_id``), ``--time-col``
(``timestamp``: integer/float seconds, an ISO date-time string, or a Parquet timestamp/date) and
optionally ``--rating-col`` (``rating``; a missing column means no ratings). Items (optional):
``--items`` or ``items.{parquet,csv,tsv}`` next to the interactions, with ``--item-id-col``
(``item_id``) and ``--domain-col`` (``domains``) holding a list or ``--domain-sep``-separated
names (default ``|``). CSV delimiter: ``--delimiter`` (default ``,``; tab for .tsv).

Without an items table, the domain column is read from the interactions table itself (e.g. a
ratings table with a ``category`` column repeated on every row): one value per item, the most
common among its rows; items whose rows disagree are counted (``items_with_conflicting_domains``)
and reported. An explicit ``--domain-col`` that neither table has is an error.

Rows with an empty user or item id, a NaN/inf rating or a timestamp that is not a time (or lies
beyond int64) are malformed: skipped and counted with their line (Parquet: row) number.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.errors import ConfigError, InputError
from components.ingest.raw import RawData
from components.ingest.sources.bad_rows import MAX_EXAMPLES, BadRows
from components.ingest.sources.delimited import header_fields, read_delimited
from components.ingest.sources.domain_lists import as_domain_lists, domains_per_item
from components.ingest.sources.files import FileRef, find_input, items_file
from components.ingest.sources.numeric import (
    FLOAT_PATTERN,
    INT64_LIMIT,
    SECONDS,
    parse_timestamps,
    to_numeric,
)
from components.ingest.sources.output import raw_data, raw_items

log = logging.getLogger("dwlrec.ingest")

INTERACTION_NAMES = ("interactions.parquet", "interactions.csv", "interactions.tsv")
ITEMS_NAMES = ("items.parquet", "items.csv", "items.tsv")
NOT_FOUND = (  # --input has no such file: the InputError says what the source reads
    f"no interactions table found; expected one of {', '.join(INTERACTION_NAMES)} (CSV "
    f"optionally .gz) and optionally {', '.join(ITEMS_NAMES)}, or pass the table file "
    f"itself as --input"
)
DEFAULT_DOMAIN_COL = "domains"


def read(path: Path, options: dict) -> RawData:
    """Read an interactions table (+ optional items table) from ``path`` (file or directory)."""
    ref = find_input(path, INTERACTION_NAMES, NOT_FOUND)
    columns = {
        "user_id": options.get("user_col") or "user_id",
        "item_id": options.get("item_col") or "item_id",
        "timestamp": options.get("time_col") or "timestamp",
        "rating": options.get("rating_col") or "rating",
    }
    items_ref = items_file(options, ref, ITEMS_NAMES)
    if items_ref is not None and items_ref.path == ref.path and items_ref.member == ref.member:
        items_ref = None
    if items_ref is None:  # the domains, if any, are a column of the interactions table
        columns["domain"] = options.get("domain_col") or DEFAULT_DOMAIN_COL
    bad = BadRows()
    if _is_parquet(ref):
        table, rows_read = _read_parquet(ref, columns, bad, options)
    else:
        table, rows_read = _read_csv(ref, columns, bad, options)

    counts: dict[str, int] = {}
    items, items_source = None, None
    if items_ref is not None:
        items, items_source = _read_items(items_ref, options), items_ref.name
    elif "domain" in table.column_names:
        where = f"{ref.name}: column {columns['domain']!r} (--domain-col)"
        lists = as_domain_lists(table.column("domain"), options.get("domain_sep", "|"), where)
        items, conflicting, example = domains_per_item(
            table.column("item_id").combine_chunks(), lists
        )
        items_source = f"{ref.name} (column {columns['domain']!r})"
        counts["items_with_conflicting_domains"] = conflicting
        warn_conflicting_domains(ref, columns["domain"], conflicting, items.num_rows, example)
    return raw_data(
        table,
        items,
        rows_read=rows_read,
        bad=bad,
        files=[ref, items_ref],
        items_source=items_source,
        counts=counts,
    )


def warn_conflicting_domains(
    ref: FileRef, column: str, conflicting: int, n_items: int, example: str
) -> None:
    """The log line for items whose domain column differs across their rows (the in-memory
    and the out-of-core readers say it alike)."""
    if conflicting:
        log.warning(
            "%s: %d of %d items have conflicting %r values across their rows (%s); each "
            "item keeps its most common value",
            ref.name,
            conflicting,
            n_items,
            column,
            example,
        )


def _is_parquet(ref: FileRef) -> bool:
    return ref.basename.endswith((".parquet", ".pq"))


def _delimiter(ref: FileRef, options: dict) -> str:
    return options.get("delimiter") or ("\t" if ref.basename.endswith(".tsv") else ",")


def _require_columns(ref: FileRef, present: list[str], wanted: dict[str, str], options: dict):
    flags = {
        "user_id": "--user-col",
        "item_id": "--item-col",
        "timestamp": "--time-col",
        "rating": "--rating-col",
        "domain": "--domain-col",
    }
    for key, column in wanted.items():
        if column in present:
            continue
        if key == "rating" and not options.get("rating_col"):
            continue  # no rating column: implicit feedback
        if key == "domain" and not options.get("domain_col"):
            continue  # no domain column: every item in (none)
        where = " and no items table (--items, or items.* next to it)" if key == "domain" else ""
        raise ConfigError(
            f"{ref.name}: no column {column!r} ({flags[key]}){where}; the table has {present}"
        )


def _read_csv(ref: FileRef, columns: dict, bad: BadRows, options: dict):
    delimiter = _delimiter(ref, options)
    header = header_fields(ref, delimiter)
    _require_columns(ref, header, columns, options)
    wanted = {k: c for k, c in columns.items() if c in header}
    if len(set(wanted.values())) != len(wanted):
        raise ConfigError(f"{ref.name}: the same column is used for two roles: {wanted}")
    data = read_delimited(
        ref, header, bad, delimiter=delimiter, skip_rows=1, include=list(wanted.values())
    )
    data.table = data.table.select(list(wanted.values())).rename_columns(list(wanted))
    numeric = {"timestamp": (SECONDS, True)}
    if "rating" in wanted:
        numeric["rating"] = (pa.float64(), False)
    table = to_numeric(data, ref, bad, numeric, nonempty=("user_id", "item_id"))
    return table, data.rows_read


def _read_parquet(ref: FileRef, columns: dict, bad: BadRows, options: dict):
    try:
        table = _read_parquet_file(ref)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{ref.name}: cannot read as Parquet ({exc})") from exc
    _require_columns(ref, table.column_names, columns, options)
    wanted = {k: c for k, c in columns.items() if c in table.column_names}
    table = table.select(list(wanted.values())).rename_columns(list(wanted))
    rows_read = table.num_rows

    out = {}
    invalid = np.zeros(rows_read, dtype=bool)
    reasons: dict[int, str] = {}
    for key in ("user_id", "item_id"):
        try:
            out[key] = pc.cast(table.column(key), pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            flag = "--user-col" if key == "user_id" else "--item-col"
            raise ConfigError(
                f"{ref.name}: column {wanted[key]!r} ({flag}) of type {table.column(key).type} "
                f"cannot be read as ids ({exc})"
            ) from exc
        _mark_null(out[key], key, "missing", invalid, reasons)
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(out[key])), 0)
        _mark(pc.fill_null(blank, False), f"empty {key}", invalid, reasons)
    out["timestamp"] = _parquet_seconds(table.column("timestamp"), ref, wanted["timestamp"])
    _mark_null(
        out["timestamp"], "timestamp", "missing, unparsable or beyond int64", invalid, reasons
    )
    if "rating" in wanted:
        try:
            out["rating"] = pc.cast(table.column("rating"), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ratings = pc.cast(table.column("rating"), pa.string())
            ok = pc.match_substring_regex(ratings, FLOAT_PATTERN)
            out["rating"] = pc.cast(pc.if_else(ok, ratings, None), pa.float64())
            bad_rating = pc.and_(pc.invert(ok), pc.is_valid(ratings))
            _mark(bad_rating, "non-numeric rating", invalid, reasons)
        not_finite = pc.invert(pc.fill_null(pc.is_finite(out["rating"]), True))
        _mark(not_finite, "non-finite rating (NaN or inf)", invalid, reasons)
    if "domain" in wanted:
        out["domain"] = table.column("domain").combine_chunks()
    result = pa.table(out)
    if invalid.any():
        rows = np.flatnonzero(invalid)
        # Parquet has no lines: the "line" is the 1-based row number
        bad.add_many(ref.name, rows + 1, [reasons.get(int(r), "bad value") for r in rows])
        result = result.filter(pa.array(~invalid))
    return result, rows_read


def _read_parquet_file(ref: FileRef) -> pa.Table:
    if ref.member is None and not ref.path.name.endswith(".gz"):
        return pq.read_table(ref.path)
    with ref.open() as handle:
        return pq.read_table(pa.BufferReader(handle.read()))


def _mark_null(values, key: str, what: str, invalid: np.ndarray, reasons: dict) -> None:
    _mark(values.is_null(), f"{what} {key}", invalid, reasons)


def _mark(mask, reason: str, invalid: np.ndarray, reasons: dict) -> None:
    mask = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    for row in np.flatnonzero(mask & ~invalid)[:MAX_EXAMPLES]:
        reasons[int(row)] = reason
    invalid |= mask


def _parquet_seconds(column: pa.ChunkedArray, ref: FileRef, name: str) -> pa.Array:
    """Seconds as int64; null where missing, not a time, non-finite or beyond int64."""
    column = column.combine_chunks()
    kind = column.type
    if pa.types.is_timestamp(kind):
        return pc.cast(pc.cast(column, pa.timestamp("s", tz=kind.tz), safe=False), pa.int64())
    if pa.types.is_date(kind):
        return pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
    if pa.types.is_integer(kind):
        if pa.types.is_unsigned_integer(kind):
            fits = pc.less_equal(column, pa.scalar(2**63 - 1, kind))
            column = pc.if_else(fits, column, None)
        return pc.cast(column, pa.int64())
    if pa.types.is_floating(kind):
        floors = pc.floor(column)
        fits = pc.fill_null(pc.less(pc.abs(floors), float(INT64_LIMIT)), False)  # NaN: False
        return pc.cast(pc.if_else(fits, floors, None), pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return parse_timestamps(column)
    raise ConfigError(
        f"{ref.name}: column {name!r} (--time-col) has type {kind}; expected a timestamp, date, "
        f"number of seconds or an ISO date-time string"
    )


def _read_items(ref: FileRef, options: dict) -> pa.Table:
    id_col = options.get("item_id_col") or "item_id"
    domain_col = options.get("domain_col") or "domains"
    if _is_parquet(ref):
        table = _read_parquet_file(ref)
        present = table.column_names
    else:
        present = header_fields(ref, _delimiter(ref, options))
    for flag, column in (("--item-id-col", id_col), ("--domain-col", domain_col)):
        if column not in present:
            raise ConfigError(f"{ref.name}: no column {column!r} ({flag}); the table has {present}")
    if not _is_parquet(ref):
        item_bad = BadRows()
        data = read_delimited(
            ref,
            present,
            item_bad,
            delimiter=_delimiter(ref, options),
            skip_rows=1,
            include=[id_col, domain_col],
        )
        table = data.table
        item_bad.log_skipped(ref.name, "item row")
    where = f"{ref.name}: column {domain_col!r} (--domain-col)"
    domains = as_domain_lists(table.column(domain_col), options.get("domain_sep", "|"), where)
    try:
        ids = pc.cast(table.column(id_col), pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ConfigError(
            f"{ref.name}: column {id_col!r} (--item-id-col) cannot be read as ids ({exc})"
        ) from exc
    keep = pc.is_valid(ids)
    return raw_items(ids.filter(keep), domains.filter(keep))
