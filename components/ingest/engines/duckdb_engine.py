"""The out-of-core engine (``--engine duckdb``): the arrow engine's processing as DuckDB SQL.

Two ways in (both run ``reduce_sql`` on a relation ``raw(user_id, item_id, timestamp, rating,
pos)``, ``pos`` the file order):

- ``reduce``: a reader's Arrow table, registered (scanned in place, not copied), the result
  fetched into numpy arrays (``base.Engine``);
- ``components.ingest.native``: for the formats where size matters, DuckDB reads the raw file
  itself into a table and the sorted result is streamed into the output files, so that
  nothing of the size of the input lives outside DuckDB's buffer manager.

Every intermediate is a table of DuckDB's buffer manager, which spills to a scratch directory
next to the output (or in $TMPDIR), as do joins, aggregations, k-core passes and the final sort,
past ``duckdb_memory_limit``.
``preserve_insertion_order`` is off: every order that matters is an explicit ORDER BY on the
stable-sort keys (user, timestamp, original row number), so the result equals the arrow
engine's (tests/test_ingest_engines.py).

How each step matches the arrow engine:

- natural order of ids: integer order when every distinct id (after the rating threshold)
  matches ``-?[0-9]{1,18}``, else byte order; ids of equal integer value ("01", "1") rank by
  first appearance (the arrow engine's stable sort of the dictionary, which is in appearance
  order);
- exact repeats: one row per (user, item, timestamp), the first in file order (min pos);
- k-core: rounds removing, at once, the users and the items under their thresholds, until none
  is (the k-core is the unique fixed point, whatever the order of removal);
- leave-one-out: per user, the last by (timestamp, row) is test, the one before valid;
- global time: the cut timestamps at the positions ``np.quantile(method="higher")`` picks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from components.ingest.engines.base import (
    Reduced,
    check_kcore_left,
    check_rating_left,
    global_time_cut_positions,
)
from components.ingest.options import IngestOptions

log = logging.getLogger("dwlrec.ingest")

INTEGER_ID = "-?[0-9]{1,18}"  # RE2, matched in full: the arrow engine's ^-?[0-9]{1,18}$


@dataclass
class SqlReduced:
    """``reduce_sql``'s result: the counts, the kept items' ids and the sorted interactions as
    a DuckDB relation (user_idx INTEGER, item_idx INTEGER, timestamp BIGINT, label TINYINT:
    0 train, 1 valid, 2 test), not yet executed."""

    counts: dict[str, int]  # removed_by_rating_threshold, duplicates_removed, removed_by_kcore
    n_users: int
    n_interactions: int
    item_ids: pa.Array  # string; position k holds the id of item_idx k + 1
    result: Any  # duckdb.DuckDBPyRelation
    spilled: int = 0  # the most bytes of temporary files seen so far


def reduce(
    table: pa.Table, options: IngestOptions, min_user: int, scratch: Path | None = None
) -> Reduced:
    """Rating threshold → exact-repeat dedup → iterative k-core → dense re-index → split."""
    with connect(options, scratch) as con:
        # the original row number: the last key of the stable sort (file order)
        raw = table.select(["user_id", "item_id", "timestamp", "rating"]).append_column(
            "pos", pa.array(np.arange(table.num_rows, dtype=np.int64))
        )
        con.register("raw", raw)
        sql = reduce_sql(
            con, options, min_user, table.num_rows, release=lambda: con.unregister("raw")
        )
        columns = _fetch_columns(sql.result, sql.n_interactions)
        log_spilled(con, sql, options)
        return Reduced(**columns, item_ids=sql.item_ids, n_users=sql.n_users, counts=sql.counts)


@contextlib.contextmanager
def connect(options: IngestOptions, scratch: Path | None) -> Iterator[Any]:
    """An in-memory DuckDB connection with the engine's settings, spilling into a fresh
    scratch directory that is removed on exit."""
    import duckdb

    workdir = _scratch_dir(scratch)
    # an in-memory database: its tables are buffer-managed too and spill to temp_directory
    # (measured: faster than a database file, which writes every table through its WAL)
    con = duckdb.connect(":memory:", config=_settings(options, workdir))
    try:
        yield con
    finally:
        con.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _scratch_dir(scratch: Path | None) -> Path:
    """A fresh directory for the spill files: next to the output, named like
    a staging dir (``.NAME.tmp-PID-…``) so that a killed run's is cleaned by the next write."""
    if scratch is not None and scratch.parent.is_dir() and os.access(scratch.parent, os.W_OK):
        prefix = f".{scratch.name}.tmp-{os.getpid()}-duckdb-"
        return Path(tempfile.mkdtemp(dir=scratch.parent, prefix=prefix))
    return Path(tempfile.mkdtemp(prefix="dwlrec-duckdb-"))


