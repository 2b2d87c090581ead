"""Post-hoc domain logit adjustment (SPEC §5 "Beyond DWL", ``logit-adjust``): no retraining.

The unweighted model's score of item i becomes s_i + τ·b(i) with b(i) = log ω_inverse(i), the
per-example weight the ``inverse`` scheme would give target i (with a full softmax, training with
weight ω(y) moves the optimal scores by log ω(y): Menon et al. 2020, arXiv 2007.07314). τ is
chosen on the validation split from a grid: among the τ whose overall validation NDCG@10 is at
least (1 − drop)·its τ = 0 value, the one with the best mean sparse-domain validation NDCG@10
(ties → the smallest τ). τ = 0 always qualifies, so the rule never trades overall validation
quality beyond the allowed drop.

All τ of the grid are ranked from one score block per user block: the scores are computed once
and every τ's pessimistic ranks derived from them, exactly as ``core.ranking`` ranks (τ = 0 is
bit for bit the unadjusted ranking). Torch is imported inside the functions; the modes
(``off`` | ``inverse``) are an option of the evaluate step (``EvalConfig.logit_adjust``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from components.core.metrics import ndcg_at_k
from components.core.ranking import DEFAULT_SCORES_PER_BLOCK
from components.errors import ConfigError

CALIBRATION_FILE = "calibration.json"  # in the eval dir: the same object as metrics.json's
CALIBRATION_K = 10  # the cut-off of the selection metric (NDCG@10)
BIAS_DESCRIPTION = "log inverse weight"
SELECTED_BY = "max mean sparse-domain val NDCG@10 s.t. overall val NDCG@10 >= (1 - drop) x tau=0"


def tau_grid(tau_max: float, tau_steps: int) -> np.ndarray:
    """linspace(0, tau_max, tau_steps) without repeats (tau_max = 0 → [0]); τ = 0 is first."""
    return np.unique(np.linspace(0.0, float(tau_max), int(tau_steps)))


def inverse_item_bias(weights: dict, item_domains: list[list[str]]) -> np.ndarray:
    """b(i) = log ω_inverse(i) per item_idx (float64 [n_items + 1]); the padding item gets 0.

    ω is the ``inverse`` scheme's per-example weight with the parameters weights.json recorded
    (``DomainWeighter``, as the train step's ``inverse`` variant weighs a target)."""
    from components.core.weighting import DomainWeighter

    lookup = DomainWeighter.from_weights(weights, item_domains, scheme="inverse").item_lookup()
    bias = np.zeros(len(lookup), dtype=np.float64)
    bias[1:] = np.log(lookup[1:].astype(np.float64))  # ω >= w_min > 0: finite
    return bias


def grid_ranks(
    score_block: Callable,
    targets,
    n_candidates: int,
    bias,
    taus: Sequence[float] | np.ndarray,
    exclude: Callable | None = None,
    topk: int = 0,
    topk_tau: int = 0,
    max_scores_per_block: int | None = None,
    progress: Callable[[int], None] | None = None,
):
    """Pessimistic 0-based ranks of every target under every τ: (ranks [T, B] int64, top items).

    ``score_block(rows)`` returns a FRESH float tensor [b, n_candidates] (modified in place) as
    for ``core.ranking.rank_all``, with the same user blocks; ``bias`` [n_candidates] is added
    τ times; ``exclude(rows)`` an optional bool mask (the target is never excluded). ``topk``:
    the top items [B, topk] of the adjusted scores at ``taus[topk_tau]`` (else None).
    """
    import torch

    if max_scores_per_block is None:
        max_scores_per_block = DEFAULT_SCORES_PER_BLOCK

    targets = torch.as_tensor(targets)
    device = targets.device
    bias_t = torch.tensor(np.asarray(bias, dtype=np.float64), device=device).float()  # a copy
    if bias_t.shape != (n_candidates,):
        raise ConfigError(f"logit adjustment: {len(bias_t)} item biases for {n_candidates} items")
    bias_t[0] = 0.0  # the padding item is masked anyway
    block = max(1, max_scores_per_block // n_candidates)
    ranks = torch.empty((len(taus), len(targets)), dtype=torch.int64, device=device)
    top_items = None
    if topk:
        width = min(topk, n_candidates - 1)
        top_items = torch.empty((len(targets), width), dtype=torch.int64, device=device)
    for start in range(0, len(targets), block):
        rows = slice(start, start + block)
        block_targets = targets[rows]
        scores = score_block(rows).float()
        scores[:, 0] = -torch.inf
        index = torch.arange(len(block_targets), device=device)
        mask = exclude(rows) if exclude is not None else None
        if mask is not None:
            mask = mask.clone()
            mask[index, block_targets] = False
            scores.masked_fill_(mask, -torch.inf)
        # a target scored NaN or -inf stays so under every (finite) τ: last among the candidates
        unrankable = ~(scores[index, block_targets] > -torch.inf)
        last = torch.full_like(block_targets, n_candidates - 2)
        if mask is not None:
            last = last - mask[:, 1:].sum(dim=1)
        adjusted = torch.empty_like(scores)
        for j, tau in enumerate(taus):
            if tau == 0:
                current = scores  # exactly the unadjusted scores
            else:
                current = torch.add(scores, bias_t, alpha=float(tau), out=adjusted)
            target_scores = current[index, block_targets][:, None]
            # >= counts the target itself once; NaN never beats the target (as core.ranking)
            block_ranks = torch.count_nonzero(current >= target_scores, dim=1) - 1
            ranks[j, rows] = torch.where(unrankable, last, block_ranks)
            if top_items is not None and j == topk_tau:
                top_items[rows] = current.topk(top_items.shape[1], dim=1).indices
        if progress is not None:
            progress(len(block_targets))
    return ranks, top_items


def grid_ranks_from_embeddings(
    user_states,
    item_embeddings,
    targets,
    bias,
    taus: Sequence[float] | np.ndarray,
    exclude: Callable | None = None,
    topk: int = 0,
    topk_tau: int = 0,
    progress: bool = False,
):
    """``grid_ranks`` of dot-product scores, as ``core.ranking.ranks_from_embeddings`` ranks
    them (same blocks); ``progress``: a progress bar over users."""
    import torch
    from tqdm.auto import tqdm

    item_embeddings_t = item_embeddings.float().T.contiguous()
    targets = torch.as_tensor(targets, device=user_states.device)
    with (
        torch.no_grad(),
        tqdm(total=len(targets), desc="rank x tau", unit="user", disable=not progress) as bar,
    ):
        return grid_ranks(
            lambda rows: user_states[rows] @ item_embeddings_t,
            targets,
            item_embeddings.shape[0],
            bias,
            taus,
            exclude,
            topk=topk,
            topk_tau=topk_tau,
            progress=bar.update,
        )


def ndcg_curves(
    ranks: np.ndarray, target_domains: Sequence[Sequence[str]], sparse_domains: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per τ (rows of ``ranks`` [T, B]): overall NDCG@10 and the mean over sparse domains of the
    per-domain NDCG@10 (a target counts in each of its domains; domains without a target are
    left out of the mean; none left: NaN)."""
    values = ndcg_at_k(np.asarray(ranks), CALIBRATION_K)  # [T, B]
    overall = values.mean(axis=1) if values.shape[1] else np.full(len(values), np.nan)
    per_domain = []
    for domain in sparse_domains:
        members = np.array([domain in ds for ds in target_domains], dtype=bool)
        if members.any():
            per_domain.append(values[:, members].mean(axis=1))
    sparse = np.mean(per_domain, axis=0) if per_domain else np.full(len(values), np.nan)
    return overall, sparse


def select_tau(overall: np.ndarray, sparse: np.ndarray, max_overall_drop: float = 0.0) -> int:
    """Index of the chosen τ: the best ``sparse`` among the τ with ``overall`` >= (1 − drop)·
    ``overall[0]`` (index 0 is τ = 0, which always qualifies); ties and NaN → the smallest τ."""
    overall, sparse = np.asarray(overall, float), np.asarray(sparse, float)
    qualifies = overall >= (1.0 - max_overall_drop) * overall[0]
    qualifies[0] = True
    candidates = np.where(qualifies & ~np.isnan(sparse), sparse, -np.inf)
    return int(np.argmax(candidates))  # first maximum: the smallest τ among ties


def calibration_record(
    taus: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    chosen: int,
    max_overall_drop: float,
) -> dict:
    """metrics.json's ``logit_adjust`` (and calibration.json): the chosen τ and the whole curve;
    the test values are for the record only, never used to choose."""
    curve = [
        {
            "tau": float(tau),
            f"val_ndcg@{CALIBRATION_K}": float(val[0][j]),
            f"val_sparse_ndcg@{CALIBRATION_K}": float(val[1][j]),
            f"test_ndcg@{CALIBRATION_K}": float(test[0][j]),
            f"test_sparse_ndcg@{CALIBRATION_K}": float(test[1][j]),
        }
        for j, tau in enumerate(taus)
    ]
    return {
        "bias": BIAS_DESCRIPTION,
        "tau": float(taus[chosen]),
        "selected_by": SELECTED_BY,
        "max_overall_drop": float(max_overall_drop),
        "curve": curve,
    }
