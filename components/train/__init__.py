"""The train step: a causal-transformer recommender trained with a domain-weighted loss.

``train`` is imported lazily so that importing this package does not import torch.
"""

from __future__ import annotations

__all__ = ["train"]


def __getattr__(name: str):
    if name == "train":
        from components.train.trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
