"""The in-memory engine (``--engine arrow``, the default): pyarrow compute and numpy, columnar,
nothing loops over interactions in Python. The reference the other engines must equal."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.ingest.engines.base import (
    Reduced,
    check_kcore_left,
    check_rating_left,
)
from components.ingest.options import IngestOptions

INTEGER_ID = r"^-?[0-9]{1,18}$"  # ids that sort numerically (when every id is one)


def reduce(
    table: pa.Table, options: IngestOptions, min_user: int, scratch: Path | None = None
) -> Reduced:
    """Rating threshold → exact-repeat dedup → iterative k-core → dense re-index → split."""
    counts = {"removed_by_rating_threshold": 0}
    if options.rating_threshold is not None:
        n_parsed = table.num_rows
        ratings = table.column("rating")
        table = table.filter(
            pc.fill_null(pc.greater_equal(ratings, options.rating_threshold), False)
        )
        check_rating_left(table.num_rows, options.rating_threshold)
        counts["removed_by_rating_threshold"] = n_parsed - table.num_rows

    # Integer codes for the string ids, ranked in the ids' natural order so that re-indexing
    # later is a monotone map (no second sort).
    # (both columns at once: the kernels release the GIL, each is one core's work)
    with ThreadPoolExecutor(max_workers=2) as pool:
        user_enc, item_enc = pool.map(
            lambda name: pc.dictionary_encode(table.column(name)).combine_chunks(),
            ("user_id", "item_id"),
        )
    user_code = _natural_order(user_enc.dictionary)[user_enc.indices.to_numpy()]
    item_code = _natural_order(item_enc.dictionary)[item_enc.indices.to_numpy()]
    item_names = item_enc.dictionary.take(pa.array(np.argsort(_natural_order(item_enc.dictionary))))
    timestamp = table.column("timestamp").to_numpy().astype(np.int64)

    order = _stable_user_time_order(user_code, timestamp)
    user_code, item_code, timestamp = user_code[order], item_code[order], timestamp[order]

    keep = ~_exact_repeats(user_code, item_code, timestamp)
    counts["duplicates_removed"] = int((~keep).sum())

    n_before_kcore = int(keep.sum())
    keep = _kcore(user_code, item_code, keep, min_user, options.min_item_interactions)
    counts["removed_by_kcore"] = n_before_kcore - int(keep.sum())
    check_kcore_left(int(keep.sum()), n_before_kcore, min_user, options)
    user_code, item_code, timestamp = user_code[keep], item_code[keep], timestamp[keep]

    # Dense re-index: users 0..U-1, items 1..I (0 is padding), both in the ids' natural order.
    kept_users = np.bincount(user_code, minlength=len(user_enc.dictionary)) > 0
    kept_items = np.bincount(item_code, minlength=len(item_enc.dictionary)) > 0
    user_idx = (np.cumsum(kept_users) - 1)[user_code]
    item_idx = np.cumsum(kept_items)[item_code]
    return Reduced(
        user_idx=user_idx,
        item_idx=item_idx,
        timestamp=timestamp,
        labels=_split_labels(user_idx, timestamp, options),
        item_ids=item_names.filter(pa.array(kept_items)),
        n_users=int(kept_users.sum()),
        counts=counts,
    )


def _natural_order(values: pa.Array) -> np.ndarray:
    """Rank of each distinct id: numeric order when every id is an integer, else string order
    (the sort is stable: ids of equal value, e.g. "01" and "1", keep first-appearance order)."""
    as_int = pc.cast(values, pa.int64(), safe=False) if _all_integers(values) else None
    keys = as_int if as_int is not None else values
    order = pc.sort_indices(keys).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _all_integers(values: pa.Array) -> bool:
    matches = pc.match_substring_regex(values, INTEGER_ID)
    return bool(pc.all(matches).as_py()) if len(values) else False


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
