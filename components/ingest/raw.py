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

RAW_ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string()),
        pa.field("domains", pa.list_(pa.string())),  # [] or null → "(none)"
    ]
)


@dataclass
class RawData:
    """A source reader's output. Rows are in the files' original order (the stable-sort key)."""

    interactions: pa.Table  # RAW_INTERACTIONS_SCHEMA
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
