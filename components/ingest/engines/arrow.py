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
from components.ingest.raw import INTEGER_ID

INTEGER_TEXT = r"^-?[0-9]{1,18}$"  # ids that sort numerically (when every id is one)


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

    # two threads throughout: pyarrow's kernels and numpy's sorts and gathers release the GIL
    with ThreadPoolExecutor(max_workers=2) as pool:

        def select(index: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
            """``array[index]`` of each array, the gathers on both threads."""
            return list(pool.map(lambda array: array[index], arrays))

        (user_code, user_names), (item_code, item_names) = pool.map(
            _id_codes, (table.column("user_id"), table.column("item_id"))
        )
        timestamp = np.asarray(table.column("timestamp"), dtype=np.int64)
        user_code, item_code, timestamp = select(
            _stable_user_time_order(user_code, timestamp), user_code, item_code, timestamp
        )

        keep = ~_exact_repeats(user_code, item_code, timestamp)
        counts["duplicates_removed"] = int((~keep).sum())

        n_before_kcore = int(keep.sum())
        keep = _kcore(user_code, item_code, keep, min_user, options.min_item_interactions)
        counts["removed_by_kcore"] = n_before_kcore - int(keep.sum())
        check_kcore_left(int(keep.sum()), n_before_kcore, min_user, options)
        if not keep.all():
            user_code, item_code, timestamp = select(keep, user_code, item_code, timestamp)

        # Dense re-index: users 0..U-1, items 1..I (0 is padding), in the ids' natural order.
        kept_users = np.bincount(user_code, minlength=len(user_names)) > 0
        kept_items = np.bincount(item_code, minlength=len(item_names)) > 0
        user_idx, item_idx = pool.map(
            lambda rank, code: rank[code],
            (np.cumsum(kept_users, dtype=np.int32) - 1, np.cumsum(kept_items, dtype=np.int32)),
            (user_code, item_code),
        )
    return Reduced(
        user_idx=user_idx,
        item_idx=item_idx,
        timestamp=timestamp,
        labels=_split_labels(user_idx, timestamp, options),
        item_ids=item_names.filter(pa.array(kept_items)),
        n_users=int(kept_users.sum()),
        counts=counts,
    )


def _id_codes(ids: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(int32 code of each row's id, the distinct ids as strings by code): codes rank the ids in
    their natural order, so that re-indexing later is a monotone map (no second sort)."""
    if ids.type == INTEGER_ID:  # canonical integers: a counting pass, no hashing of text
        chunks = [chunk.to_numpy() for chunk in ids.chunks]
        present = np.zeros(max((int(c.max()) + 1 for c in chunks if len(c)), default=0), bool)
        for chunk in chunks:
            present[chunk] = True
        rank = np.cumsum(present, dtype=np.int32) - 1
        codes = np.concatenate([rank[chunk] for chunk in chunks] or [rank[:0]])
        return codes, pa.array(np.flatnonzero(present)).cast(pa.string())
    encoded = pc.dictionary_encode(ids).combine_chunks()
    rank = _natural_order(encoded.dictionary)
    names = encoded.dictionary.take(pa.array(np.argsort(rank)))
    return rank.astype(np.int32)[encoded.indices.to_numpy()], names


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
    matches = pc.match_substring_regex(values, INTEGER_TEXT)
    return bool(pc.all(matches).as_py()) if len(values) else False


def _kcore(
    user_code: np.ndarray, item_code: np.ndarray, keep: np.ndarray, min_user: int, min_item: int
) -> np.ndarray:
    """``keep`` narrowed until every kept user has >= ``min_user`` and every kept item
    >= ``min_item`` kept interactions (iterated: dropping one side can push the other under).

    Counted once, then updated by the rows each round drops: a round is one pass over the
    rows of the users and items that just fell under (the fixed point, the k-core, is unique)."""
    keep = keep.copy()
    everything = bool(keep.all())
    n_users, n_items = int(user_code.max()) + 1, int(item_code.max()) + 1
    user_counts = np.bincount(user_code if everything else user_code[keep], minlength=n_users)
    item_counts = np.bincount(item_code if everything else item_code[keep], minlength=n_items)
    dropped_users = np.zeros(len(user_counts), dtype=bool)
    dropped_items = np.zeros(len(item_counts), dtype=bool)
    while True:
        new_users = (user_counts < min_user) & ~dropped_users
        new_items = (item_counts < min_item) & ~dropped_items
        if not (new_users.any() or new_items.any()):
            return keep
        dropped_users |= new_users
        dropped_items |= new_items
        rows = new_users[user_code] if new_users.any() else np.zeros(len(keep), dtype=bool)
        if new_items.any():
            rows |= new_items[item_code]
        rows &= keep
        index = np.flatnonzero(rows)
        keep[index] = False
        user_counts -= np.bincount(user_code[index], minlength=len(user_counts))
        item_counts -= np.bincount(item_code[index], minlength=len(item_counts))


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
        key = user_code.astype(np.int64)  # (user, time) packed in place: no 20M temporaries
        key *= t_span
        key += timestamp
        key -= t_min
        return np.argsort(key, kind="stable")
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
