"""Tiny hand-built datasets, stats dirs and fake models for the evaluate / report tests.

Each user's sequence is a chain of consecutive items (s, s+1, …), so "next item = last item + 1"
is a perfect predictor: the ``OracleModel`` scores exactly that item highest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.io import sha256_file
from components.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

DOMAINS = ("rare", "mid", "dense")  # sparsest → densest by construction


def item_domains_for(n_items: int) -> list[list[str]]:
    """Domains of item 1..n_items: every 7th item is rare, every 3rd mid (some both), else dense."""
    domains = []
    for item in range(1, n_items + 1):
        labels = []
        if item % 7 == 0:
            labels.append("rare")
        if item % 3 == 0:
            labels.append("mid")
        domains.append(labels or ["dense"])
    return domains


def write_dataset(root: Path, sequences: list[list[int]], n_items: int) -> Path:
    """An ingest output dir from per-user item sequences (leave-one-out split)."""
    root.mkdir(parents=True, exist_ok=True)
    items = pa.table(
        {
            "item_idx": pa.array(range(1, n_items + 1), pa.int32()),
            "item_id": pa.array([f"i{i}" for i in range(1, n_items + 1)]),
            "domains": pa.array(item_domains_for(n_items), pa.list_(pa.string())),
        },
        schema=ITEMS_SCHEMA,
    )
    rows = {"user_idx": [], "item_idx": [], "timestamp": [], "split": []}
    for user, sequence in enumerate(sequences):
        for position, item in enumerate(sequence):
            rows["user_idx"].append(user)
            rows["item_idx"].append(item)
            rows["timestamp"].append(1000 * user + position)
            last = len(sequence) - 1
            rows["split"].append(
                "test" if position == last else "valid" if position == last - 1 else "train"
            )
    interactions = pa.table(rows, schema=INTERACTIONS_SCHEMA)
    pq.write_table(items, root / "items.parquet")
    pq.write_table(interactions, root / "interactions.parquet")
    manifest = {
        "source": "test",
        "counts": {
            "users": len(sequences),
            "items": n_items,
            "interactions": interactions.num_rows,
        },
        "files": {
            name: {"sha256": sha256_file(root / name)}
            for name in ("items.parquet", "interactions.parquet")
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def chain_sequences(n_users: int, n_items: int, length: int, seed: int = 0) -> list[list[int]]:
    """User u: ``length`` consecutive items from a random start (wrapping, 1-based)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(1, n_items + 1, size=n_users)
    return [[int((s - 1 + j) % n_items + 1) for j in range(length)] for s in starts]


def write_stats(root: Path, dataset_dir: Path, thresholds=(0.5, 0.2)) -> Path:
    """A stats step output computed by hand from the dataset's train split."""
    from components.schema import dataset_fingerprint, load_dataset

    dataset = load_dataset(dataset_dir)
    item_domains = dataset.item_domains()
    train = dataset.interactions.filter(pc.equal(dataset.interactions["split"], "train"))
    users = train["user_idx"].to_numpy()
    items = train["item_idx"].to_numpy()
    domain_counts = dict.fromkeys(DOMAINS, 0)
    per_user: dict[int, dict[str, int]] = {}
    for user, item in zip(users, items, strict=True):
        for domain in item_domains[item]:
            domain_counts[domain] += 1
            per_user.setdefault(int(user), {}).setdefault(domain, 0)
            per_user[int(user)][domain] += 1
    total = sum(domain_counts.values())
    order = sorted(DOMAINS, key=lambda d: domain_counts[d])
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "domain": order,
                "n_d": [domain_counts[d] for d in order],
                "p_d": [domain_counts[d] / total for d in order],
            }
        ),
        root / "domain_stats.parquet",
    )
    n_train = np.bincount(users)
    power = {"user_idx": [], "domain": [], "share": []}
    for user, counts in sorted(per_user.items()):
        for domain, count in counts.items():
            share = count / n_train[user]
            if share >= min(thresholds):
                power["user_idx"].append(user)
                power["domain"].append(domain)
                power["share"].append(share)
    pq.write_table(
        pa.table(
            {
                "user_idx": pa.array(power["user_idx"], pa.int32()),
                "domain": pa.array(power["domain"], pa.string()),
                "share": pa.array(power["share"], pa.float64()),
            }
        ),
        root / "power_users.parquet",
    )
    weights = {
        "version": 1,
        "dataset": dataset_fingerprint(dataset),
        "domains": order,
        "power_thresholds": list(thresholds),
    }
    (root / "weights.json").write_text(json.dumps(weights))
    return root


class FakeModel:
    """The two methods the evaluate step calls, from fixed tensors; records every prefix."""

    def __init__(self, n_items: int, state_fn, item_embeddings):
        self.n_items = n_items
        self.state_fn = state_fn
        self._item_embeddings = item_embeddings
        self.prefixes = []

    def eval(self):
        return self

    def last_state(self, prefix):
        self.prefixes.append(prefix.clone())
        return self.state_fn(prefix)

    def item_embeddings(self):
        return self._item_embeddings


def oracle_model(n_items: int) -> FakeModel:
    """Scores item (last prefix item + 1, wrapping) highest: perfect on chain sequences."""
    import torch

    def state(prefix):
        nxt = prefix[:, -1] % n_items + 1
        return torch.nn.functional.one_hot(nxt, n_items + 1).float()

    return FakeModel(n_items, state, torch.eye(n_items + 1))


def constant_model(n_items: int) -> FakeModel:
    """Every item gets the same score."""
    import torch

    return FakeModel(n_items, lambda prefix: torch.ones(len(prefix), 4), torch.ones(n_items + 1, 4))


def copy_model(n_items: int) -> FakeModel:
    """Scores the items of the input prefix 1, everything else 0 (would exploit any leakage)."""
    import torch

    def state(prefix):
        out = torch.zeros(len(prefix), n_items + 1)
        out.scatter_(1, prefix, 1.0)
        out[:, 0] = 0.0
        return out

    return FakeModel(n_items, state, torch.eye(n_items + 1))


def write_model_dir(root: Path, dataset_dir: Path, scheme: str = "none", seed: int = 0) -> Path:
    """A train step output with a small random SeqRecModel, logs and weight history."""
    import torch

    from components.core.model import ModelConfig, SeqRecModel, model_config_dict
    from components.schema import dataset_fingerprint, load_dataset

    dataset = load_dataset(dataset_dir)
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=dataset.n_items, max_len=8, d_model=8, n_blocks=1, n_heads=2)
    model = SeqRecModel(cfg)
    root.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), root / "model.pt")
    config = {
        "model": model_config_dict(cfg),
        "scheme": scheme,
        "loss": "ce",
        "dataset": dataset_fingerprint(dataset),
        "best_epoch": 2,
    }
    (root / "config.json").write_text(json.dumps(config))
    weights = {d: 1.0 for d in DOMAINS}
    history = []
    with open(root / "train_log.jsonl", "w") as log:
        for epoch in range(1, 4):
            if scheme == "dynamic":
                weights = {d: w * (1.2 if d == "rare" else 0.95) for d, w in weights.items()}
            history.append({"epoch": epoch, "step": 10 * epoch, "weights": dict(weights)})
            log.write(
                json.dumps(
                    {
                        "epoch": epoch,
                        "train_loss": 5.0 - epoch,
                        "val_ndcg@10": 0.05 * epoch,
                        "val_recall@10": 0.1 * epoch,
                        "domain_weights": weights,
                    }
                )
                + "\n"
            )
    (root / "weights_history.json").write_text(json.dumps(history))
    return root
