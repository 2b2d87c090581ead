"""Full ranking with the item axis in chunks: memory bounded by a block of users × a chunk of items,
whatever the catalogue size (SPEC §7; the sharded evaluate step's ranking).

The ranks follow ``components.core.ranking`` exactly: 0-based, pessimistic (the items other than
the target scored >= the target), the padding item 0 never a candidate, excluded items never
candidates (the target itself never excluded), a NaN or -inf target last among the candidates.
The counts of >= add up over the chunks; the top-k of each chunk is merged into a running top-k.

Top items follow one total order: score descending (NaN above every number, as ``torch.topk``
puts it), then item index ascending. ``torch.topk`` itself breaks ties in no documented order
(on CPU a partial sort: ``zeros(1, 100).topk(5)`` returns 65, 68, 67, 66, 69), so a chunked
top-k could not otherwise equal an unchunked one; here every chunk size gives the same items.

Exactness holds for the same scores: ``score_tile`` must return the same bits for an item
whichever tile it is computed in. A matmul does that only for the same tile shapes (MKL's results
depend on the shape), so the callers keep the tiles fixed: user blocks at multiples of ``block``,
item chunks at multiples of ``chunk`` (``sharded_ranking``). Torch is imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from components.core.ranking import DEFAULT_SCORES_PER_BLOCK

# Fewest users per block before the item axis is chunked: a block of a handful of users makes
# the matmul a matrix-vector product and the per-row passes slow (a catalogue of more than
# DEFAULT_SCORES_PER_BLOCK / MIN_BLOCK_USERS = 16,384 items is chunked by default).
MIN_BLOCK_USERS = 256
_LOW_BITS = 1 << 32  # the item index lives in the low 32 bits of an ordering key
_MAX_INDEX = (1 << 31) - 1


@dataclass(frozen=True)
class Tiles:
    """The tile grid of a ranking: ``block`` users × ``chunk`` items per score tile."""

    block: int
    chunk: int


def tile_plan(
    n_candidates: int,
    max_scores_per_block: int = DEFAULT_SCORES_PER_BLOCK,
    chunk: int | None = None,
) -> Tiles:
    """The tiles for ``n_candidates`` items within ``max_scores_per_block`` scores.

    ``chunk`` None: the whole item axis when that leaves >= MIN_BLOCK_USERS users per block (the
    user blocks of ``ranking.rank_all``, so its scores bit for bit), else MIN_BLOCK_USERS users
    and the chunk the budget leaves. A given ``chunk`` (capped at ``n_candidates``) fixes it."""
    if n_candidates < 1 or max_scores_per_block < 1:
        raise ValueError("tile_plan: n_candidates and max_scores_per_block must be >= 1")
    if chunk is None:
        block = max(1, max_scores_per_block // n_candidates)
        if block >= MIN_BLOCK_USERS:
            return Tiles(block, n_candidates)
        chunk = max(1, max_scores_per_block // MIN_BLOCK_USERS)
    if chunk < 1:
        raise ValueError(f"tile_plan: chunk must be >= 1, got {chunk}")
    chunk = min(chunk, n_candidates)
    return Tiles(max(1, max_scores_per_block // chunk), chunk)


def _order_keys(values, ids):
    """int64 keys whose descending order is (value descending, NaN first, id ascending)."""
    import torch

    # one NaN and one zero, so equal floats get equal keys (-0.0 + 0.0 is +0.0)
    canonical = torch.where(torch.isnan(values), torch.nan, values.float() + 0.0)
    bits = canonical.contiguous().view(torch.int32).to(torch.int64)
    monotone = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order as integer order
    return monotone * _LOW_BITS + (_MAX_INDEX - ids)


def ordered_topk(values, ids, k: int):
    """The top ``k`` of each row of ``values`` [b, m] in the module's total order → (values,
    ids) [b, k]; ``ids`` [b, m] int64 are the items' indices (ties go to the lower one)."""
    position = _order_keys(values, ids).topk(k, dim=1).indices
    return values.gather(1, position), ids.gather(1, position)


def _tile_topk(scores, k: int, first_item: int):
    """``ordered_topk`` of one score tile, by ``torch.topk`` where no tie can change the set."""
    import torch

    values, position = scores.topk(k, dim=1)
    ids = position + first_item
    kth = values[:, -1:]
    # another item equal to the k-th (or a NaN anywhere: topk puts them first) makes the set
    # ambiguous; those rows take the exact keyed path
    ambiguous = (torch.count_nonzero(scores >= kth, dim=1) > k) | torch.isnan(values[:, 0])
    if ambiguous.any():
        rows = ambiguous.nonzero()[:, 0]
        every = torch.arange(first_item, first_item + scores.shape[1], device=scores.device)
        values[rows], ids[rows] = ordered_topk(
            scores[rows], every.expand(len(rows), -1), k
        )  # fmt: skip
    return ordered_topk(values, ids, k)  # the order within the k (ties inside it)


