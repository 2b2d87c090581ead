"""The validation pass: full-ranking Recall@10 / NDCG@10 of a split over every item, the
number the trainer keeps the best epoch by and stops early on (SPEC §6)."""

from __future__ import annotations

import torch

from components.core.metrics import ndcg_at_k, recall_at_k
from components.core.model import SeqRecModel
from components.core.ranking import ranks_from_embeddings, user_states
from components.core.sequences import UserSequences

METRIC = "ndcg@10"  # the metric of the best epoch and of early stopping


@torch.no_grad()
def evaluate_split(
    model: SeqRecModel,
    seqs: UserSequences,
    split: str,
    device: torch.device,
    batch_size: int = 1024,
) -> dict:
    """Full-ranking Recall@10 / NDCG@10 of ``split`` ('valid' or 'test') over every item."""
    was_training = model.training
    _, prefix, target = seqs.prefixes(split, model.cfg.max_len)
    states = user_states(model, prefix, device, batch_size)  # puts the model in eval mode
    ranks, _ = ranks_from_embeddings(states, model.item_embeddings(), target)
    ranks = ranks.cpu().numpy()
    model.train(was_training)
    return {
        "users": len(target),
        "recall@10": float(recall_at_k(ranks, 10).mean()) if len(ranks) else 0.0,
        "ndcg@10": float(ndcg_at_k(ranks, 10).mean()) if len(ranks) else 0.0,
    }
