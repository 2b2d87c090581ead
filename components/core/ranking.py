"""Full-ranking metrics (SPEC §7), shared by the train step's validation and the evaluate step.

Ranks are 0-based and pessimistic: rank = number of real items other than the target whose score
is >= the target's score, so a constant-score model ranks every target last (Recall@K ≈ 0).
The padding item 0 is never a candidate.

Also here: catalogue coverage, bootstrap confidence intervals (users resampled) and the paired
bootstrap used to compare two variants on the same users.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

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
        if topk:
            top_items[rows] = top
        if progress is not None:
            progress(len(targets[rows]))
    return ranks, top_items


def user_states(model, prefix: np.ndarray, device, batch_size: int, progress: bool = False):
    """The model's state after each left-padded prefix row: [U, d] float32 on ``device``.

    ``model`` needs ``last_state`` and ``item_embeddings`` (SeqRecModel; fakes in tests); it is
    put in eval mode. Rows are batched by prefix length and each batch's all-padding leading
    columns are dropped (the state does not depend on them), so short histories cost little.
    """
    import torch
    from tqdm.auto import tqdm

    from components.train.data import trim_left_padding

    model.eval()
    order = np.argsort((prefix != 0).sum(axis=1), kind="stable")
    states = []
    starts = range(0, len(prefix), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="encode", unit="batch", disable=not progress):
            (rows,) = trim_left_padding(prefix[order[start : start + batch_size]])
            states.append(model.last_state(torch.as_tensor(rows, device=device)).float())
        if not states:
            return torch.zeros((0, model.item_embeddings().shape[1]), device=device)
    out = torch.empty_like(torch.cat(states))
    out[torch.as_tensor(order, device=device)] = torch.cat(states)
    return out


def ranks_from_embeddings(
    user_states,
    item_embeddings,
    targets,
    exclude=None,
    max_scores_per_block: int = DEFAULT_SCORES_PER_BLOCK,
):
    """Full ranking by dot product, in user blocks so memory stays bounded.

    user_states [B, d], item_embeddings [n_items+1, d], targets [B] → ranks [B] (torch int64).
    ``exclude``: optional callable(block_slice) → bool mask [b, n_items+1] for that block.
    """
    item_embeddings_t = item_embeddings.T.contiguous()
    ranks, _ = rank_all(
        lambda rows: user_states[rows] @ item_embeddings_t,
        targets,
        item_embeddings.shape[0],
        exclude,
        max_scores_per_block=max_scores_per_block,
    )
    return ranks


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user Recall@K (= HR@K with one held-out item): 1 if rank < K."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@K with one relevant item: 1/log2(rank + 2) if rank < K, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def coverage_at_k(top_items: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@K: share of the n_items real items shown in at least one user's top K."""
    shown = np.unique(np.asarray(top_items)[:, :k])
    return float(np.count_nonzero(shown > 0)) / n_items


def stable_seed(*parts) -> int:
    """A seed derived from ``parts`` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def _resample_index(rng: np.random.Generator, n: int, n_boot: int, max_elements: int):
    """Yield index arrays [b, n] of users drawn with replacement, n_boot rows in all."""
    chunk = max(1, max_elements // max(n, 1))
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def _resampled_means(
    values: np.ndarray, n_boot: int, rng: np.random.Generator, max_elements: int
) -> np.ndarray:
    """Column means of ``n_boot`` resamples (rows drawn with replacement) of values [n, m].

    Rank metrics take few distinct values (Recall@K: 2, NDCG@K: K+1), so when there are few
    distinct rows we draw how often each is picked — Multinomial(n, row frequencies), the same
    distribution as drawing n rows — instead of n indices per resample: O(distinct) not O(n).
    """
    n = len(values)
    unique, inverse = np.unique(values, axis=0, return_inverse=True)
    if 4 * len(unique) <= n:
        frequencies = np.bincount(inverse.ravel(), minlength=len(unique)) / n
        counts = rng.multinomial(n, frequencies, size=n_boot)  # [n_boot, distinct]
        # a plain sum over the distinct rows: identical columns give bit-identical means
        return (counts[:, :, None] * unique[None, :, :]).sum(axis=1) / n
    return np.concatenate(
        [values[idx].mean(axis=1) for idx in _resample_index(rng, n, n_boot, max_elements)]
    )


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_elements: int = 1 << 23,
) -> np.ndarray:
    """Percentile bootstrap CI of the mean, resampling users (rows), seeded.

    ``values`` [n] or [n, m] (m metrics of the same users, resampled together) → [2] or [m, 2]
    (low, high). Empty input → NaN bounds; n_boot = 0 → NaN bounds (CI not computed).
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.ndim == 1
    values = values[:, None] if flat else values
    n, m = values.shape
    if n == 0 or n_boot <= 0:
        out = np.full((m, 2), np.nan)
        return out[0] if flat else out
    means = _resampled_means(values, n_boot, np.random.default_rng(seed), max_elements)
    tail = (1.0 - confidence) / 2.0 * 100.0
    out = np.percentile(means, [tail, 100.0 - tail], axis=0).T  # [m, 2]
    return out[0] if flat else out


def paired_bootstrap(
    variant: np.ndarray,
    baseline: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_elements: int = 1 << 23,
) -> dict:
    """Compare two variants measured on the SAME users, resampling users jointly.

    ``variant`` and ``baseline`` are per-user metric values [n] aligned by user. Returns the
    point estimates and percentile CIs of delta = mean(variant) − mean(baseline) and of
    lift = delta / mean(baseline) (NaN where the baseline mean is 0), and ``significant``
    (the delta CI excludes 0).
    """
    variant = np.asarray(variant, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if variant.shape != baseline.shape or variant.ndim != 1:
        raise ValueError("paired_bootstrap needs two per-user arrays of the same length")
    n = len(variant)
    mean_v = float(variant.mean()) if n else np.nan
    mean_b = float(baseline.mean()) if n else np.nan
    delta = mean_v - mean_b
    lift = delta / mean_b if mean_b else np.nan
    result = {
        "n": n,
        "variant": mean_v,
        "baseline": mean_b,
        "delta": delta,
        "delta_ci": [np.nan, np.nan],
        "lift": lift,
        "lift_ci": [np.nan, np.nan],
        "significant": False,
    }
    if n == 0 or n_boot <= 0:
        return result
    pairs = np.stack([variant, baseline], axis=1)  # resampled together: the pairing
    means = _resampled_means(pairs, n_boot, np.random.default_rng(seed), max_elements)
    deltas = means[:, 0] - means[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = np.where(means[:, 1] > 0, deltas / means[:, 1], np.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(deltas, [tail, 100.0 - tail])
    result["delta_ci"] = [float(low), float(high)]
    finite = lifts[np.isfinite(lifts)]
    if len(finite) == n_boot:  # a lift CI only when every resample has a non-zero baseline
        result["lift_ci"] = [float(v) for v in np.percentile(finite, [tail, 100.0 - tail])]
    result["significant"] = bool(low > 0 or high < 0)
    return result
