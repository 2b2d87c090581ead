"""Source-independent processing (SPEC §3): raw tables → the contract's Parquet files.

Order: malformed-row check → rating threshold → de-duplicate exact repeats → iterative k-core →
dense re-index → split (leave-one-out, or global time) → stable sort → item domains (optionally
capped: ``--min-domain-items``, ``--top-domains``) → atomic write + manifest.
Everything is columnar (pyarrow compute / numpy); nothing loops over interactions in Python.

The counts add up (the summary line and ``manifest.json`` print the same numbers)::

    rows_parsed - removed_by_rating_threshold - duplicates_removed - removed_by_kcore
        == interactions

and, for sources with one interaction per row, rows_read - bad_rows - (the reader's own
``removed_by_*``, e.g. LastFM's repeat taggings) == rows_parsed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.domains import item_domains
from components.ingest.options import IngestOptions, effective_min_user, options_dict
from components.ingest.raw import RawData
from components.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

log = logging.getLogger("dwlrec.ingest")

# IngestOptions is re-exported: ``components.ingest.core.IngestOptions`` (pipelines/validate.py)
__all__ = ["IngestOptions", "Processed", "check_bad_rows", "process"]


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


def _natural_order(values: pa.Array) -> np.ndarray:
    """Rank of each distinct id: numeric order when every id is an integer, else string order."""
    as_int = pc.cast(values, pa.int64(), safe=False) if _all_integers(values) else None
    keys = as_int if as_int is not None else values
    order = pc.sort_indices(keys).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _all_integers(values: pa.Array) -> bool:
    matches = pc.match_substring_regex(values, r"^-?[0-9]{1,18}$")
    return bool(pc.all(matches).as_py()) if len(values) else False


def _drop_blank_ids(raw: RawData) -> RawData:
    """Rows with a null or empty user/item id are malformed (the readers already skip those and
    blank ones with their line; this catches any other producer of raw tables)."""
    table = raw.interactions
    if table.num_rows == 0 or all(
        table.column(name).null_count == 0
        and pc.min(pc.binary_length(table.column(name))).as_py() > 0
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


def process(raw: RawData, options: IngestOptions) -> Processed:
    """Filter, re-index and split a source's raw tables (SPEC §3)."""
    options.validate()
    raw = _drop_blank_ids(raw)
    check_bad_rows(raw, options.max_bad_fraction)
    table = raw.interactions
    counts = {
        "rows_read": raw.rows_read,
        "bad_rows": raw.bad_rows,
        **{k: int(v) for k, v in raw.counts.items()},
        "rows_parsed": table.num_rows,
        "removed_by_rating_threshold": 0,
    }
    if table.num_rows == 0:
        raise InputError("the input holds no interactions (0 rows parsed)")
    effective = options_dict(options)
    notes: dict = {} if raw.row_unit == "rows" else {"row_unit": raw.row_unit}

    if options.rating_threshold is not None:
        table = _rating_filter(table, options.rating_threshold)
        counts["removed_by_rating_threshold"] = counts["rows_parsed"] - table.num_rows

    # Integer codes for the string ids, ranked in the ids' natural order so that re-indexing
    # later is a monotone map (no second sort).
    user_enc = pc.dictionary_encode(table.column("user_id")).combine_chunks()
    item_enc = pc.dictionary_encode(table.column("item_id")).combine_chunks()
    user_code = _natural_order(user_enc.dictionary)[user_enc.indices.to_numpy()]
    item_code = _natural_order(item_enc.dictionary)[item_enc.indices.to_numpy()]
    item_names = item_enc.dictionary.take(pa.array(np.argsort(_natural_order(item_enc.dictionary))))
    timestamp = table.column("timestamp").to_numpy().astype(np.int64)

    order = _stable_user_time_order(user_code, timestamp)
    user_code, item_code, timestamp = user_code[order], item_code[order], timestamp[order]

    keep = ~_exact_repeats(user_code, item_code, timestamp)
    counts["duplicates_removed"] = int((~keep).sum())

    # Iterative k-core. Leave-one-out needs >= 3 interactions per user (train, valid, test).
    min_user, adjusted = effective_min_user(options)
    if adjusted:
        effective["min_user_interactions"] = min_user
        notes["adjusted_options"] = adjusted
    n_before_kcore = int(keep.sum())
    keep = _kcore(user_code, item_code, keep, min_user, options.min_item_interactions)
    counts["removed_by_kcore"] = n_before_kcore - int(keep.sum())
    if not keep.any():
        raise InputError(
            f"no interactions left after the k-core filter (users >= {min_user}, items >= "
            f"{options.min_item_interactions} interactions; {n_before_kcore} before it): "
            f"lower --min-user-interactions/--min-item-interactions"
        )
    user_code, item_code, timestamp = user_code[keep], item_code[keep], timestamp[keep]

    # Dense re-index: users 0..U-1, items 1..I (0 is padding), both in the ids' natural order.
    kept_users = np.bincount(user_code, minlength=len(user_enc.dictionary)) > 0
    kept_items = np.bincount(item_code, minlength=len(item_enc.dictionary)) > 0
    user_idx = (np.cumsum(kept_users) - 1)[user_code]
    item_idx = np.cumsum(kept_items)[item_code]
    item_ids = item_names.filter(pa.array(kept_items))
    labels = _split_labels(user_idx, timestamp, options)
    split = _label_names(labels)
    domains, domain_counts, folded = item_domains(item_ids, item_idx, labels, raw, options)
    if folded:
        notes["folded_domains"] = folded

    interactions = pa.table(
        {
            "user_idx": pa.array(user_idx, pa.int32()),
            "item_idx": pa.array(item_idx, pa.int32()),
            "timestamp": pa.array(timestamp, pa.int64()),
            "split": split,
        },
        schema=INTERACTIONS_SCHEMA,
    )
    items = pa.table(
        {
            "item_idx": pa.array(np.arange(1, len(item_ids) + 1), pa.int32()),
            "item_id": item_ids,
            "domains": pa.array(domains, pa.list_(pa.string())),
        },
        schema=ITEMS_SCHEMA,
    )
    split_counts = pc.value_counts(split).to_pylist()
    counts.update(
        users=int(kept_users.sum()),
        items=len(item_ids),
        interactions=interactions.num_rows,
        **{f"{entry['values']}_interactions": entry["counts"] for entry in split_counts},
        **domain_counts,
    )
    return Processed(
        items=items, interactions=interactions, counts=counts, options=effective, notes=notes
    )


