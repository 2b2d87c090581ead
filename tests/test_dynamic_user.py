"""The `dynamic-user` scheme (SPEC §5 "Beyond DWL"): dynamic's ω only for targets in a domain
holding ≥ θ of the user's train history, 1 otherwise — against a slow per-example reference, its
limits (θ tiny = dynamic, θ = 1 = none), the stats step's power users and the train step."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from components.core.sequences import UserSequences
from components.core.stats_artifact import DEFAULT_POWER_THRESHOLDS
from components.core.weighting import DEFAULTS, DomainWeighter, WeightingSpec
from components.core.weighting.incidence import ItemDomains
from components.core.weighting.user_gate import qualifying_keys
from components.errors import ConfigError
from components.ingest import ingest
from components.schema import load_dataset
from components.stats import StatsConfig, compute_stats
from components.stats.cli import main as stats_main
from components.train.trainer import train
from tests.test_train import TINY, write_dataset
from tests.test_weighting import COUNTS, ITEM_DOMAINS, make_weights

torch.set_num_threads(1)
N_ITEMS = len(ITEM_DOMAINS) - 1


def histories(seed: int, n_users: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Random train histories as CSR (offsets, item_idx); some users have none."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return offsets, rng.integers(1, N_ITEMS + 1, int(offsets[-1])).astype(np.int64)


def weighters(theta: float, offsets, items) -> tuple[DomainWeighter, DomainWeighter]:
    """(dynamic-user, dynamic) with the same weights, moved away from 1 by one update."""
    out = []
    for scheme in ("dynamic-user", "dynamic"):
        w = DomainWeighter.from_weights(
            make_weights(COUNTS), ITEM_DOMAINS, scheme, user_theta=theta
        )
        w.set_user_history(offsets, items)
        w.observe(torch.tensor([1, 2, 3, 3, 3, 4, 5]))
        w.epoch_end(1, 1)
        out.append(w)
    assert len(set(out[1].current_weights().values())) == 3  # the weights differ per domain
    return out[0], out[1]


def ref_weights(targets, users, theta, offsets, items, dynamic) -> list[float]:
    """One example at a time: the user's domain shares from their items, then the gate."""
    out = []
    for t, u in zip(targets.tolist(), users.tolist(), strict=True):
        history = items[offsets[u] : offsets[u + 1]].tolist()
        shares = {
            d: sum(d in ITEM_DOMAINS[i] for i in history) / len(history)
            for d in ITEM_DOMAINS[t]
            if history
        }
        passes = any(share >= theta for share in shares.values())
        out.append(0.0 if t == 0 else dynamic[t] if passes else 1.0)
    return out


def batch(seed: int, offsets, size: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return (
        torch.from_numpy(rng.integers(0, N_ITEMS + 1, size)),
        torch.from_numpy(rng.integers(0, len(offsets) - 1, size)),
    )


@pytest.mark.parametrize(("seed", "theta"), [(0, 0.5), (1, 0.2), (2, 0.34), (3, 0.75), (4, 1.0)])
def test_omega_equals_the_slow_per_example_reference(seed, theta):
    offsets, items = histories(seed)
    user_w, dynamic_w = weighters(theta, offsets, items)
    targets, users = batch(seed, offsets)
    got = user_w.example_weights(targets, users)
    dynamic = dynamic_w.item_lookup().astype(np.float64)
    expected = ref_weights(targets, users, theta, offsets, items, dynamic)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-7)
    assert got.dtype == torch.float32 and got.shape == targets.shape
    # a 2-D batch is weighed element by element, the same way
    grid = user_w.example_weights(targets.reshape(6, 10), users.reshape(6, 10))
    assert torch.equal(grid.reshape(-1), got)


def test_a_tiny_theta_is_exactly_dynamic_on_the_users_own_items():
    offsets, items = histories(5)
    user_w, dynamic_w = weighters(1e-9, offsets, items)
    users = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    targets = torch.from_numpy(items)  # training targets are the user's train items
    padded = torch.cat([targets, torch.zeros(3, dtype=torch.int64)])
    padded_users = torch.cat([users, torch.zeros(3, dtype=torch.int64)])
    assert torch.equal(
        user_w.example_weights(padded, padded_users), dynamic_w.example_weights(padded)
    )


def test_theta_one_without_a_single_domain_user_is_none():
    # every user has a 'rare'-only and a 'mid'-only item: no domain holds all their history
    rng = np.random.default_rng(6)
    rows = [
        [1, 2, *rng.integers(1, N_ITEMS + 1, int(rng.integers(0, 5))).tolist()] for _ in range(9)
    ]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    items = np.concatenate(rows).astype(np.int64)
    user_w, _ = weighters(1.0, offsets, items)
    targets, users = batch(7, offsets)
    targets[:4] = 0  # padding keeps weight 0
    omega = user_w.example_weights(targets, users)
    assert torch.equal(omega, (targets > 0).float())


def test_the_gate_is_the_stats_steps_power_users(tmp_path):
    ingest("synthetic", tmp_path / "data", num_users=80, num_items=60, num_domains=5, seed=1)
    compute_stats(tmp_path / "data", tmp_path / "stats")
    dataset = load_dataset(tmp_path / "data")
    domains = json.loads((tmp_path / "stats" / "weights.json").read_text())["domains"]
    incidence = ItemDomains.from_lists(dataset.item_domains(), domains)
    offsets, items = UserSequences.from_interactions(
        dataset.interactions, dataset.n_items
    ).train_sequences()
    power = pq.read_table(tmp_path / "stats" / "power_users.parquet").to_pylist()
    for theta in DEFAULT_POWER_THRESHOLDS:
        keys = qualifying_keys(offsets, items, incidence, theta)
        pairs = {(int(k) // len(domains), domains[int(k) % len(domains)]) for k in keys}
        expected = {(r["user_idx"], r["domain"]) for r in power if r["share"] >= theta}
        assert pairs == expected and expected, theta


def test_the_default_theta_is_the_power_user_threshold():
    assert DEFAULTS.user_theta == DEFAULT_POWER_THRESHOLDS[0] == StatsConfig().power_thresholds[0]


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, float("nan")])
def test_a_bad_user_theta_names_the_option(value, capsys):
    with pytest.raises(ConfigError, match=r"^--user-theta: must be"):
        WeightingSpec(scheme="dynamic-user", user_theta=value)
    argv = ["--dataset", "missing", "--output", "out", "--user-theta", str(value)]
    assert stats_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --user-theta: must be") and "\n" not in err


def test_the_train_step_passes_each_target_its_own_user(tmp_path, monkeypatch):
    dataset = write_dataset(tmp_path / "data")
    compute_stats(dataset, tmp_path / "stats")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = DomainWeighter.example_weights

    def spy(self, targets, users=None, batch=None):
        seen.append((targets.clone(), users.clone()))
        return original(self, targets, users, batch)

    monkeypatch.setattr(DomainWeighter, "example_weights", spy)
    options = dict(scheme="dynamic-user", epochs=1, **TINY)
    train(dataset, tmp_path / "stats" / "weights.json", tmp_path / "m", **options)
    offsets, items = UserSequences.from_interactions(
        load_dataset(dataset).interactions, 60
    ).train_sequences()
    assert len(seen) == 5  # 80 users, batches of 16
    for targets, users in seen:
        assert targets.shape == users.shape and (targets > 0).all()
        for t, u in zip(targets.tolist(), users.tolist(), strict=True):
            assert t in items[offsets[u] + 1 : offsets[u + 1]]  # a target of u's own window
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["weighting"]["user_theta"] == 0.5
    assert config["weighting_sources"]["user_theta"] == "weights.json"
