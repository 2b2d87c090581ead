"""The validation pass: full-ranking Recall / NDCG at 10 and 20 of a split over every item, under
the run's protocol (history kept, or masked as ``--exclude-seen`` masks it in evaluate); the
selection metric (``--select-metric``) keeps the best epoch and stops early (SPEC §6)."""

from __future__ import annotations

import torch

from components.core.metrics import ndcg_at_k, recall_at_k
from components.core.model import SeqRecModel
from components.core.ranking import ranks_from_embeddings, seen_mask, user_states
from components.core.sequences import UserSequences
from components.train.config import VALIDATION_CUTOFFS


@torch.no_grad()
def evaluate_split(
    model: SeqRecModel,
    seqs: UserSequences,
    split: str,
    device: torch.device,
    batch_size: int = 1024,
    exclude_seen: bool = False,
) -> dict:
    """Full-ranking Recall/NDCG@10/@20 of ``split`` ('valid' or 'test') over every item;
    ``exclude_seen``: the items before the target are out of the ranking (evaluate's protocol)."""
    was_training = model.training
    _, prefix, target = seqs.prefixes(split, model.cfg.max_len)
    states = user_states(model, prefix, device, batch_size)  # puts the model in eval mode
    n_candidates = model.item_embeddings().shape[0]
    exclude = seen_mask(*seqs.history(split), n_candidates, device) if exclude_seen else None
    ranks, _ = ranks_from_embeddings(states, model.item_embeddings(), target, exclude)
    ranks = ranks.cpu().numpy()
    model.train(was_training)
    result: dict = {"users": len(target)}
    for k in VALIDATION_CUTOFFS:
        result[f"recall@{k}"] = float(recall_at_k(ranks, k).mean()) if len(ranks) else 0.0
        result[f"ndcg@{k}"] = float(ndcg_at_k(ranks, k).mean()) if len(ranks) else 0.0
    return result
