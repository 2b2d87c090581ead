"""What every source reader returns: raw string-keyed tables, before filtering and re-indexing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

RAW_INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("timestamp", pa.int64()),  # seconds, or the position for timestamp-less formats
        pa.field("rating", pa.float64()),  # null when the format has no rating (implicit feedback)
    ]
)
# A reader may hand the id columns over as int64 instead (``to_numeric(..., integer_ids=True)``)
# when every id in the file is a small non-negative integer written in canonical decimal form
# ("7", never "07", "-0", "0x7"; ``sources.numeric.canonical_integers`` decides):
# then distinct strings are distinct integers, so their order and their text are the integers'
# (``str(int)``) and the engines need not hash 20M strings. ``string_ids`` turns them back.
INTEGER_ID = pa.int64()

RAW_ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("domains", pa.list_(pa.string())),  # [] or null → "(none)"
    ]
)


def string_ids(table: pa.Table) -> pa.Table:
    """``table`` with int64 (canonical) id columns cast back to the contract's strings."""
    for name in ("user_id", "item_id"):
        if table.schema.field(name).type == INTEGER_ID:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).cast(pa.string()))
    return table


@dataclass
class RawData:
    """A source reader's output. Rows are in the files' original order (the stable-sort key)."""

    interactions: pa.Table  # RAW_INTERACTIONS_SCHEMA (ids perhaps INTEGER_ID: see there)
    items: pa.Table | None  # RAW_ITEMS_SCHEMA; items missing from it get domain "(none)"
    rows_read: int  # data rows seen in the interaction file(s), malformed ones included
    bad_rows: int = 0  # malformed rows skipped
    bad_examples: list[str] = field(default_factory=list)  # up to 5 "FILE:LINE: reason"
    source_files: list[str] = field(default_factory=list)
    # Integer counts the reader adds to the manifest's ``counts``. Keys ``removed_by_*`` are rows
    # the reader itself removed (e.g. LastFM's repeat taggings of a user-artist pair), so that
    # rows_read - bad_rows - sum(removed_by_*) == the interactions it returns (one row each).
    counts: dict[str, int] = field(default_factory=dict)
    items_source: str | None = None  # where ``items`` came from, for messages (file name)
    row_unit: str = "rows"  # what rows_read counts: "rows", or "lines" holding many interactions
