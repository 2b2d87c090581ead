"""What a reader hands back: its tables as the raw schemas, and the ``RawData`` around them."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from components.ingest.raw import INTEGER_ID, RAW_INTERACTIONS_SCHEMA, RAW_ITEMS_SCHEMA, RawData
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.files import FileRef


def raw_interactions(table: pa.Table) -> pa.Table:
    """``table``'s user_id, item_id, timestamp, rating columns as RAW_INTERACTIONS_SCHEMA; id
    columns that ``to_numeric(..., integer_ids=True)`` left as int64 stay so (raw.INTEGER_ID)."""
    if "rating" not in table.column_names:
        table = table.append_column("rating", pa.nulls(table.num_rows, pa.float64()))
    schema = pa.schema(
        field.with_type(INTEGER_ID)
        if field.name in ("user_id", "item_id")
        and table.schema.field(field.name).type == INTEGER_ID
        else field
        for field in RAW_INTERACTIONS_SCHEMA
    )
    return table.select(schema.names).cast(schema)


def raw_items(item_ids: Sequence[str] | pa.Array, domains: Sequence[list] | pa.Array) -> pa.Table:
    return pa.table({"item_id": item_ids, "domains": domains}, schema=RAW_ITEMS_SCHEMA)


def raw_data(
    interactions: pa.Table,
    items: pa.Table | None,
    *,
    rows_read: int,
    bad: BadRows,
    files: Sequence[FileRef | None],
    items_source: FileRef | str | None = None,
    counts: dict[str, int] | None = None,
    row_unit: str = "rows",
) -> RawData:
    """A reader's ``RawData``: ``interactions`` as RAW_INTERACTIONS_SCHEMA, ``bad``'s count and
    examples, the names of ``files`` that were read (``None`` entries: files not there)."""
    return RawData(
        interactions=raw_interactions(interactions),
        items=items,
        rows_read=rows_read,
        bad_rows=bad.count,
        bad_examples=bad.examples,
        source_files=[ref.name for ref in files if ref is not None],
        counts=dict(counts or {}),
        items_source=items_source.name if isinstance(items_source, FileRef) else items_source,
        row_unit=row_unit,
    )
