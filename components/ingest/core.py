"""Source-independent processing (SPEC §3): raw tables → the contract's Parquet files.

Order: malformed-row check → rating threshold → de-duplicate exact repeats → iterative k-core →
dense re-index → split (leave-one-out, or global time) → stable sort → item domains (optionally
capped: ``--min-domain-items``, ``--top-domains``) → atomic write + manifest.
The middle (rating threshold … stable sort) is the engine's (``--engine``, components/ingest/
engines/: arrow in memory, duckdb out of core); the checks before it and the domains and counts
after it are shared here, so every engine's output and counts are the same.

The counts add up (the summary line and ``manifest.json`` print the same numbers)::

    rows_parsed - removed_by_rating_threshold - duplicates_removed - removed_by_kcore
        == interactions

and, for sources with one interaction per row, rows_read - bad_rows - (the reader's own
``removed_by_*``, e.g. LastFM's repeat taggings) == rows_parsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.domains import item_domains
from components.ingest.engines import get_engine
from components.ingest.engines.base import LABEL_NAMES
from components.ingest.options import IngestOptions, effective_min_user, options_dict
from components.ingest.raw import INTEGER_ID, RawData, string_ids
from components.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

log = logging.getLogger("dwlrec.ingest")

# IngestOptions is re-exported: ``components.ingest.core.IngestOptions`` (pipelines/validate.py)
__all__ = [
    "IngestOptions",
    "Prepared",
    "Processed",
    "check_bad_rows",
    "finish",
    "prepare",
    "process",
]


@dataclass
class Processed:
    items: pa.Table  # ITEMS_SCHEMA
    interactions: pa.Table  # INTERACTIONS_SCHEMA
    counts: dict  # integers only (they become KFP artifact metadata)
    options: dict = field(default_factory=dict)  # the options in effect (after adjustments)
    notes: dict = field(default_factory=dict)  # adjusted_options, folded_domains (manifest)


def check_bad_rows(raw: RawData, max_bad_fraction: float) -> None:
    if raw.rows_read and raw.bad_rows / raw.rows_read > max_bad_fraction:
        first = "; ".join(raw.bad_examples) or "no example recorded"
        raise InputError(
            f"{raw.bad_rows} of {raw.rows_read} rows malformed "
            f"({raw.bad_rows / raw.rows_read:.2%} > --max-bad-fraction {max_bad_fraction:.2%}); "
            f"first: {first}"
        )


def _drop_blank_ids(raw: RawData) -> RawData:
    """Rows with a null or empty user/item id are malformed (the readers already skip those and
    blank ones with their line; this catches any other producer of raw tables)."""
    table = raw.interactions
    if table.num_rows == 0 or all(
        table.column(name).null_count == 0
        and (
            table.schema.field(name).type == INTEGER_ID  # never blank
            or pc.min(pc.binary_length(table.column(name))).as_py() > 0
        )
        for name in ("user_id", "item_id")
    ):
        return raw  # the common case: one cheap pass, no mask
    blank = None
    for name in ("user_id", "item_id"):
        values = table.column(name)
        empty = pc.fill_null(pc.equal(pc.utf8_length(values), 0), True)
        blank = empty if blank is None else pc.or_(blank, empty)
    n_blank = int(pc.sum(blank).as_py() or 0)
    where = raw.source_files[0] if raw.source_files else "the input"
    return replace(
        raw,
        interactions=table.filter(pc.invert(blank)),
        bad_rows=raw.bad_rows + n_blank,
        bad_examples=raw.bad_examples
        + [f"{where}: {n_blank} row(s) with an empty user or item id"],
    )


@dataclass
class Prepared:
    """What ``prepare`` checked and set up before an engine runs."""

    counts: dict  # rows_read … removed_by_rating_threshold (the engine adds the rest)
    effective: dict  # the options in effect
    notes: dict  # row_unit, adjusted_options
    min_user: int  # the users' k-core threshold in effect


def prepare(raw: RawData, n_parsed: int, has_ratings: bool, options: IngestOptions) -> Prepared:
    """The checks before processing (malformed-row threshold, no rows, a rating threshold
    without ratings) and the counts so far; ``raw``'s interactions table is not read (an
    out-of-core scan passes an empty one and its own ``n_parsed`` / ``has_ratings``)."""
    check_bad_rows(raw, options.max_bad_fraction)
    counts = {
        "rows_read": raw.rows_read,
        "bad_rows": raw.bad_rows,
        **{k: int(v) for k, v in raw.counts.items()},
        "rows_parsed": n_parsed,
        "removed_by_rating_threshold": 0,
    }
    if n_parsed == 0:
        raise InputError("the input holds no interactions (0 rows parsed)")
    if options.rating_threshold is not None and not has_ratings:
        raise ConfigError("--rating-threshold given but this source has no ratings")
    effective = options_dict(options)
    notes: dict = {} if raw.row_unit == "rows" else {"row_unit": raw.row_unit}

    # Leave-one-out needs >= 3 interactions per user (train, valid, test).
    min_user, adjusted = effective_min_user(options)
    if adjusted:
        effective["min_user_interactions"] = min_user
        notes["adjusted_options"] = adjusted
    return Prepared(counts=counts, effective=effective, notes=notes, min_user=min_user)


def finish(
    prepared: Prepared,
    raw: RawData,
    options: IngestOptions,
    *,
    engine_counts: dict[str, int],
    item_ids: pa.Array,
    n_users: int,
    n_interactions: int,
    split_counts: dict[str, int],
    train_per_item: Callable[[], np.ndarray],
) -> tuple[pa.Table, dict]:
    """The items table (domains looked up and capped) and every count, after the engine ran.
    ``split_counts``: interactions per split name in order of first appearance in the sorted
    table; ``train_per_item()``: train interactions of item_idx 1..n (read only for caps)."""
    counts = {**prepared.counts, **engine_counts}
    domains, domain_counts, folded = item_domains(item_ids, train_per_item, raw, options)
    if folded:
        prepared.notes["folded_domains"] = folded
    items = pa.table(
        {
            "item_idx": pa.array(np.arange(1, len(item_ids) + 1), pa.int32()),
            "item_id": item_ids,
            "domains": pa.array(domains, pa.list_(pa.string())),
        },
        schema=ITEMS_SCHEMA,
    )
    counts.update(
        users=n_users,
        items=len(item_ids),
        interactions=n_interactions,
        **{f"{name}_interactions": n for name, n in split_counts.items()},
        **domain_counts,
    )
    return items, counts


def process(raw: RawData, options: IngestOptions, scratch: Path | None = None) -> Processed:
    """Filter, re-index and split a source's raw tables (SPEC §3) with ``options.engine``.

    ``scratch``: the output path; an engine that spills writes under its parent (None: $TMPDIR).
    """
    options.validate()
    engine = get_engine(options.engine)  # an unknown engine or a missing package fails first
    raw = _drop_blank_ids(raw)
    table = raw.interactions
    has_ratings = table.num_rows > 0 and table.column("rating").null_count < table.num_rows
    prepared = prepare(raw, table.num_rows, has_ratings, options)
    started = time.perf_counter()
    if options.engine != "arrow":  # integer ids are the in-memory engine's shortcut
        table = string_ids(table)
    reduced = engine(table, options, prepared.min_user, scratch)
    log.info("%s engine: processed in %.1fs", options.engine, time.perf_counter() - started)

    item_idx, labels = reduced.item_idx, reduced.labels
    split = _label_names(labels)
    n_items = len(reduced.item_ids)
    interactions = pa.table(
        {
            "user_idx": pa.array(reduced.user_idx, pa.int32()),
            "item_idx": pa.array(item_idx, pa.int32()),
            "timestamp": pa.array(reduced.timestamp, pa.int64()),
            "split": split,
        },
        schema=INTERACTIONS_SCHEMA,
    )
    split_counts = _split_counts(labels)
    items, counts = finish(
        prepared,
        raw,
        options,
        engine_counts=reduced.counts,
        item_ids=reduced.item_ids,
        n_users=reduced.n_users,
        n_interactions=interactions.num_rows,
        split_counts=split_counts,
        train_per_item=lambda: np.bincount(item_idx[labels == 0], minlength=n_items + 1)[1:],
    )
    return Processed(
        items=items,
        interactions=interactions,
        counts=counts,
        options=prepared.effective,
        notes=prepared.notes,
    )


def _split_counts(labels: np.ndarray) -> dict[str, int]:
    """Interactions per split name, in order of first appearance (what ``pc.value_counts`` of
    the names gives, without hashing 20M strings)."""
    counts = np.bincount(labels, minlength=len(LABEL_NAMES))
    present = [label for label in range(len(LABEL_NAMES)) if counts[label]]
    first = sorted(present, key=lambda label: int(np.argmax(labels == label)))
    return {LABEL_NAMES[label]: int(counts[label]) for label in first}


def _label_names(labels: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(labels), pa.array(list(LABEL_NAMES))).cast(
        pa.string()
    )