def _rating_filter(table: pa.Table, threshold: float) -> pa.Table:
    """Keep rating >= ``threshold`` (implicit feedback); refuse a source without ratings."""
    ratings = table.column("rating")
    if ratings.null_count == table.num_rows:
        raise ConfigError("--rating-threshold given but this source has no ratings")
    table = table.filter(pc.fill_null(pc.greater_equal(ratings, threshold), False))
    if table.num_rows == 0:
        raise InputError(f"no interactions left after --rating-threshold {threshold}")
    return table


def _kcore(
    user_code: np.ndarray, item_code: np.ndarray, keep: np.ndarray, min_user: int, min_item: int
) -> np.ndarray:
    """``keep`` narrowed until every kept user has >= ``min_user`` and every kept item
    >= ``min_item`` kept interactions (iterated: dropping one side can push the other under)."""
    n_users, n_items = int(user_code.max()) + 1, int(item_code.max()) + 1
    while True:
        user_counts = np.bincount(user_code[keep], minlength=n_users)
        item_counts = np.bincount(item_code[keep], minlength=n_items)
        new_keep = (
            keep & (user_counts[user_code] >= min_user) & (item_counts[item_code] >= min_item)
        )
        if new_keep.sum() == keep.sum():
            return keep
        keep = new_keep


def _stable_user_time_order(user_code: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Stable sort order by (user, time): equal keys keep the file's order.

    One stable argsort of a packed int64 key when it fits: timsort is near-linear on the
    user-grouped files that most sources ship, where a multi-key lexsort is not.
    """
    if len(timestamp) == 0:
        return np.zeros(0, dtype=np.int64)
    t_min = int(timestamp.min())
    t_span = int(timestamp.max()) - t_min + 1
    if (int(user_code.max()) + 1) * t_span < 2**62:
        return np.argsort(user_code * t_span + (timestamp - t_min), kind="stable")
    order = np.argsort(timestamp, kind="stable")
    return order[np.argsort(user_code[order], kind="stable")]


def _exact_repeats(
    user_code: np.ndarray, item_code: np.ndarray, timestamp: np.ndarray
) -> np.ndarray:
    """Mask of rows repeating an earlier (user, item, timestamp); input sorted by (user, time)."""
    repeat = np.zeros(len(user_code), dtype=bool)
    same_time = (np.diff(user_code) == 0) & (np.diff(timestamp) == 0)
    if not same_time.any():
        return repeat
    # only rows sharing (user, timestamp) with a neighbour can repeat: check those exactly
    candidates = np.flatnonzero(np.r_[same_time, False] | np.r_[False, same_time])
    order = candidates[
        np.lexsort(
            (candidates, item_code[candidates], timestamp[candidates], user_code[candidates])
        )
    ]
    dup = (
        (np.diff(user_code[order]) == 0)
        & (np.diff(item_code[order]) == 0)
        & (np.diff(timestamp[order]) == 0)
    )
    repeat[order[1:][dup]] = True
    return repeat


def _split_labels(
    user_idx: np.ndarray, timestamp: np.ndarray, options: IngestOptions
) -> np.ndarray:
    """Split labels (0 train, 1 valid, 2 test) for interactions sorted by (user, time)."""
    labels = np.zeros(len(user_idx), dtype=np.int8)  # 0 train, 1 valid, 2 test
    if options.split == "leave-one-out":
        last = np.flatnonzero(np.r_[user_idx[1:] != user_idx[:-1], True])
        labels[last] = 2
        labels[last - 1] = 1  # every user has >= 3 interactions, so last-1 is the same user's
    else:
        valid_from, test_from = np.quantile(
            timestamp,
            [1 - options.valid_fraction - options.test_fraction, 1 - options.test_fraction],
            method="higher",
        )
        labels[timestamp >= valid_from] = 1
        labels[timestamp >= test_from] = 2
    return labels


def _label_names(labels: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(labels), pa.array(["train", "valid", "test"])
    ).cast(pa.string())
