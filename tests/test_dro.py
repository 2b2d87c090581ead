"""The `dro` scheme (online group DRO over target domains, SPEC §5 "Beyond DWL"): ω and the q
update against a slow float64 reference, the invariants of q, DDP agreement and resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from components.core.model_artifact import model_summary
from components.core.weighting import DomainWeighter, WeightingSpec
from components.core.weighting.dro import LOG_Q_SPAN
from components.errors import ConfigError
from components.stats import compute_stats
from components.train.trainer import train
from tests.test_train import REPO, TINY, write_dataset
from tests.test_weighting import make_weights

torch.set_num_threads(1)

# groups: rare, mid, common; '(none)' is unlabelled and 'empty' has no train interactions, so
# neither is a group: items 6 and 8 are ungrouped (ω = 1), item 7 counts in 'rare' only
COUNTS = {"rare": 10, "mid": 100, "common": 1000, "(none)": 50, "empty": 0}
ITEMS = [
    [],
    ["rare"],
    ["mid"],
    ["common"],
    ["rare", "common"],
    ["rare", "mid", "common"],
    ["(none)"],
    ["rare", "(none)"],
    ["empty"],
    ["empty", "mid"],
]
GROUPS = ("rare", "mid", "common")
N_ITEMS = len(ITEMS) - 1


def dro(eta: float = 0.5, beta: float = 0.7) -> DomainWeighter:
    weights = make_weights(COUNTS, unlabelled_domains=["(none)"])
    return DomainWeighter.from_weights(weights, ITEMS, "dro", eta=eta, beta=beta)


# ---- the slow reference, one example at a time, in float64 ----------------------------------


def shares(item: int) -> dict[str, float]:
    groups = [d for d in dict.fromkeys(ITEMS[item]) if d in GROUPS]
    return {g: 1.0 / len(groups) for g in groups}


def ref_omega(targets, batch, q: dict) -> list[float]:
    mass: dict[str, float] = defaultdict(float)
    for t in batch:
        for g, s in shares(int(t)).items():
            mass[g] += s
    total = math.fsum(mass.values())
    present = math.fsum(q[g] for g in mass)
    out = []
    for t in targets:
        t = int(t)
        if t == 0:
            out.append(0.0)
        elif not shares(t):
            out.append(1.0)
        else:
            out.append(
                total / present * math.fsum(s * q[g] / mass[g] for g, s in shares(t).items())
            )
    return out


class RefDRO:
    def __init__(self, eta: float, beta: float):
        self.eta, self.beta = eta, beta
        self.log_q = {g: -math.log(len(GROUPS)) for g in GROUPS}
        self.ema: dict[str, float] = {g: 0.0 for g in GROUPS}
        self.seen: set[str] = set()

    def q(self) -> dict[str, float]:
        return {g: math.exp(v) for g, v in self.log_q.items()}

    def update(self, targets, losses) -> None:
        sums: dict[str, float] = defaultdict(float)
        mass: dict[str, float] = defaultdict(float)
        for t, loss in zip(targets, losses, strict=True):
            for g, s in shares(int(t)).items():
                sums[g] += s * float(loss)
                mass[g] += s
        for g in mass:
            batch = sums[g] / mass[g]
            self.ema[g] = (
                self.beta * self.ema[g] + (1 - self.beta) * batch if g in self.seen else batch
            )
            self.seen.add(g)
        raw = {g: self.log_q[g] + self.eta * self.ema[g] for g in GROUPS}
        norm = math.log(math.fsum(math.exp(v) for v in raw.values()))
        self.log_q = {g: v - norm for g, v in raw.items()}


def batches(seed: int, n: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        size = int(rng.integers(3, 30))
        out.append((rng.integers(0, N_ITEMS + 1, size), rng.uniform(0.1, 9.0, size)))
    return out


# ---- the formula -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_omega_and_the_update_equal_the_slow_reference_over_several_batches(seed):
    w, ref = dro(), RefDRO(0.5, 0.7)
    for targets, losses in batches(seed):
        t = torch.from_numpy(targets)
        omega = w.example_weights(t)
        np.testing.assert_allclose(omega.numpy(), ref_omega(targets, targets, ref.q()), rtol=1e-6)
        w.observe_losses(t, torch.from_numpy(losses).float())
        ref.update(targets, torch.from_numpy(losses).float().double().numpy())
        q = w.group_weights()
        assert q == pytest.approx(ref.q(), rel=1e-12, abs=0)
    # the recorded weights are |G|·q per group, 1 for the domains that are not groups
    weights = w.current_weights()
    assert [weights[g] for g in GROUPS] == pytest.approx([3 * ref.q()[g] for g in GROUPS])
    assert weights["(none)"] == weights["empty"] == 1.0


def test_a_shard_weighs_with_the_masses_of_the_global_batch():
    w = dro()
    w.observe_losses(torch.tensor([1, 2, 3, 5]), torch.tensor([5.0, 1.0, 0.5, 2.0]))
    batch = np.array([[0, 1, 2, 3], [4, 5, 3, 3], [0, 0, 7, 6]])
    mine = torch.from_numpy(batch[1:])  # this process's rows
    got = w.example_weights(mine[mine > 0], batch=batch)
    expected = ref_omega(batch[1:][batch[1:] > 0], batch.ravel(), w.group_weights())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_the_weighted_mean_is_the_q_weighted_mean_of_the_group_losses():
    w = dro()
    for targets, losses in batches(3):  # a q far from uniform
        w.observe_losses(torch.from_numpy(targets), torch.from_numpy(losses))
    q = w.group_weights()
    assert max(q.values()) / min(q.values()) > 1.05
    targets = np.array([1, 2, 3, 3, 3, 4, 5, 7, 2, 3])  # every target grouped, every group here
    losses = np.random.default_rng(0).uniform(0.5, 5.0, len(targets))
    omega = w.example_weights(torch.from_numpy(targets)).double().numpy()
    group_loss = {
        g: sum(shares(t).get(g, 0) * loss for t, loss in zip(targets, losses, strict=True))
        / sum(shares(t).get(g, 0) for t in targets)
        for g in GROUPS
    }
    assert (omega * losses).sum() / len(targets) == pytest.approx(
        sum(q[g] * group_loss[g] for g in GROUPS), rel=1e-6
    )
    # with a group absent, the mean of the present ones renormalised by their q
    part = np.array([2, 3, 3, 9])  # no 'rare'; item 9 counts in 'mid' only
    omega = w.example_weights(torch.from_numpy(part)).double().numpy()
    mid = (losses[0] + losses[3]) / 2
    expected = (q["mid"] * mid + q["common"] * (losses[1] + losses[2]) / 2) / (
        q["mid"] + q["common"]
    )
    assert (omega * losses[:4]).sum() / 4 == pytest.approx(expected, rel=1e-6)


@settings(deadline=None, max_examples=40)
@given(st.lists(st.integers(0, N_ITEMS), min_size=1, max_size=40), st.integers(0, 2**31))
def test_omega_sums_to_the_number_of_targets_and_padding_gets_zero(targets, seed):
    w = dro()
    for t, losses in batches(seed % 1000, 2):
        w.observe_losses(torch.from_numpy(t), torch.from_numpy(losses))
    t = torch.tensor(targets)
    omega = w.example_weights(t)
    assert omega.dtype == torch.float32 and omega.shape == t.shape
    assert omega.sum().item() == pytest.approx(int((t > 0).sum()), rel=1e-5)
    assert (omega[t == 0] == 0).all() and (omega[t > 0] > 0).all()


def test_uniform_q_on_one_group_or_balanced_groups_gives_one():
    w = dro()
    for targets in ([1, 1, 7, 1], [2, 9], [1, 2, 3], [4, 2, 2, 4, 3, 1, 5, 5, 5, 2, 1, 3]):
        assert w.example_weights(torch.tensor(targets)).tolist() == pytest.approx(
            [1.0] * len(targets)
        ), targets
    assert w.example_weights(torch.tensor([6, 8])).tolist() == [1.0, 1.0]  # ungrouped


# ---- the invariants of q ---------------------------------------------------------------------


@settings(deadline=None, max_examples=40)
@given(
    st.floats(1e-6, 100.0),
    st.floats(0.0, 0.99),
    st.lists(st.floats(0.0, 1e4), min_size=3, max_size=3),
    st.integers(1, 30),
)
def test_q_sums_to_one_and_stays_positive(eta, beta, group_losses, steps):
    w = dro(eta=eta, beta=beta)
    targets = torch.tensor([1, 2, 3])  # one target per group
    for _ in range(steps):
        w.observe_losses(targets, torch.tensor(group_losses, dtype=torch.float64))
        q = np.array(list(w.group_weights().values()))
        assert math.fsum(q) == pytest.approx(1.0, abs=1e-12)
        assert (q > 0).all()
        log_q = np.log(q)
        assert log_q.max() - log_q.min() <= LOG_Q_SPAN + 1e-9


def test_a_tiny_eta_keeps_q_uniform():
    w = dro(eta=1e-12)
    for targets, losses in batches(4, 20):
        w.observe_losses(torch.from_numpy(targets), torch.from_numpy(losses))
    assert list(w.group_weights().values()) == pytest.approx([1 / 3] * 3, abs=1e-10)


def test_the_group_with_the_highest_loss_gains_weight():
    w = dro(eta=0.1)
    for _ in range(5):
        w.observe_losses(torch.tensor([1, 2, 3]), torch.tensor([3.0, 1.0, 2.0]))
    q = w.group_weights()
    assert q["rare"] > q["common"] > q["mid"]


@pytest.mark.parametrize(("value", "message"), [(0.0, "> 0"), (-1.0, "> 0"), (math.inf, "finite")])
def test_a_bad_eta_names_the_option(value, message):
    with pytest.raises(ConfigError, match=rf"^--eta: must be .*{message}"):
        WeightingSpec(scheme="dro", eta=value)


# ---- checkpoints, DDP, the train step ---------------------------------------------------------


def test_state_dict_round_trip_resumes_with_the_same_q():
    a = dro()
    run = batches(5, 6)
    for targets, losses in run[:3]:
        a.observe_losses(torch.from_numpy(targets), torch.from_numpy(losses))
    a.epoch_end(1, 3)
    b = dro()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.history == a.history and b.current_weights() == a.current_weights()
    for targets, losses in run[3:]:
        for w in (a, b):
            w.observe_losses(torch.from_numpy(targets), torch.from_numpy(losses))
    assert b.group_weights() == a.group_weights()
    t = torch.tensor([1, 2, 3, 5])
    assert torch.equal(a.example_weights(t), b.example_weights(t))


def _ddp_worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    w = dro()
    for targets, losses in batches(6):
        half = np.array_split(np.arange(len(targets)), 2)[rank]
        w.observe_losses(torch.from_numpy(targets[half]), torch.from_numpy(losses[half]))
    with open(f"{out}.{rank}", "w") as f:
        json.dump(w.state_dict()["dro"], f)
    dist.destroy_process_group()


def test_two_processes_reach_the_q_of_one(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path / "q")), nprocs=2)
    one = dro()
    for targets, losses in batches(6):
        one.observe_losses(torch.from_numpy(targets), torch.from_numpy(losses))
    states = [json.loads((tmp_path / f"q.{r}").read_text()) for r in (0, 1)]
    assert states[0] == states[1]  # every rank holds the same q
    assert states[0]["log_q"] == pytest.approx(one.state_dict()["dro"]["log_q"], abs=1e-12)


def test_dro_trains_records_q_and_resumes_to_the_same_q(tmp_path):
    dataset = write_dataset(tmp_path / "data")
    compute_stats(dataset, tmp_path / "stats")
    weights = tmp_path / "stats" / "weights.json"
    options = dict(scheme="dro", eta=0.05, epochs=2, loss="ce", **TINY)
    train(dataset, weights, tmp_path / "straight", **options)
    train(dataset, weights, tmp_path / "resumed", stop_after_epochs=1, **options)
    train(dataset, weights, tmp_path / "resumed", resume=True, **options)
    last = [
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)["weighter"]
        for d in ("straight", "resumed")
    ]
    assert last[0]["dro"] == last[1]["dro"] and last[0]["dro"]["updates"] == 10
    history = json.loads((tmp_path / "straight" / "weights_history.json").read_text())
    assert [h["event"] for h in history] == ["init", "epoch", "epoch"]
    assert all(math.fsum(h["q"].values()) == pytest.approx(1.0) for h in history)
    assert history[-1]["q"] != history[0]["q"]  # it moved
    assert set(history[0]["q"]) == {"rare", "mid", "dense"}
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert (
        config["weighting"]["eta"] == 0.05 and config["weighting_sources"]["eta"] == "train option"
    )
    assert config["weighting"]["user_theta"] == 0.5
    assert model_summary(config)["weighting"] == {"eta": 0.05, "beta": 0.9}  # what shaped ω


def test_a_bad_eta_on_the_train_cli_is_one_error_line(tmp_path, capsys):
    from components.train.cli import main as train_main

    argv = ["--dataset", str(tmp_path / "d"), "--output", str(tmp_path / "m"), "--scheme", "dro"]
    assert train_main([*argv, "--eta", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --eta: must be > 0 (a finite number), got 0.0"


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["dro", "dynamic-user"])
def test_ddp_two_gloo_processes_equal_one_process(tmp_path, scheme):
    """dro all-reduces its group losses; dynamic-user shards the users with the rows."""
    dataset = write_dataset(tmp_path / "data")
    compute_stats(dataset, tmp_path / "stats")
    args = ["--dataset", str(dataset), "--weights", str(tmp_path / "stats"), "--scheme", scheme]
    args += ["--epochs", "2", "--dropout", "0", "--batch-size", "16", "--max-len", "12"]
    args += ["--d-model", "16", "--n-blocks", "1", "--threads", "1", "--no-progress"]
    args += ["--device", "cpu", "--eta", "0.2", "--user-theta", "0.6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "components.train", *args, "--nproc-per-node", "2"]
    ddp = subprocess.run(
        [*command, "--output", str(tmp_path / "ddp")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    from components.train.cli import main as train_main

    assert train_main([*args, "--output", str(tmp_path / "single")]) == 0
    single, both = (
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)
        for d in ("single", "ddp")
    )
    assert single["state"]["step"] == both["state"]["step"] == 10
    for key, value in single["model"].items():
        torch.testing.assert_close(both["model"][key], value, rtol=0, atol=1e-5)
    assert both["weighter"]["weights"] == pytest.approx(single["weighter"]["weights"], abs=1e-6)
    if scheme == "dro":
        q = [np.exp(s["weighter"]["dro"]["log_q"]) for s in (single, both)]
        assert q[1] == pytest.approx(q[0], abs=1e-6) and np.ptp(q[0]) > 1e-3
