"""The training recipe (issue 13): post-LN and pre-LN blocks, the reference initialisation, Adam,
the selection metric, and one evaluation protocol per run across train, evaluate and report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from components.core.model import SeqRecModel
from components.core.model_artifact import load_model
from components.core.model_config import BEFORE_RECIPE, ModelConfig
from components.core.sequences import UserSequences
from components.errors import ConfigError
from components.evaluate.cli import main as evaluate_cli
from components.evaluate.evaluate import evaluate
from components.report.report import report
from components.schema import load_dataset
from components.train.cli import main as train_cli
from components.train.config import LOSS_NORMS, SELECT_METRICS, TrainConfig
from components.train.data import TrainWindows
from components.train.distributed import Process
from components.train.losses import LossFunction
from components.train.step import StepParts, make_optimizer, make_scheduler, train_step
from components.train.trainer import train
from components.train.validation import evaluate_split
from tests.eval_fixtures import chain_sequences, write_dataset, write_stats

torch.set_num_threads(1)
N_ITEMS = 30
TINY = {"max_len": 10, "d_model": 16, "n_heads": 2, "n_blocks": 1, "threads": 1, "progress": False}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    # users repeat part of their history, so masking it changes the ranking
    sequences = [s + s[:3] for s in chain_sequences(60, N_ITEMS, 8, seed=3)]
    dataset = write_dataset(root / "data", sequences, N_ITEMS)
    return root, dataset, write_stats(root / "stats", dataset)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_both_block_layouts_overfit_a_tiny_dataset(data, tmp_path, norm):
    """Deterministic next-item chains: either layout learns them (train loss near 0)."""
    _, dataset, _ = data
    recipe = {"norm": norm, "emb_norm": norm == "post", "scale_emb": norm == "pre"}
    summary = train(
        dataset,
        None,
        tmp_path / "model",
        **TINY,
        **recipe,
        init_std=0.02 if norm == "post" else 0.0,
        optimizer="adam",
        dropout=0.0,
        lr=0.01,
        epochs=60,
        patience=0,
        batch_size=16,
    )
    log = [
        json.loads(line) for line in (tmp_path / "model/train_log.jsonl").read_text().splitlines()
    ]
    assert log[-1]["train_loss"] < 0.25 * log[0]["train_loss"], (norm, log[-1]["train_loss"])
    assert summary["best_val"]["recall@10"] > 0.9
    config = json.loads((tmp_path / "model/config.json").read_text())
    assert {k: config["model"][k] for k in recipe} == recipe
    assert config["train"]["optimizer"] == "adam"
    model, _ = load_model(tmp_path / "model")  # rebuilt with the recorded layout
    assert (model.cfg.norm, isinstance(model.final_norm, nn.LayerNorm)) == (norm, norm == "pre")


def test_the_reference_init_draws_every_linear_and_embedding_from_n_0_002():
    model = SeqRecModel(ModelConfig(n_items=3000, d_model=64, init_std=0.02, norm="post"))
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            weight = module.weight.detach()
            if name == "item_embedding":
                assert weight[0].abs().max() == 0  # padding
                weight = weight[1:]
            assert weight.mean().abs() < 3e-3 and abs(weight.std() - 0.02) < 2e-3, name
        if isinstance(module, nn.Linear) and module.bias is not None:
            assert module.bias.abs().max() == 0, name
    assert ModelConfig(n_items=1).init_std == 0.02  # the default
    legacy = SeqRecModel(ModelConfig(n_items=3000, d_model=64, init_std=0.0))
    assert abs(legacy.item_embedding.weight[1:].std() - 64**-0.5) < 0.01


def test_models_saved_before_the_recipe_fields_load_as_they_were_built():
    cfg = ModelConfig.from_dict({"n_items": 5, "max_len": 4, "d_model": 8, "n_heads": 2})
    assert {k: getattr(cfg, k) for k in BEFORE_RECIPE} == BEFORE_RECIPE
    with pytest.raises(ConfigError, match="--norm"):
        ModelConfig(n_items=5, norm="sandwich")
    with pytest.raises(ConfigError, match="--init-std"):
        ModelConfig(n_items=5, init_std=-1)


def test_validation_ranks_under_the_runs_protocol(data):
    """Masked validation drops the user's earlier items but never the target: every user ranks
    at least as well, and (with repeated items) strictly better on average."""
    _, dataset, _ = data
    ds = load_dataset(dataset)
    seqs = UserSequences.from_interactions(ds.interactions, ds.n_items)
    model = SeqRecModel(ModelConfig(n_items=N_ITEMS, max_len=10, d_model=16))
    kept = evaluate_split(model, seqs, "valid", torch.device("cpu"))
    masked = evaluate_split(model, seqs, "valid", torch.device("cpu"), exclude_seen=True)
    assert set(SELECT_METRICS) <= set(kept) and kept["users"] == masked["users"] == 60
    assert all(masked[m] >= kept[m] for m in SELECT_METRICS)
    assert masked["ndcg@20"] > kept["ndcg@20"]


def test_one_protocol_from_train_through_evaluate_and_report(data, tmp_path, capsys):
    root, dataset, stats = data
    common = {**TINY, "epochs": 2, "patience": 0}
    train(dataset, None, tmp_path / "masked", exclude_seen=True, select_metric="ndcg@20", **common)
    train(dataset, None, tmp_path / "kept", **common)
    config = json.loads((tmp_path / "masked/config.json").read_text())
    assert config["train"]["exclude_seen"] is True
    assert config["train"]["select_metric"] == "ndcg@20"
    # evaluate follows the model's protocol; the other one is refused before ranking
    evaluate(dataset, stats, tmp_path / "masked", tmp_path / "e-masked", bootstrap=10)
    evaluate(dataset, stats, tmp_path / "kept", tmp_path / "e-kept", bootstrap=10)
    metrics = json.loads((tmp_path / "e-masked/metrics.json").read_text())
    assert metrics["exclude_seen"] is True
    assert metrics["model"]["train"]["exclude_seen"] is True
    argv = ["--dataset", str(dataset), "--stats", str(stats), "--model", str(tmp_path / "kept")]
    capsys.readouterr()
    assert evaluate_cli([*argv, "--output", str(tmp_path / "bad"), "--exclude-seen"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "history kept" in err[0] and "--exclude-seen" in err[0]
    assert not (tmp_path / "bad").exists()
    # evaluate's masked test ranking is the one train's validation pass computes
    model, _ = load_model(tmp_path / "masked")
    ds = load_dataset(dataset)
    seqs = UserSequences.from_interactions(ds.interactions, ds.n_items)
    test = evaluate_split(model, seqs, "test", torch.device("cpu"), exclude_seen=True)
    assert metrics["summary"]["ndcg@10"] == pytest.approx(test["ndcg@10"], abs=1e-6)
    # the report records the one protocol, and refuses to compare runs made under different ones
    summary = report({"a": str(tmp_path / "e-masked")}, tmp_path / "r1", baseline="a", bootstrap=10)
    assert summary["exclude_seen"] is True
    assert "excluded (masked) in every run" in (tmp_path / "r1/report.md").read_text()
    with pytest.raises(ConfigError, match="exclude"):
        report(
            {"kept": str(tmp_path / "e-kept"), "masked": str(tmp_path / "e-masked")},
            tmp_path / "r",
            baseline="kept",
        )


def _one_step_gradients(
    loss_norm_tpu: float | None, inputs: np.ndarray, targets: np.ndarray
) -> tuple[list[torch.Tensor], float]:
    """The gradients one train_step leaves (no clipping), from one fixed initial model."""
    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=N_ITEMS, max_len=5, d_model=16, dropout=0.0))
    train_cfg = TrainConfig(grad_clip=0.0)
    optimizer, _ = make_optimizer(train_cfg, model, None)
    parts = StepParts(
        model,
        model,
        LossFunction("ce", N_ITEMS),
        None,
        optimizer,
        make_scheduler(train_cfg, optimizer, 10),
        0.0,
        Process(),
        targets_per_user=loss_norm_tpu,
    )
    batch_loss, count = train_step(parts, inputs, targets, epoch=1, step=1)
    assert count == int((targets > 0).sum())
    return [p.grad.clone() for p in model.parameters() if p.grad is not None], batch_loss


def test_token_loss_norm_weighs_every_target_the_same_whatever_the_batch():
    """--loss-norm token divides by users × the mean targets per user: a batch of short
    sequences then moves the model by what its few targets are worth (as inside a shuffled
    batch), not as much as a batch of long ones. The logged loss stays the per-target mean."""
    inputs = np.array([[0, 0, 0, 1, 2], [0, 0, 0, 4, 5]])  # 2 users, 4 targets
    targets = np.array([[0, 0, 0, 2, 3], [0, 0, 0, 5, 6]])
    plain, plain_loss = _one_step_gradients(None, inputs, targets)
    token, token_loss = _one_step_gradients(3.0, inputs, targets)  # norm 2 × 3 = 6, not 4
    assert token_loss == pytest.approx(plain_loss, rel=1e-6)
    for a, b in zip(plain, token, strict=True):
        torch.testing.assert_close(b, a * 4 / 6, rtol=1e-5, atol=1e-6)


def test_targets_per_user_counts_each_training_window():
    # users of 1, 3 and 9 train items; max_len 5: windows give 0 (no user), 2 and 5 targets
    windows = TrainWindows(np.array([0, 1, 4, 13]), np.arange(1, 14), max_len=5)
    assert list(windows.users) == [1, 2]
    assert windows.targets_per_user == pytest.approx(3.5)
    _, targets = windows.batch(windows.users)
    assert (targets > 0).sum() == 7


def test_loss_norm_is_checked_recorded_and_a_cli_flag(data, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--loss-norm"):
        TrainConfig(loss_norm="sample")
    _, dataset, _ = data
    train(dataset, None, tmp_path / "m", **TINY, epochs=1, patience=0, loss_norm="token")
    config = json.loads((tmp_path / "m/config.json").read_text())
    assert config["train"]["loss_norm"] == "token"
    assert TrainConfig().loss_norm in LOSS_NORMS
    argv = ["--dataset", str(dataset), "--output", str(tmp_path / "x"), "--loss-norm", "tokens"]
    with pytest.raises(SystemExit):
        train_cli(argv)
    assert "--loss-norm" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bf16_precision_trains_on_a_cpu_and_is_recorded(data, tmp_path):
    """--precision bf16 on a CPU (AMX / AVX-512 BF16 make its products fast): it learns the
    tiny dataset like float32 does, and config.json and the summary say which one ran."""
    with pytest.raises(ConfigError, match="--precision"):
        TrainConfig(precision="fp8")
    _, dataset, _ = data
    common = {**TINY, "epochs": 3, "patience": 0, "dropout": 0.0, "lr": 0.01, "device": "cpu"}
    runs = {}
    for precision in ("fp32", "bf16"):
        runs[precision] = train(dataset, None, tmp_path / precision, precision=precision, **common)
        config = json.loads((tmp_path / precision / "config.json").read_text())
        assert config["train"]["precision"] == precision
    assert (runs["fp32"]["precision"], runs["bf16"]["precision"]) == ("fp32", "bf16")
    fp32, bf16 = (runs[p]["best_val"]["ndcg@10"] for p in ("fp32", "bf16"))
    assert bf16 == pytest.approx(fp32, abs=0.1) and bf16 > 0
    weights = [load_model(tmp_path / p)[0].item_embeddings() for p in ("fp32", "bf16")]
    assert not torch.equal(*weights)  # the bf16 products did run
