"""The SASRec / S3-Rec text format: ``user item1 item2 …`` per line, items in time order.

There are no timestamps: an item's timestamp is its position in the user's line (0, 1, 2, …).
**One line per user**: a user id that appears on two lines is an error naming both lines (the
lines' positions would restart and interleave, and the valid/test targets would be wrong);
merge such lines in time order first, or use ``--source table`` with real timestamps.
A file that looks like a ratings table instead (e.g. MovieLens ``u.data``: four numeric
tab-separated columns user, item, rating, timestamp) is refused with a hint to use
``--source movielens`` or ``--source table``.
Domains come from an items CSV with a header: ``item_id`` column (``--item-id-col``) and a domain
column (``--domain-col``, default ``category``) that may hold ``|``-separated lists
(``--domain-sep``). The items file is ``--items``, else ``items.csv`` next to the sequences;
without one every item is in domain ``(none)``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.raw import RawData
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.delimited import header_fields, read_delimited
from components.ingest.sources.domain_lists import split_domains
from components.ingest.sources.files import FileRef, find_input, items_file
from components.ingest.sources.output import raw_data, raw_items

log = logging.getLogger("dwlrec.ingest")

SEQUENCE_NAMES = ("sequences.txt",)
ITEMS_NAMES = ("items.csv",)
NOT_FOUND = (  # --input has no such file: the InputError says what the source reads
    f"no sequences file found; expected {', '.join(SEQUENCE_NAMES)} (optionally .gz; lines "
    f"'user item1 item2 …') and optionally {', '.join(ITEMS_NAMES)}, or pass the sequences "
    f"file itself as --input"
)
_NO_DELIMITER = "\x1e"  # a whole line is one field


def read(path: Path, options: dict) -> RawData:
    """Read ``user item1 item2 …`` lines (+ the items CSV) from ``path`` (file or directory)."""
    sequences = find_input(path, SEQUENCE_NAMES, NOT_FOUND)
    bad = BadRows()
    data = read_delimited(sequences, ["line"], bad, delimiter=_NO_DELIMITER, quoting=False)
    lines = data.table.column("line").combine_chunks()
    _refuse_ratings_table(lines, sequences)
    tokens = pc.utf8_split_whitespace(lines)
    n_tokens = pc.list_value_length(tokens).to_numpy(zero_copy_only=False)
    kept_rows = np.flatnonzero(n_tokens >= 2)
    short = np.flatnonzero(n_tokens < 2)
    if len(short):
        bad.add_many(sequences.name, data.lines(short), ["no items after the user id"] * len(short))
        tokens = tokens.filter(pa.array(n_tokens >= 2))

    users = pc.list_element(tokens, 0)
    _refuse_repeated_users(users, data.lines(kept_rows), sequences)
    item_lists = pc.list_slice(tokens, 1)
    line_of_item = pc.list_parent_indices(item_lists)
    lengths = pc.list_value_length(item_lists).to_numpy()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    position = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
    interactions = pa.table(
        {
            "user_id": users.take(line_of_item),
            "item_id": pc.list_flatten(item_lists),
            "timestamp": pa.array(position, pa.int64()),
        }
    )

    items_ref = items_file(options, sequences, ITEMS_NAMES)
    items = _read_items(items_ref, options) if items_ref else None
    if items_ref is None:
        log.warning(
            "%s: no items.csv next to it and no --items: every item gets domain (none)",
            sequences.name,
        )
    return raw_data(
        interactions,
        items,
        rows_read=data.rows_read,
        bad=bad,
        files=[sequences, items_ref],
        items_source=items_ref,
        row_unit="lines",
    )


def _refuse_repeated_users(users: pa.Array, lines: np.ndarray, ref: FileRef) -> None:
    """A user on two lines is an error naming both (the format is one line per user)."""
    if len(users) == 0:
        return
    codes = pc.dictionary_encode(users).indices.to_numpy()
    order = np.argsort(codes, kind="stable")
    again = np.r_[False, codes[order][1:] == codes[order][:-1]]
    if not again.any():
        return
    repeats = order[again]  # rows whose user already had a line
    row = int(repeats.min())
    first = int(np.flatnonzero(codes == codes[row])[0])
    n_users = len(np.unique(codes[repeats]))
    raise InputError(
        f"{ref.name}:{int(lines[row])}: user {users[row].as_py()!r} already has a line "
        f"({ref.name}:{int(lines[first])}); the sequences format holds one line per user, "
        f"items in time order ({n_users} user(s) on more than one line). Merge each user's "
        f"lines into one, in time order, or use --source table with timestamps"
    )


_RATINGS_LINE = re.compile(
    r"^\s*[0-9]+\s*([\t,;])\s*[0-9]+\s*\1\s*[0-9]+(\.[0-9]+)?\s*\1\s*[0-9]{8,}(\.[0-9]+)?\s*$"
)


def _refuse_ratings_table(lines: pa.Array, ref: FileRef, sample: int = 1000) -> None:
    """Refuse a ratings table (``user item rating timestamp``, e.g. MovieLens u.data).

    Its ratings and timestamps would become items. Recognised when every sampled line has
    exactly four numeric fields separated by tabs (or commas/semicolons), the third a small
    rating (0..10) and the fourth an epoch-like number (>= 8 digits).
    """
    head = [line for line in lines.slice(0, sample).to_pylist() if line.strip()]
    if not head:
        return
    for line in head:
        match = _RATINGS_LINE.match(line)
        if match is None or float(re.split(r"[\t,;]", line)[2]) > 10:
            return
    raise InputError(
        f"{ref.name}:1: looks like a ratings table (user, item, rating, timestamp per line, "
        f"e.g. MovieLens u.data), not the sequences format 'user item1 item2 …': use "
        f"--source movielens (u.data, ratings.dat, ratings.csv) or --source table "
        f"--user-col/--item-col/--time-col; found {head[0][:80]!r}"
    )


def _read_items(ref: FileRef, options: dict) -> pa.Table:
    id_col = options.get("item_id_col") or "item_id"
    domain_col = options.get("domain_col") or "category"
    delimiter = options.get("delimiter") or ("\t" if ref.basename.endswith(".tsv") else ",")
    header = header_fields(ref, delimiter)
    for option, column in (("--item-id-col", id_col), ("--domain-col", domain_col)):
        if column not in header:
            raise ConfigError(
                f"{ref.name}:1: no column {column!r} ({option}); the header has {header}"
            )
    bad = BadRows()
    data = read_delimited(
        ref, header, bad, delimiter=delimiter, skip_rows=1, include=[id_col, domain_col]
    )
    bad.log_skipped(ref.name, "item row")
    table = data.table
    return raw_items(
        pc.utf8_trim_whitespace(table.column(id_col)),
        split_domains(table.column(domain_col), options.get("domain_sep", "|")),
    )
