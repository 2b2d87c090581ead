"""The evaluate step: full-ranking Recall@K / NDCG@K per domain and cohort, with bootstrap CIs.

``evaluate`` is imported lazily so that importing this package never imports torch.
"""

from __future__ import annotations

__all__ = ["evaluate"]


def evaluate(*args, **kwargs) -> dict:
    """See :func:`components.evaluate.evaluate.evaluate`."""
    from components.evaluate.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