Settings = dict[str, str | bool | int | float | list[str]]  # duckdb.connect's config


def _settings(options: IngestOptions, workdir: Path) -> Settings:
    settings: Settings = {
        "memory_limit": options.duckdb_memory_limit.strip(),
        "temp_directory": str(workdir / "spill"),
        "preserve_insertion_order": False,
    }
    if options.duckdb_threads:
        settings["threads"] = options.duckdb_threads
    return settings


def scratch_path(con) -> Path:
    """The scratch directory of ``con`` (the parent of its spill directory): room for files
    that must live on disk while the connection does, e.g. an archive member extracted."""
    rows = con.execute("SELECT current_setting('temp_directory')").fetchall()
    return Path(str(rows[0][0])).parent


def reduce_sql(
    con, options: IngestOptions, min_user: int, n_parsed: int, release: Callable[[], None]
) -> SqlReduced:
    """The processing of relation ``raw`` (user_id VARCHAR, item_id VARCHAR, timestamp BIGINT,
    rating DOUBLE, pos BIGINT: file order; ``n_parsed`` rows) into DuckDB tables; ``release``
    drops ``raw`` once it is no longer needed. The result relation is not executed yet."""
    counts = {"removed_by_rating_threshold": 0}
    where, params = "", []
    if options.rating_threshold is not None:
        # NaN sorts above every number in DuckDB (not in Arrow): exclude it explicitly
        where = "WHERE rating >= ? AND NOT isnan(rating)"
        params = [float(options.rating_threshold)]

    # the ids' dictionaries with their natural-order codes
    for side in ("user", "item"):
        con.execute(
            f"CREATE TABLE {side}_ids AS SELECT {side}_id AS id, min(pos) AS first_pos, "
            f"count(*) AS n FROM raw {where} GROUP BY {side}_id",
            params,
        )
    n_kept = _scalar(con, "SELECT coalesce(sum(n), 0) FROM user_ids")
    if options.rating_threshold is not None:
        check_rating_left(n_kept, options.rating_threshold)
        counts["removed_by_rating_threshold"] = n_parsed - n_kept
    for side in ("user", "item"):
        integers = _scalar(
            con,
            f"SELECT count(*) > 0 AND bool_and(regexp_full_match(id, '{INTEGER_ID}')) "
            f"FROM {side}_ids",
        )
        key = "CAST(id AS BIGINT), first_pos" if integers else "id"
        con.execute(
            f"CREATE TABLE {side}_codes AS SELECT id, "
            f"(row_number() OVER (ORDER BY {key}) - 1)::INTEGER AS code FROM {side}_ids"
        )
        con.execute(f"DROP TABLE {side}_ids")

    # coded interactions, exact repeats removed (the first in file order stays)
    # (two statements: the joins' and the aggregate's memory are then never needed at once)
    con.execute(
        "CREATE TABLE coded AS SELECT u.code AS u, i.code AS i, r.timestamp AS t, r.pos "
        f"FROM (SELECT * FROM raw {where}) r "
        "JOIN user_codes u ON r.user_id = u.id JOIN item_codes i ON r.item_id = i.id",
        params,
    )
    release()
    con.execute("DROP TABLE user_codes")  # item_codes stays: the kept items' ids
    con.execute("CREATE TABLE cur AS SELECT u, i, t, min(pos) AS pos FROM coded GROUP BY u, i, t")
    con.execute("DROP TABLE coded")
    n_before_kcore = _scalar(con, "SELECT count(*) FROM cur")
    spilled = _spilled_bytes(con)
    counts["duplicates_removed"] = n_kept - n_before_kcore

    _kcore(con, min_user, options.min_item_interactions)
    n_left = _scalar(con, "SELECT count(*) FROM cur")
    spilled = max(spilled, _spilled_bytes(con))
    counts["removed_by_kcore"] = n_before_kcore - n_left
    check_kcore_left(n_left, n_before_kcore, min_user, options)

    # dense re-index in code order: users 0..U-1, items 1..I
    con.execute(
        "CREATE TABLE kept_users AS SELECT u, (row_number() OVER (ORDER BY u) - 1)::INTEGER "
        "AS user_idx FROM (SELECT DISTINCT u FROM cur)"
    )
    con.execute(
        "CREATE TABLE kept_items AS SELECT i, row_number() OVER (ORDER BY i)::INTEGER "
        "AS item_idx FROM (SELECT DISTINCT i FROM cur)"
    )
    item_ids = con.sql(
        "SELECT c.id FROM kept_items k JOIN item_codes c ON k.i = c.code ORDER BY k.item_idx"
    ).to_arrow_table()
    n_users = _scalar(con, "SELECT count(*) FROM kept_users")

    result = con.sql(
        "SELECT k.user_idx, m.item_idx, c.t AS timestamp, "
        f"({_label_sql(con, options, n_left)})::TINYINT AS label "
        "FROM cur c JOIN kept_users k ON c.u = k.u JOIN kept_items m ON c.i = m.i "
        "ORDER BY k.user_idx, c.t, c.pos"
    )
    return SqlReduced(
        counts=counts,
        n_users=n_users,
        n_interactions=n_left,
        item_ids=item_ids.column(0).combine_chunks().cast(pa.string()),
        result=result,
        spilled=spilled,
    )


