"""Delimited text through pyarrow's CSV reader (``read_delimited``, ``header_fields``).

Every column is read as a string; rows with the wrong field count, blank lines and lines that are
not valid UTF-8 (``text.decode_text``'s rule) are skipped, the malformed ones counted in
``BadRows`` with their physical line number. ``numeric.to_numeric`` converts the columns next.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from components.errors import InputError
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.files import FileRef
from components.ingest.sources.text import decode_text

_SEP = "\x1f"  # stands in for multi-character delimiters such as MovieLens' "::"


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
    number (a threaded parse first; the serial one, which knows line numbers, again when the
    file has malformed rows). Text
    is decoded by ``decode_text``'s rule: rows on lines with invalid UTF-8 bytes in an otherwise
    UTF-8 file are malformed too; a legacy latin-1 file is read as latin-1.
    """
    wanted = list(include or column_names)
    payload = ref.read_bytes() if len(delimiter) > 1 else None
    bad_utf8 = np.zeros(0, dtype=np.int64)
    try:
        # threaded first (about 2x faster on 2 cores); its malformed rows carry no line number,
        # so a file that has any is parsed again serially, which knows them
        table, found, invalid_lines = _parse_delimited(
            ref, payload, column_names, wanted, delimiter, skip_rows, quoting, use_threads=True
        )
        if invalid_lines:
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
    first_length = pc.binary_length(table.column(wanted[0]))
    if table.num_rows and pc.min(first_length).as_py() == 0:  # else: no blank row (common)
        blank = pc.equal(first_length, 0)
        for name in wanted[1:]:
            blank = pc.and_(blank, pc.equal(pc.binary_length(table.column(name)), 0))
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


def _parse_delimited(
    ref, payload, column_names, wanted, delimiter, skip_rows, quoting, use_threads=False
):
    """pyarrow's CSV reader over the file (or ``payload`` bytes): (table, bad rows, their lines).

    ``use_threads``: pyarrow parses blocks in parallel (rows stay in file order) but cannot
    number the malformed rows it reports."""
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
        use_threads=use_threads,
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


def header_fields(ref: FileRef, delimiter: str = ",") -> list[str]:
    """The header line's field names (CSV quoting understood; a UTF-8 BOM dropped)."""
    import csv

    line = ref.first_line()
    if len(delimiter) > 1:
        return [f.strip() for f in line.split(delimiter)]
    return [f.strip() for f in next(csv.reader([line], delimiter=delimiter), [])]