def _target_scores(score_tile: Callable, rows: slice, targets, n_candidates: int, chunk: int):
    """The targets' scores, each read from the tile that holds it (the bits the walk compares)."""
    import torch

    out = torch.empty(len(targets), device=targets.device)
    which = targets // chunk
    for c in torch.unique(which).tolist():
        cols = slice(c * chunk, min((c + 1) * chunk, n_candidates))
        scores = score_tile(rows, cols).float()
        if c == 0:
            scores[:, 0] = -torch.inf
        sel = (which == c).nonzero()[:, 0]
        out[sel] = scores[sel, targets[sel] - cols.start]
    return out


def _rank_rows(score_tile, rows: slice, targets, n_candidates: int, exclude, topk: int, chunk):
    """Ranks (and top items) of one block of users, walking the item chunks."""
    import torch

    b = len(targets)
    device = targets.device
    chunks = [slice(s, min(s + chunk, n_candidates)) for s in range(0, n_candidates, chunk)]
    target_scores = None
    if len(chunks) > 1:
        target_scores = _target_scores(score_tile, rows, targets, n_candidates, chunk)
    counts = torch.zeros(b, dtype=torch.int64, device=device)
    n_excluded = torch.zeros(b, dtype=torch.int64, device=device)
    width = min(topk, n_candidates - 1)
    best = None
    for cols in chunks:
        scores = score_tile(rows, cols).float()
        if cols.start == 0:
            scores[:, 0] = -torch.inf
        inside = ((targets >= cols.start) & (targets < cols.stop)).nonzero()[:, 0]
        local = targets[inside] - cols.start
        if exclude is not None:
            mask = exclude(rows, cols).clone()
            mask[inside, local] = False  # the target itself is never excluded
            scores.masked_fill_(mask, -torch.inf)
            n_excluded += mask[:, 1:].sum(dim=1) if cols.start == 0 else mask.sum(dim=1)
        if target_scores is None:  # one chunk: the tile holds every target
            target_scores = scores[inside, local]
        # >= counts the target itself once; NaN scores never beat the target
        counts += torch.count_nonzero(scores >= target_scores[:, None], dim=1)
        if width:
            top = _tile_topk(scores, min(width, scores.shape[1]), cols.start)
            if best is not None:
                values = torch.cat([best[0], top[0]], dim=1)
                top = ordered_topk(values, torch.cat([best[1], top[1]], dim=1), min(width, values.shape[1]))  # fmt: skip
            best = top
    assert target_scores is not None
    ranks = counts - 1
    unrankable = ~(target_scores > -torch.inf)  # NaN or -inf: last among the candidates
    if unrankable.any():
        ranks = torch.where(unrankable, n_candidates - 1 - n_excluded - 1, ranks)
    return ranks, (best[1] if best is not None else None)


def rank_chunked(
    score_tile: Callable,
    targets,
    n_candidates: int,
    exclude: Callable | None = None,
    topk: int = 0,
    tiles: Tiles | None = None,
    progress: Callable[[int], None] | None = None,
):
    """Rank every target against every item, tile by tile.

    ``score_tile(rows: slice, cols: slice)`` → a FRESH float tensor [b, c] of the scores of
    those users and items (modified in place); ``exclude(rows, cols)`` an optional bool mask of
    the same shape; ``targets`` [B] torch int64. Returns (ranks [B] int64, top_items [B,
    min(topk, n_candidates - 1)] int64 or None), equal to ``ranking.rank_all`` of the same scores
    (its top items in this module's order). ``progress(n)`` after each block of n users."""
    import torch

    tiles = tiles or tile_plan(n_candidates)
    ranks = torch.empty(len(targets), dtype=torch.int64, device=targets.device)
    top_items = None
    if topk:
        width = min(topk, n_candidates - 1)
        top_items = torch.empty((len(targets), width), dtype=torch.int64, device=targets.device)
    for start in range(0, len(targets), tiles.block):
        rows = slice(start, min(start + tiles.block, len(targets)))
        ranks[rows], top = _rank_rows(
            score_tile, rows, targets[rows], n_candidates, exclude, topk, tiles.chunk
        )  # fmt: skip
        if top_items is not None:
            top_items[rows] = top
        if progress is not None:
            progress(rows.stop - rows.start)
    return ranks, top_items


def seen_tiles(history_offsets: np.ndarray, history_items: np.ndarray, device) -> Callable:
    """Callable(rows, cols) → bool [b, c], True at the items of ``cols`` the user has seen.

    ``history_offsets``/``history_items``: CSR of each ranked user's history
    (``UserSequences.history``), rows in the order of the ranked users (``ranking.seen_mask``
    one chunk at a time)."""
    import torch

    def mask(rows: slice, cols: slice):
        start, stop = rows.start, min(rows.stop, len(history_offsets) - 1)
        lo, hi = history_offsets[start], history_offsets[stop]
        row_ids = np.repeat(np.arange(stop - start), np.diff(history_offsets[start : stop + 1]))
        items = history_items[lo:hi]
        keep = (items >= cols.start) & (items < cols.stop)
        out = torch.zeros((stop - start, cols.stop - cols.start), dtype=torch.bool, device=device)
        out[
            torch.as_tensor(row_ids[keep], device=device),
            torch.as_tensor(items[keep] - cols.start, device=device),
        ] = True
        return out

    return mask
