"""Full ranking (SPEC §7), shared by the train step's validation and the evaluate step.

Ranks are 0-based and pessimistic: rank = number of real items other than the target whose score
is >= the target's score, so a constant-score model ranks every target last (Recall@K ≈ 0).
The padding item 0 is never a candidate. Torch is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from components.core.sequences import trim_left_padding

# Scores held in memory at once by the blocked ranking (16 MiB of float32): bounded memory for
# any catalogue, and blocks large enough that the matmul and the per-row passes run at speed
# (measured with benchmarks/evaluate.py).
DEFAULT_SCORES_PER_BLOCK = 1 << 22


def _rank_block_(scores, targets, exclude=None, topk: int = 0):
    """Ranks (and optionally the top-k items) of one block; modifies ``scores`` in place."""
    import torch

    scores[:, 0] = -torch.inf
    rows = torch.arange(len(targets), device=scores.device)
    if exclude is not None:
        exclude = exclude.clone()
        exclude[rows, targets] = False  # the target itself is never excluded
        scores.masked_fill_(exclude, -torch.inf)
    target_scores = scores[rows, targets][:, None]  # [b, 1]
    # >= counts the target itself once; NaN scores never beat the target (pessimism applies to ties)
    ranks = torch.count_nonzero(scores >= target_scores, dim=1) - 1  # faster than .sum()
    # A target scored NaN or -inf cannot be ranked by comparison: it is last among the candidates.
    unrankable = ~(target_scores[:, 0] > -torch.inf)
    if unrankable.any():
        n_candidates = scores.shape[1] - 1
        if exclude is not None:
            n_candidates = n_candidates - exclude[:, 1:].sum(dim=1)
        last = torch.as_tensor(n_candidates, device=scores.device).expand(len(targets)) - 1
        ranks = torch.where(unrankable, last, ranks)
    top_items = None
    if topk:
        top_items = scores.topk(min(topk, scores.shape[1] - 1), dim=1).indices
    return ranks, top_items


def pessimistic_ranks(scores, targets, exclude=None):
    """scores [B, n_items+1] (torch), targets [B] → 0-based pessimistic ranks [B] (torch int64).

    ``exclude`` (optional bool [B, n_items+1]) masks candidates (e.g. seen items); the target
    itself is never excluded.
    """
    return _rank_block_(scores.float().clone(), targets, exclude)[0]


def rank_all(
    score_block: Callable,
    targets,
    n_candidates: int,
    exclude: Callable | None = None,
    topk: int = 0,
    max_scores_per_block: int = DEFAULT_SCORES_PER_BLOCK,
    progress: Callable[[int], None] | None = None,
):
    """Rank every target against every item, one block of users at a time.

    ``score_block(rows: slice)`` returns a FRESH float tensor [b, n_candidates] of scores for
    those users (it is modified in place); ``exclude(rows)`` an optional bool mask of the same
    shape. Returns (ranks [B] int64, top_items [B, topk] int64 or None); ``progress(n)`` is
    called after each block with the number of users done in it.
    """
    import torch

    block = max(1, max_scores_per_block // n_candidates)
    ranks = torch.empty(len(targets), dtype=torch.int64, device=targets.device)
    top_items = None
    if topk:
        width = min(topk, n_candidates - 1)
        top_items = torch.empty((len(targets), width), dtype=torch.int64, device=targets.device)
    for start in range(0, len(targets), block):
        rows = slice(start, start + block)
        mask = exclude(rows) if exclude is not None else None
        ranks[rows], top = _rank_block_(score_block(rows).float(), targets[rows], mask, topk)
        if top_items is not None:
            top_items[rows] = top
        if progress is not None:
            progress(len(targets[rows]))
    return ranks, top_items


def encoding_order(prefix: np.ndarray) -> np.ndarray:
    """The order ``user_states`` encodes the rows in: by prefix length (stable), so a batch of
    short histories is short once trimmed."""
    return np.argsort((prefix != 0).sum(axis=1), kind="stable")


def encode_rows(model, rows: np.ndarray, device):
    """The model's state after each left-padded row of one batch: [b, d] float32 (callers
    hold ``torch.no_grad``)."""
    import torch

    (trimmed,) = trim_left_padding(rows)
    return model.last_state(torch.as_tensor(trimmed, device=device)).float()


def user_states(model, prefix: np.ndarray, device, batch_size: int, progress: bool = False):
    """The model's state after each left-padded prefix row: [U, d] float32 on ``device``.

    ``model`` needs ``last_state`` and ``item_embeddings`` (SeqRecModel; fakes in tests); it is
    put in eval mode. Rows are batched by prefix length and each batch's all-padding leading
    columns are dropped (the state does not depend on them), so short histories cost little.
    """
    import torch
    from tqdm.auto import tqdm

    model.eval()
    order = encoding_order(prefix)
    states = []
    starts = range(0, len(prefix), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            states.append(encode_rows(model, prefix[order[start : start + batch_size]], device))
        if not states:
            return torch.zeros((0, model.item_embeddings().shape[1]), device=device)
    out = torch.empty_like(torch.cat(states))
    out[torch.as_tensor(order, device=device)] = torch.cat(states)
    return out


def ranks_from_embeddings(
    user_states,
    item_embeddings,
    targets,
    exclude: Callable | None = None,
    topk: int = 0,
    max_scores_per_block: int = DEFAULT_SCORES_PER_BLOCK,
    progress: bool = False,
):
    """Full ranking by dot product, in user blocks so memory stays bounded.

    user_states [B, d], item_embeddings [n_items+1, d], targets [B] (numpy or torch) →
    (ranks [B] torch int64, top-``topk`` items [B, topk] torch int64 or None), on the states'
    device. ``exclude``: optional callable(block_slice) → bool mask [b, n_items+1] for that block
    (``seen_mask``); ``progress``: a progress bar over users.
    """
    import torch
    from tqdm.auto import tqdm

    item_embeddings_t = item_embeddings.float().T.contiguous()
    targets = torch.as_tensor(targets, device=user_states.device)
    with (
        torch.no_grad(),
        tqdm(total=len(targets), desc="rank", unit="user", disable=not progress) as bar,
    ):
        return rank_all(
            lambda rows: user_states[rows] @ item_embeddings_t,
            targets,
            item_embeddings.shape[0],
            exclude,
            topk=topk,
            max_scores_per_block=max_scores_per_block,
            progress=bar.update,
        )


def seen_mask(history_offsets: np.ndarray, history_items: np.ndarray, n_candidates: int, device):
    """Callable(rows) → bool [b, n_candidates], True at the items the user has already seen.

    ``history_offsets``/``history_items``: CSR of each ranked user's history
    (``UserSequences.history``), rows in the order of the ranked users."""
    import torch

    def mask(rows: slice):
        start, stop = rows.start, min(rows.stop, len(history_offsets) - 1)
        lo, hi = history_offsets[start], history_offsets[stop]
        lengths = np.diff(history_offsets[start : stop + 1])
        row_ids = torch.as_tensor(np.repeat(np.arange(stop - start), lengths), device=device)
        items = torch.as_tensor(history_items[lo:hi], device=device)
        out = torch.zeros((stop - start, n_candidates), dtype=torch.bool, device=device)
        out[row_ids, items] = True
        return out

    return mask
