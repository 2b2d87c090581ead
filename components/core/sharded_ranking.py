"""Full ranking over several processes (torchrun; issue 15 item 4): the users split across the
ranks, the item axis chunked (``chunked_ranking``), the results gathered in the users' order.

Exact: every rank holds the ranks and top items one process computes. Both stages cut their work
on a grid fixed by the data, not by the number of processes — the model encodes the batches
``ranking.user_states`` makes (prefix-length order), the ranking computes the tiles of
``chunked_ranking.tile_plan`` — and a rank takes whole batches / whole user blocks
(``np.array_split`` of them), so every score is the same float whichever rank computes it (a
matmul's bits depend on its shape). One process is a plain pass-through.

Under torchrun (WORLD_SIZE > 1) the processes join one group: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from components.core.chunked_ranking import Tiles, rank_chunked, tile_plan
from components.core.process_group import Process, all_gather
from components.core.ranking import DEFAULT_SCORES_PER_BLOCK, encode_rows, encoding_order


def shard(n_rows: int, unit: int, group: Process) -> slice:
    """This rank's contiguous rows: whole units of ``unit`` rows, ``np.array_split`` over the
    ranks (a rank with no unit gets an empty slice)."""
    units = np.array_split(np.arange(-(-n_rows // unit)), group.world_size)[group.rank]
    if len(units) == 0:
        return slice(n_rows, n_rows)
    return slice(int(units[0]) * unit, min((int(units[-1]) + 1) * unit, n_rows))


def sharded_user_states(
    model, prefix: np.ndarray, device, batch_size: int, group: Process, progress: bool = False
):
    """``ranking.user_states`` with its batches shared among the ranks: [U, d] on every rank,
    the same floats as one process (every batch is the one ``user_states`` encodes)."""
    import torch
    from tqdm.auto import tqdm

    model.eval()
    order = encoding_order(prefix)
    mine = shard(len(prefix), batch_size, group)
    states = []
    starts = range(mine.start, mine.stop, batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            stop = min(start + batch_size, mine.stop)
            states.append(encode_rows(model, prefix[order[start:stop]], device).cpu().numpy())
        width = model.item_embeddings().shape[1]
    local = np.concatenate(states) if states else np.zeros((0, width), dtype=np.float32)
    out = np.empty((len(prefix), width), dtype=np.float32)
    for part, rows in zip(
        all_gather(local, group), _shards(len(prefix), batch_size, group), strict=True
    ):
        out[order[rows]] = part
    return torch.as_tensor(out, device=device)


def _shards(n_rows: int, unit: int, group: Process) -> list[slice]:
    """Every rank's ``shard``, in rank order."""
    return [shard(n_rows, unit, Process(r, group.world_size)) for r in range(group.world_size)]


def sharded_rank(
    score_tile: Callable,
    targets,
    n_candidates: int,
    group: Process,
    exclude: Callable | None = None,
    topk: int = 0,
    tiles: Tiles | None = None,
    progress: Callable[[int], None] | None = None,
):
    """``chunked_ranking.rank_chunked`` with the user blocks shared among the ranks.

    ``score_tile(rows, cols)`` and ``exclude(rows, cols)`` take GLOBAL user rows. Returns, on
    every rank, (ranks [B] int64, top_items [B, min(topk, n_candidates - 1)] int64 or None) in
    the users' order, on ``targets``' device: exactly one process's result."""
    import torch

    tiles = tiles or tile_plan(n_candidates)
    mine = shard(len(targets), tiles.block, group)

    def shifted(call):
        return lambda rows, cols: call(slice(rows.start + mine.start, rows.stop + mine.start), cols)

    ranks, top = rank_chunked(
        shifted(score_tile), targets[mine], n_candidates,
        shifted(exclude) if exclude is not None else None, topk, tiles, progress,
    )  # fmt: skip
    if group.world_size <= 1:
        return ranks, top
    local = (ranks.cpu().numpy(), None if top is None else top.cpu().numpy())
    parts = all_gather(local, group)
    device = targets.device
    all_ranks = torch.as_tensor(np.concatenate([p[0] for p in parts]), device=device)
    if top is None:
        return all_ranks, None
    return all_ranks, torch.as_tensor(np.concatenate([p[1] for p in parts]), device=device)


def sharded_ranks_from_embeddings(
    user_states,
    item_embeddings,
    targets,
    group: Process,
    exclude: Callable | None = None,
    topk: int = 0,
    max_scores_per_block: int = DEFAULT_SCORES_PER_BLOCK,
    chunk: int | None = None,
    progress: bool = False,
):
    """``ranking.ranks_from_embeddings`` sharded over the ranks and chunked over the items.

    user_states [B, d] (every user, on every rank), item_embeddings [n_items+1, d], targets [B];
    ``exclude(rows, cols)`` optional (``chunked_ranking.seen_tiles``); ``chunk``: items per tile
    (default from ``max_scores_per_block``, ``tile_plan``). With the whole item axis in one tile
    (the default below 16,384 items) the ranks equal ``ranks_from_embeddings`` bit for bit."""
    import torch
    from tqdm.auto import tqdm

    item_embeddings_t = item_embeddings.float().T.contiguous()
    targets = torch.as_tensor(targets, device=user_states.device)
    tiles = tile_plan(item_embeddings.shape[0], max_scores_per_block, chunk)
    mine = shard(len(targets), tiles.block, group)
    with (
        torch.no_grad(),
        tqdm(total=mine.stop - mine.start, desc="rank", unit="user", disable=not progress) as bar,
    ):
        return sharded_rank(
            lambda rows, cols: user_states[rows] @ item_embeddings_t[:, cols],
            targets, item_embeddings.shape[0], group, exclude,
            topk=topk, tiles=tiles, progress=bar.update,
        )  # fmt: skip