def log_spilled(con, sql: SqlReduced, options: IngestOptions) -> int:
    """Log (and return) the most bytes of temporary files seen (tables offloaded to disk)."""
    sql.spilled = max(sql.spilled, _spilled_bytes(con))
    log.info(
        "duckdb engine: at most %.1f MB of tables spilled to disk (--duckdb-memory-limit %s)",
        sql.spilled / 2**20,
        options.duckdb_memory_limit,
    )
    return sql.spilled


OUTPUT_COLUMNS = {
    "user_idx": np.int32,
    "item_idx": np.int32,
    "timestamp": np.int64,
    "labels": np.int8,
}


def _fetch_columns(result, n: int) -> dict[str, np.ndarray]:
    """The sorted result streamed batch by batch into numpy arrays allocated once: the only
    copy of the output in this process (not an Arrow table and then numpy copies of it)."""
    columns = {name: np.empty(n, dtype) for name, dtype in OUTPUT_COLUMNS.items()}
    at = 0
    for batch in result.to_arrow_reader(batch_size=1 << 20):
        size = batch.num_rows
        for k, array in enumerate(columns.values()):
            array[at : at + size] = batch.column(k).to_numpy(zero_copy_only=False)
        at += size
    if at != n:
        raise RuntimeError(f"duckdb engine: fetched {at} interactions, expected {n}")
    return columns


def _kcore(con, min_user: int, min_item: int) -> None:
    """Drop, round after round, the interactions of every user and item under its threshold
    (counted on what the previous round kept) until a round finds none.

    Each round rewrites ``cur`` without them (an anti join) rather than DELETE, whose delete
    markers stay pinned in memory (measured: 41 MB for 5M rows, past a 64MB limit)."""
    rounds = 0
    while True:
        con.execute(
            "CREATE OR REPLACE TABLE low_users AS SELECT u FROM cur GROUP BY u HAVING count(*) < ?",
            [min_user],
        )
        con.execute(
            "CREATE OR REPLACE TABLE low_items AS SELECT i FROM cur GROUP BY i HAVING count(*) < ?",
            [min_item],
        )
        low = _scalar(
            con, "SELECT (SELECT count(*) FROM low_users) + (SELECT count(*) FROM low_items)"
        )
        if not low:
            break
        rounds += 1
        con.execute(
            "CREATE TABLE kept AS SELECT c.* FROM cur c "
            "ANTI JOIN low_users USING (u) ANTI JOIN low_items USING (i)"
        )
        con.execute("DROP TABLE cur")
        con.execute("ALTER TABLE kept RENAME TO cur")
    log.info("duckdb engine: k-core converged after %d round(s) of removals", rounds)


def _label_sql(con, options: IngestOptions, n: int) -> str:
    """The split label (0 train, 1 valid, 2 test) of a row of ``cur c`` as SQL."""
    if options.split == "leave-one-out":
        # every kept user has >= 3 interactions, so rows 1 and 2 are a test and a valid one
        return (
            "CASE row_number() OVER (PARTITION BY c.u ORDER BY c.t DESC, c.pos DESC) "
            "WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE 0 END"
        )
    valid_at, test_at = global_time_cut_positions(n, options)
    valid_from, test_from = (
        _scalar(con, f"SELECT t FROM cur ORDER BY t LIMIT 1 OFFSET {position}")
        for position in (valid_at, test_at)
    )
    return f"CASE WHEN c.t >= {test_from} THEN 2 WHEN c.t >= {valid_from} THEN 1 ELSE 0 END"


def _spilled_bytes(con) -> int:
    """Bytes of DuckDB's temporary files now (tables offloaded past the memory limit)."""
    return _scalar(con, "SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()")


def _scalar(con, sql: str, params: list | None = None) -> int:
    # fetch every row: DuckDB 2 refuses new work while a result is half read
    rows = con.execute(sql, params or []).fetchall()
    return int(rows[0][0])
