"""Per-user ranking metrics (SPEC §7) from 0-based pessimistic ranks (``core.ranking``). Numpy only."""

from __future__ import annotations

import numpy as np


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


def metric_names(ks) -> list[str]:
    """``recall@K``, ``ndcg@K`` for each K: the metric columns, in this order everywhere."""
    return [f"{name}@{k}" for k in ks for name in ("recall", "ndcg")]


def per_user_metrics(ranks: np.ndarray, ks) -> np.ndarray:
    """[U, 2·len(ks)] per-user metric values, columns in ``metric_names(ks)`` order."""
    return np.stack([f(ranks, k) for k in ks for f in (recall_at_k, ndcg_at_k)], axis=1).reshape(
        len(ranks), 2 * len(ks)
    )


def metric_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user values of one metric named like ``ndcg@10`` or ``recall@20``."""
    name, k = metric.split("@")
    return {"recall": recall_at_k, "ndcg": ndcg_at_k}[name](ranks, int(k))
