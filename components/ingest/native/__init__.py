"""DuckDB reads the raw files itself (``--engine duckdb``, the formats where size matters).

``scan(con, source, path, options)`` loads a source's interaction file into the DuckDB table
``scan`` (buffer-managed: it spills past ``--duckdb-memory-limit``) and defines the view
``raw(user_id, item_id, timestamp, rating, pos)`` the engine's SQL (``duckdb_engine.reduce_sql``)
processes; nothing of the input's size is held in Python. Handled here:

- ``movielens``: ``ratings.csv`` (ML-20M/25M/32M), ``ratings.dat`` (``::``, ML-1M/10M) and
  ``u.data`` (tab, ML-100K), plain, gzip'd or inside an official zip (the member is extracted
  to the scratch directory first); ``movies.*`` / ``u.item`` are small and read as before;
- ``table``: CSV/TSV (plain or gzip'd) and Parquet interaction tables, with ``--items`` or an
  items table next to them, or the domain column of the interactions table itself (grouped in
  DuckDB per item and value; only the distinct pairs reach Python).

The readers' semantics are kept: every value is read as text (Parquet: its own type) and
checked in SQL by the rule of ``sources/numeric.py``; a malformed row is skipped and counted,
and the first five are named ``FILE:LINE: reason`` with the reader's words (their values are
read again, their lines counted in the file: only when there are malformed rows). CSV rows
keep the file's order (``preserve_insertion_order`` is on while the file is loaded, so the
table's ``rowid`` is the data row's number); Parquet rows carry ``file_row_number``.

When a file holds anything whose handling is not certain to be the reader's, ``scan`` returns
None after logging why, and the caller reads the file with the in-memory reader instead (same
output, without the memory bound): a structural CSV problem (a row with the wrong number of
fields, invalid UTF-8 or a legacy latin-1 file, a broken quote, a line DuckDB refuses), a
value the reader's rule leaves to pyarrow's cast (e.g. ``+5`` or ``0x10`` as an integer, a
zoned or fractional ISO time, a date such as ``2021-02-30`` that pyarrow rolls over, leading or
trailing blanks), a field holding a line break, or a column type this module does not map.

Layout: ``checks`` (the value rules in SQL and Python, ``Fallback``), ``csv`` (the CSV loading,
the ``Scan`` result and the MovieLens scan), ``table`` (the generic table source: CSV, Parquet,
the domain column); this module holds the entry points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from components.ingest.native.checks import Check, Fallback
from components.ingest.native.csv import Scan, _scan_movielens, csv_buffer_size
from components.ingest.native.table import _scan_table

__all__ = [
    "SCANNERS",
    "SOURCES",
    "Check",
    "Fallback",
    "Scan",
    "csv_buffer_size",
    "drop_scan",
    "scan",
]

log = logging.getLogger("dwlrec.ingest")

SOURCES = ("movielens", "table")


def scan(con, source: str, path: Path, options: dict) -> Scan | None:
    """Load ``source``'s interaction file at ``path`` into DuckDB; None (logged): read it with
    the in-memory reader instead. Errors the reader raises (missing files, bad headers, unknown
    columns) are raised here with the same words."""
    try:
        return SCANNERS[source](con, path, options)
    except Fallback as why:
        drop_scan(con)
        log.warning(
            "--engine duckdb: %s; reading it with the in-memory reader instead (same output, "
            "but the input is held in memory)",
            why,
        )
        return None


def drop_scan(con) -> None:
    """Free the scanned rows (the engine calls it once it has coded them)."""
    con.execute("DROP VIEW IF EXISTS raw")
    con.execute("DROP TABLE IF EXISTS scan")


SCANNERS: dict[str, Callable[..., Scan]] = {"movielens": _scan_movielens, "table": _scan_table}
