"""Domain columns → clean domain lists (``"A|B"`` strings or lists of names), and one domain list
per item from per-interaction values (a domain column of the events table)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError
from components.ingest.sources.output import raw_items

_SEP = "\x1f"  # joins a row's domain names into one grouping key


def split_domains(values: pa.Array | pa.ChunkedArray, sep: str) -> pa.Array:
    """``"A|B"`` strings → ``["A", "B"]`` lists (trimmed, empty parts and nulls dropped)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    parts = (
        pc.split_pattern(pc.fill_null(values.cast(pa.string()), ""), sep)
        if sep
        else (pa.ListArray.from_arrays(np.arange(len(values) + 1, dtype=np.int32), values))
    )
    return clean_domain_lists(parts)


def clean_domain_lists(lists: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Trim every domain name and drop empty ones; null lists become []."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    lists = pc.fill_null(lists, pa.scalar([], lists.type))
    flat = pc.utf8_trim_whitespace(pc.fill_null(pc.list_flatten(lists), ""))
    parent = pc.list_parent_indices(lists).to_numpy()
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    counts = np.bincount(parent[keep], minlength=len(lists))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(pa.array(keep)))


def domains_per_item(item_ids: pa.Array, domain_lists: pa.Array) -> tuple[pa.Table, int, str]:
    """One domain list per item from per-interaction values (a domain column of the events).

    Each item keeps its most common non-empty value (ties: the one seen first); returns the raw
    items table, the number of items whose rows disagree, and an example of such an item.
    """
    rows = np.arange(len(domain_lists), dtype=np.int64)
    return domains_per_item_counted(item_ids, domain_lists, np.ones_like(rows), rows)


def domains_per_item_counted(
    item_ids: pa.Array, domain_lists: pa.Array, counts: np.ndarray, first_rows: np.ndarray
) -> tuple[pa.Table, int, str]:
    """``domains_per_item`` of rows already counted: each entry stands for ``counts[k]`` rows
    of item ``item_ids[k]`` with domains ``domain_lists[k]``, the first of them at row
    ``first_rows[k]`` (e.g. the (item, value) groups of an out-of-core scan)."""
    keys = pc.fill_null(pc.binary_join(domain_lists, _SEP), "")
    table = pa.table(
        {
            "item": item_ids,
            "key": keys,
            "n": pa.array(np.asarray(counts, dtype=np.int64)),
            "row": pa.array(np.asarray(first_rows, dtype=np.int64)),
        }
    ).filter(pc.greater(pc.utf8_length(keys), 0))
    if table.num_rows == 0:
        return raw_items(pa.array([], pa.string()), pa.array([], pa.list_(pa.string()))), 0, ""
    grouped = table.group_by(["item", "key"]).aggregate([("n", "sum"), ("row", "min")])
    # the groups in order of first appearance (items then get codes in that order)
    grouped = grouped.take(pc.sort_indices(grouped.column("row_min")))
    codes = pc.dictionary_encode(grouped.column("item")).combine_chunks().indices.to_numpy()
    count = grouped.column("n_sum").to_numpy()
    first_row = grouped.column("row_min").to_numpy()
    order = np.lexsort((first_row, -count, codes))
    best = order[np.r_[True, codes[order][1:] != codes[order][:-1]]]
    values_per_item = np.bincount(codes)
    conflicting = int((values_per_item > 1).sum())
    example = ""
    if conflicting:
        rows = np.flatnonzero(values_per_item[codes] > 1)
        code = codes[rows[np.argmin(first_row[rows])]]
        members = np.flatnonzero(codes == code)
        members = members[np.lexsort((first_row[members], -count[members]))]
        shown = ", ".join(
            f"{grouped.column('key')[int(k)].as_py().replace(_SEP, '|')!r} ×{int(count[k])}"
            for k in members[:4]
        )
        example = f"item {grouped.column('item')[int(members[0])].as_py()!r}: {shown}"
    items = raw_items(
        grouped.column("item").take(pa.array(best)),
        pc.split_pattern(grouped.column("key").take(pa.array(best)), _SEP),
    )
    return items, conflicting, example


def as_domain_lists(column: pa.Array | pa.ChunkedArray, sep: str, where: str) -> pa.Array:
    """A domain column (a list of names, or ``sep``-separated names) as clean string lists."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        inner = kind.value_type
        if pa.types.is_dictionary(inner):
            inner = inner.value_type
        if not _is_scalar_name(inner):
            raise ConfigError(f"{where}: a list of {kind.value_type} values; expected names")
        return clean_domain_lists(pc.cast(column, pa.list_(pa.string())))
    if not _is_scalar_name(kind):
        raise ConfigError(f"{where}: values of type {kind}; expected names or lists of names")
    return split_domains(column, sep)


def _is_scalar_name(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_null(kind)
        or pa.types.is_boolean(kind)
    )
