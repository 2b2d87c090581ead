"""aux-domain (SPEC §5, issue 14): a head predicts the next item's domain; the batch loss is
Σ(ω·ℓ_item + λ·ℓ_domain) / N, ℓ_domain the cross-entropy against the uniform distribution over
the target item's domains. λ = 0 is the plain model."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components.core.model import ModelConfig, SeqRecModel
from components.core.model_artifact import (
    CONFIG_FILE,
    DOMAIN_CLASSES_KEY,
    domain_classes,
    load_model,
    write_model_artifact,
)
from components.core.sequences import UserSequences
from components.core.weighting import DomainWeighter, load_weights
from components.errors import ConfigError, InputError
from components.io import sha256_file
from components.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, NO_DOMAIN, load_dataset
from components.stats import compute_stats
from components.train import cli
from components.train.config import TrainConfig, split_options
from components.train.data import TrainWindows
from components.train.distributed import Process
from components.train.losses import DomainLoss, LossFunction, domain_ce, domain_targets
from components.train.step import StepParts, make_optimizer, make_scheduler, train_step
from components.train.trainer import train
from tests.eval_fixtures import chain_sequences

torch.set_num_threads(1)
N_ITEMS = 40
TINY = {
    "max_len": 10,
    "d_model": 16,
    "n_heads": 2,
    "n_blocks": 1,
    "batch_size": 16,
    "threads": 1,
    "progress": False,
}
TINY_MODEL = {k: TINY[k] for k in ("max_len", "d_model", "n_heads", "n_blocks")}
TIMINGS = ("seconds", "sequences_per_s", "epoch_wall_s", "epoch_cpu_s")


def item_domains(n_items: int) -> list[list[str]]:
    """Four balanced domains d0..d3 (item % 4); every 7th item also in the next one; every 10th
    in none. Position 0 is the padding item."""
    out: list[list[str]] = [[]]
    for item in range(1, n_items + 1):
        labels = [] if item % 10 == 0 else [f"d{item % 4}"]
        if item % 7 == 0 and labels:
            labels.append(f"d{(item + 1) % 4}")
        out.append(labels)
    return out


def write_dataset(root: Path, sequences: list[list[int]], n_items: int) -> Path:
    """An ingest output (leave-one-out split) with the domains of ``item_domains``."""
    root.mkdir(parents=True, exist_ok=True)
    items = {
        "item_idx": pa.array(range(1, n_items + 1), pa.int32()),
        "item_id": [f"i{i}" for i in range(1, n_items + 1)],
        "domains": item_domains(n_items)[1:],
    }
    pq.write_table(pa.table(items, schema=ITEMS_SCHEMA), root / "items.parquet")
    rows: dict[str, list] = {"user_idx": [], "item_idx": [], "timestamp": [], "split": []}
    for user, sequence in enumerate(sequences):
        for k, item in enumerate(sequence):
            last = len(sequence) - 1
            rows["user_idx"].append(user)
            rows["item_idx"].append(item)
            rows["timestamp"].append(1000 * user + k)
            rows["split"].append("test" if k == last else "valid" if k == last - 1 else "train")
    interactions = pa.table(rows, schema=INTERACTIONS_SCHEMA)
    pq.write_table(interactions, root / "interactions.parquet")
    files = ("items.parquet", "interactions.parquet")
    manifest = {
        "source": "test",
        "counts": {"users": len(sequences), "items": n_items, "interactions": len(interactions)},
        "files": {name: {"sha256": sha256_file(root / name)} for name in files},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("aux")
    dataset = write_dataset(root / "dataset", chain_sequences(64, N_ITEMS, 8, seed=1), N_ITEMS)
    compute_stats(dataset, root / "stats")
    return dataset, root / "stats" / "weights.json"


def reference_targets(domains_of: list[list[str]], classes: list[str]) -> np.ndarray:
    """The [n_items + 1, n_domains] soft targets, one item at a time (float64)."""
    matrix = np.zeros((len(domains_of), len(classes)))
    for item, labels in enumerate(domains_of[1:], start=1):
        distinct = sorted(set(labels)) or [NO_DOMAIN]
        for label in distinct:
            matrix[item, classes.index(label)] = 1.0 / len(distinct)
    return matrix


def reference_domain_ce(logits: np.ndarray, targets: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """−Σ_d T_d log softmax(z)_d, one example at a time in float64."""
    out = []
    for z, item in zip(logits, targets, strict=True):
        log_norm = math.log(sum(math.exp(v) for v in z))
        out.append(-sum(soft[item, d] * (z[d] - log_norm) for d in range(len(z))))
    return np.array(out)


def test_soft_targets_are_uniform_over_each_items_domains():
    domains_of = [[], ["b"], ["a", "b", "a"], [], ["c"], ["(none)"], ["b", "c", "a"]]
    soft = domain_targets(domains_of)
    assert soft.domains == sorted(["a", "b", "c", NO_DOMAIN])  # items without domains: a class
    assert soft.codes.shape == soft.mass.shape == (7, 3)  # K = the most domains of an item
    dense = soft.dense().double().numpy()
    assert np.allclose(dense, reference_targets(domains_of, soft.domains), atol=1e-7)
    assert (dense[0] == 0).all() and np.allclose(dense[1:].sum(axis=1), 1.0)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_domain_loss_and_its_gradient_match_a_float64_reference(dtype, tol):
    domains_of = item_domains(N_ITEMS)
    soft = domain_targets(domains_of)
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(50, len(soft.domains), generator=generator)).to(dtype)
    targets = torch.randint(1, N_ITEMS + 1, (50,), generator=generator)
    logits.requires_grad_(True)
    got = domain_ce(logits, targets, soft)
    got.sum().backward()
    assert logits.grad is not None
    z = logits.detach().double().numpy()
    matrix = reference_targets(domains_of, soft.domains)
    expected = reference_domain_ce(z, targets.numpy(), matrix)
    assert np.abs(got.detach().double().numpy() - expected).max() / expected.max() < min(tol, 1e-6)
    # d ℓ / d z = softmax(z) − T_target
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert np.allclose(logits.grad.double().numpy(), p - matrix[targets.numpy()], atol=tol)


@pytest.mark.parametrize("init_std", [0.02, 0.0])
def test_the_head_leaves_the_other_parameters_initialisation_as_it_was(init_std):
    shape = dict(n_items=N_ITEMS, max_len=10, d_model=16, n_heads=2, init_std=init_std)
    torch.manual_seed(3)
    plain = SeqRecModel(ModelConfig(**shape))
    torch.manual_seed(3)
    headed = SeqRecModel(ModelConfig(**shape, n_domains=5))
    plain_state, headed_state = plain.state_dict(), headed.state_dict()
    assert set(headed_state) - set(plain_state) == {"domain_head.weight", "domain_head.bias"}
    assert all(torch.equal(plain_state[k], headed_state[k]) for k in plain_state)
    assert plain.domain_head is None
    with pytest.raises(ValueError, match="no domain head"):
        plain.domain_logits(torch.zeros(1, 16))
    states = headed(torch.tensor([[0, 0, 3, 4, 5]]))  # [1, 5, 16]
    assert headed.domain_logits(states).shape == (1, 5, 5)


def test_the_batch_loss_is_the_weighted_item_loss_plus_the_unweighted_domain_loss(data):
    dataset_dir, weights_path = data
    dataset = load_dataset(dataset_dir)
    weighter = DomainWeighter.from_weights(
        load_weights(weights_path),
        dataset.item_domains(),
        scheme="fixed",
        fixed_domains=["d1"],
        fixed_weight=3.0,
    )
    soft = domain_targets(dataset.item_domains())
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=N_ITEMS, n_domains=len(soft.domains), dropout=0.0, **TINY_MODEL)
    model = SeqRecModel(cfg)
    reference = copy.deepcopy(model).double()
    train_cfg = TrainConfig()
    optimizer, _ = make_optimizer(train_cfg, model, None)
    aux = DomainLoss(0.7, soft)
    parts = StepParts(
        model,
        model,
        LossFunction("ce", N_ITEMS),
        weighter,
        optimizer,
        make_scheduler(train_cfg, optimizer, 10),
        0.0,
        Process(),
        aux=aux,
    )
    inputs = np.array([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8], [0, 11, 12, 13, 14]])
    targets = np.array([[0, 0, 2, 3, 4], [5, 6, 7, 8, 9], [0, 12, 13, 14, 15]])
    flat = targets[targets > 0]  # [N]
    omega = weighter.example_weights(torch.from_numpy(flat)).double().numpy()
    assert len(set(omega.round(6))) > 1  # ω varies, so weighting the domain term would show

    states = reference(torch.from_numpy(inputs))[torch.from_numpy(targets > 0)]  # [N, d] f64
    scores = (states @ reference.item_embeddings()[1:].T).detach().numpy()  # items 1..n
    item_loss = np.array(
        [math.log(np.exp(row).sum()) - row[t - 1] for row, t in zip(scores, flat, strict=True)]
    )
    domain = reference_domain_ce(
        reference.domain_logits(states).detach().numpy(),
        flat,
        reference_targets(dataset.item_domains(), soft.domains),
    )
    expected = (omega * item_loss + 0.7 * domain).sum() / len(item_loss)

    batch_loss, count = train_step(parts, inputs, targets, epoch=1, step=1)
    assert count == len(item_loss)
    assert batch_loss == pytest.approx(expected, rel=1e-5)
    assert aux.take_sum() == pytest.approx(domain.sum(), rel=1e-5) and aux.take_sum() == 0.0


def test_zero_aux_domain_is_the_plain_model(data, tmp_path):
    """λ = 0: no head, and the run is bit-identical to one without the option; λ > 0 is not."""
    dataset, weights = data
    common = dict(scheme="inverse", loss="ce", epochs=2, **TINY)
    train(dataset, weights, tmp_path / "plain", **common)
    train(dataset, weights, tmp_path / "zero", aux_domain=0.0, **common)
    train(dataset, weights, tmp_path / "aux", aux_domain=0.5, **common)
    plain, zero, aux = (
        torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("plain", "zero", "aux")
    )
    assert plain.keys() == zero.keys() and not any(k.startswith("domain_head") for k in zero)
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert not torch.equal(plain["item_embedding.weight"], aux["item_embedding.weight"])

    def log(name):
        rows = [json.loads(x) for x in (tmp_path / name / "train_log.jsonl").open()]
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

    assert log("plain") == log("zero") and "domain_loss" not in log("zero")[0]
    config = json.loads((tmp_path / "zero" / CONFIG_FILE).read_text())
    assert config["train"]["aux_domain"] == 0.0 and config["model"]["n_domains"] == 0
    assert config[DOMAIN_CLASSES_KEY] == []


def test_resume_with_a_domain_head_is_bit_identical(data, tmp_path):
    dataset, weights = data
    options = dict(scheme="dynamic", loss="ce", epochs=2, aux_domain=0.3, **TINY)
    train(dataset, weights, tmp_path / "straight", **options)
    train(dataset, weights, tmp_path / "resumed", stop_after_epochs=1, **options)
    train(dataset, weights, tmp_path / "resumed", resume=True, **options)
    straight, resumed = (
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)
        for d in ("straight", "resumed")
    )
    assert "domain_head.weight" in straight["model"]
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])

    def log(name):
        rows = [json.loads(x) for x in (tmp_path / name / "train_log.jsonl").open()]
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

    assert log("straight") == log("resumed") and len(log("resumed")) == 2


def test_the_domain_head_learns_a_tiny_dataset(data, tmp_path):
    """Next item = last + 1, so the next domain is known: after overfitting, the head's top
    domain is one of the target's on nearly every train position (chance: about 1/4)."""
    dataset_dir, weights = data
    out = tmp_path / "model"
    options = dict(scheme="dynamic", loss="sampled", negatives=8, lr=0.01, dropout=0.0)
    train(dataset_dir, weights, out, aux_domain=1.0, epochs=25, patience=0, **options, **TINY)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 25 and all(np.isfinite(r["domain_loss"]) for r in log)
    assert log[-1]["domain_loss"] < 0.3 * log[0]["domain_loss"]

    model, config = load_model(out)
    soft = domain_targets(item_domains(N_ITEMS))
    assert domain_classes(config) == soft.domains == [NO_DOMAIN, "d0", "d1", "d2", "d3"]
    assert config["model"]["n_domains"] == 5 and config["train"]["aux_domain"] == 1.0
    dataset = load_dataset(dataset_dir)
    offsets, items = UserSequences.from_interactions(
        dataset.interactions, N_ITEMS
    ).train_sequences()
    windows = TrainWindows(offsets, items, TINY["max_len"])
    inputs, targets = (torch.from_numpy(a) for a in windows.batch(windows.users))
    with torch.no_grad():
        predicted = model.domain_logits(model(inputs)[targets > 0]).argmax(dim=-1)  # [N]
    in_target = soft.dense()[targets[targets > 0]] > 0  # [N, n_domains]
    accuracy = in_target[torch.arange(len(predicted)), predicted].float().mean().item()
    majority = in_target.float().mean(dim=0).max().item()  # always the most frequent class
    assert majority < 0.4 and accuracy > 0.9


