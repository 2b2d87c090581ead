"""Hand-made evaluate step outputs for the report tests: many domains, chosen ranks, chosen
settings, without a dataset, a model or a ranking pass.

``synthetic_population`` draws each test user's target domain with Zipf shares (domain 0 the
sparsest), so the dense domains have hundreds of test users and most sparse ones a handful, as
on a real catalogue with hundreds of categories. ``write_eval`` writes what ``load_eval`` reads
(metrics.json, per_user.parquet) for one variant's ranks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

THETA = 0.5


def synthetic_population(n_domains: int, n_users: int, seed: int = 0) -> dict:
    """Domains d000 … (sparsest → densest), their train shares, each user's target domain."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(n_domains, 0, -1)  # Zipf, ascending: the last domain is densest
    shares = weights / weights.sum()
    names = [f"d{i:03d}" for i in range(n_domains)]
    target = rng.choice(n_domains, size=n_users, p=shares)
    return {"names": names, "shares": shares, "target": target}


def base_ranks(population: dict, seed: int = 1) -> np.ndarray:
    """A baseline's 0-based ranks: geometric, so about a third of the users score NDCG@10 > 0."""
    rng = np.random.default_rng(seed)
    return rng.geometric(0.05, size=len(population["target"])) - 1


def model_summary(**overrides) -> dict:
    """metrics.json ``model`` as the evaluate step writes it (``model_summary``)."""
    model: dict[str, Any] = {
        "scheme": "none",
        "loss": "ce",
        "best_epoch": 3,
        "epochs_run": 5,
        "model": {"max_len": 50, "d_model": 64, "n_blocks": 2, "n_heads": 2},
        "weighting": {},
        "train": {"seed": 0, "epochs": 5},
    }
    for key, value in overrides.items():
        model[key] = {**model[key], **value} if isinstance(model.get(key), dict) else value
    return model


def write_eval(
    root: Path,
    population: dict,
    ranks: np.ndarray,
    model: dict | None = None,
    logit_adjust: dict | None = None,
    extra: dict | None = None,
) -> str:
    """An eval dir for ``ranks`` (0-based, one per user) on ``population``; ``extra``: more
    metrics.json fields."""
    names, shares, target = population["names"], population["shares"], population["target"]
    n_users = len(target)
    uniform = 1.0 / len(names)
    power = [[names[t]] if u % 11 == 0 else [] for u, t in enumerate(target)]
    per_user = pa.table(
        {
            "user_idx": pa.array(np.arange(n_users), pa.int32()),
            "target_item_idx": pa.array(np.arange(1, n_users + 1), pa.int32()),
            "rank": pa.array(np.asarray(ranks), pa.int64()),
            "target_domains": pa.array([[names[t]] for t in target], pa.list_(pa.string())),
            f"power_domains_{THETA:g}": pa.array(power, pa.list_(pa.string())),
        }
    )
    metrics = {
        "version": 1,
        "dataset": {"name": "synthetic", "n_users": n_users},
        "exclude_seen": False,
        "n_users": n_users,
        "n_items": n_users,
        "domains": [
            {"domain": d, "p_d": float(p), "sparse": bool(p < uniform), "unlabelled": False}
            for d, p in zip(names, shares, strict=True)
        ],
        "power_thresholds": [THETA],
        "model": model or model_summary(),
    }
    if logit_adjust is not None:
        metrics["logit_adjust"] = logit_adjust
    metrics.update(extra or {})
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(per_user, root / "per_user.parquet")
    (root / "metrics.json").write_text(json.dumps(metrics))
    return str(root)


def ndcg10(ranks: np.ndarray) -> np.ndarray:
    """NDCG@10 per user from 0-based ranks, written out again (float64)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0)