def test_a_model_from_before_aux_domain_still_loads(tmp_path):
    """config.json without ``n_domains`` / ``domain_classes``: a model without a head."""
    cfg = ModelConfig(n_items=N_ITEMS, **TINY_MODEL)
    torch.manual_seed(0)
    model = SeqRecModel(cfg)
    old = {k: v for k, v in asdict(cfg).items() if k != "n_domains"}
    write_model_artifact(tmp_path / "old", model.state_dict(), [], {"model": old, "train": {}})
    loaded, config = load_model(tmp_path / "old")
    assert loaded.domain_head is None and loaded.cfg.n_domains == 0
    assert domain_classes(config) == []
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())

    headed = SeqRecModel(ModelConfig(n_items=N_ITEMS, n_domains=3, **TINY_MODEL))
    config = {"model": asdict(headed.cfg), DOMAIN_CLASSES_KEY: ["a", "b", "c"]}
    write_model_artifact(tmp_path / "new", headed.state_dict(), [], config)
    loaded, _ = load_model(tmp_path / "new")
    assert loaded.domain_head is not None
    assert headed.domain_head is not None
    assert torch.equal(loaded.domain_head.weight, headed.domain_head.weight)
    config[DOMAIN_CLASSES_KEY] = ["a", "b"]
    write_model_artifact(tmp_path / "bad", headed.state_dict(), [], config)
    with pytest.raises(InputError, match="domain_classes lists 2 domains.*has 3"):
        load_model(tmp_path / "bad")


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), "1", True])
def test_bad_aux_domain_values_are_rejected(value):
    with pytest.raises(ConfigError, match="--aux-domain"):
        TrainConfig(aux_domain=value)


def test_the_option_is_a_cli_flag_and_n_domains_is_not():
    parser = cli.build_parser()
    base = ["--dataset", "d", "--output", "o"]
    assert parser.parse_args(base).aux_domain == TrainConfig().aux_domain == 0.0
    args = parser.parse_args([*base, "--aux-domain", "0.3"])
    assert split_options(cli.options_from_args(args))[0].aux_domain == 0.3
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--n-domains", "3"])
    with pytest.raises(ConfigError, match="n_domains"):
        split_options({"n_domains": 3})
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="n_domains"):
            ModelConfig(n_items=3, n_domains=bad)
