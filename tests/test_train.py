"""The train step end to end on tiny datasets (CPU): learning, resume, DDP, bad inputs, artifacts."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components.core.devices import DEVICES, resolve_device
from components.core.model import ModelConfig
from components.core.model_artifact import load_model
from components.core.model_config import DERIVED, NORMS
from components.core.sequences import UserSequences
from components.core.weighting import AGGS, SCHEMES, TARGETS
from components.errors import ConfigError
from components.io import sha256_file
from components.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, load_dataset
from components.stats import compute_stats
from components.train import cli, trainer
from components.train.config import (
    DECAYS,
    LOSS_NORMS,
    OPTIMIZERS,
    PRECISIONS,
    SELECT_METRICS,
    WEIGHTING_OPTIONS,
    TrainConfig,
    split_options,
)
from components.train.distributed import autocast_dtype, precision_name
from components.train.losses import LOSSES, LossFunction
from components.train.step import TrainingError
from components.train.trainer import train
from components.train.validation import evaluate_split
from tests.kfp_helpers import TIMINGS, TINY_MODEL

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = TINY_MODEL


def write_dataset(root: Path, n_users=80, n_items=60, seed=0) -> Path:
    """A dataset with a learnable rule: after item i comes item i+1 (cyclic).

    Items 1..n in three domains: 'dense' (most), 'mid', and the sparse 'rare' (every 10th item).
    """
    rng = np.random.default_rng(seed)
    users, items, times, splits = [], [], [], []
    for u in range(n_users):
        length = int(rng.integers(6, 12))
        start = int(rng.integers(0, n_items))
        seq = [(start + k) % n_items + 1 for k in range(length)]
        for k, item in enumerate(seq):
            users.append(u)
            items.append(item)
            times.append(1000 * u + k)
            splits.append("test" if k == length - 1 else "valid" if k == length - 2 else "train")
    domains = [
        ["rare"] if i % 10 == 0 else ["mid", "dense"] if i % 3 == 0 else ["dense"]
        for i in range(1, n_items + 1)
    ]
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "item_idx": pa.array(range(1, n_items + 1), pa.int32()),
                "item_id": [f"i{i}" for i in range(1, n_items + 1)],
                "domains": domains,
            },
            schema=ITEMS_SCHEMA,
        ),
        root / "items.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "user_idx": pa.array(users, pa.int32()),
                "item_idx": pa.array(items, pa.int32()),
                "timestamp": pa.array(times, pa.int64()),
                "split": splits,
            },
            schema=INTERACTIONS_SCHEMA,
        ),
        root / "interactions.parquet",
    )
    manifest = {
        "source": "test",
        "counts": {"users": n_users, "items": n_items, "interactions": len(users)},
        "files": {
            name: {"sha256": sha256_file(root / name)}
            for name in ("items.parquet", "interactions.parquet")
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    dataset = write_dataset(root / "dataset")
    compute_stats(dataset, root / "stats")
    return dataset, root / "stats" / "weights.json"


def _params(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_params(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol == 0.0:
            assert torch.equal(a[key], b[key]), key
        else:
            assert torch.allclose(a[key], b[key], rtol=0, atol=atol), (
                key,
                (a[key] - b[key]).abs().max(),
            )


def test_overfits_a_learnable_dataset_and_writes_the_artifact(data, tmp_path):
    dataset, weights = data
    out = tmp_path / "model"
    summary = train(
        dataset,
        weights,
        out,
        scheme="dynamic",
        loss="ce",
        epochs=25,
        lr=0.01,
        dropout=0.0,
        patience=0,
        **TINY,
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 26))
    assert log[-1]["train_loss"] < 0.5 < log[0]["train_loss"]  # ln(60) ≈ 4.1 at the start
    # next item = previous + 1: full-ranking val Recall@10 far above random (10/60)
    assert summary["best_val"]["recall@10"] > 0.9
    assert {"sequences_per_s", "seconds", "val_ndcg@10", "domain_weights", "lr"} <= set(log[0])
    assert log[-1]["domain_weights"]["rare"] > log[-1]["domain_weights"]["dense"]

    config = json.loads((out / "config.json").read_text())
    assert config["model"]["n_items"] == 60 and config["scheme"] == "dynamic"
    assert config["best_epoch"] == summary["best_epoch"] and config["epochs_run"] == 25
    assert config["dataset"]["n_items"] == 60 and config["dataset"]["interactions_sha256"]
    assert config["precision"] == summary["precision"] == "fp32" and config["device"] == "cpu"
    history = json.loads((out / "weights_history.json").read_text())
    assert len(history) == 26 and history[0]["event"] == "init"

    # the evaluate step's loader rebuilds the best model: same validation metrics
    model, loaded = load_model(out)
    assert loaded["best_val"] == summary["best_val"]
    seqs = UserSequences.from_interactions(load_dataset(dataset).interactions, 60)
    assert evaluate_split(model, seqs, "valid", torch.device("cpu")) == summary["best_val"]


def test_resume_is_bit_identical_to_an_uninterrupted_run(data, tmp_path):
    dataset, weights = data
    options = dict(scheme="dynamic", loss="bce", epochs=2, update_every_steps=2, **TINY)
    train(dataset, weights, tmp_path / "straight", **options)
    first = train(dataset, weights, tmp_path / "resumed", stop_after_epochs=1, **options)
    assert first["epochs_run"] == 1
    second = train(dataset, weights, tmp_path / "resumed", resume=True, **options)
    assert second["epochs_run"] == 2
    _assert_same_params(
        _params(tmp_path / "straight" / "model.pt"), _params(tmp_path / "resumed" / "model.pt")
    )
    _assert_same_params(  # best.pt: {"model": state dict, "checksum": …}
        _params(tmp_path / "straight" / "checkpoints/best.pt")["model"],
        _params(tmp_path / "resumed" / "checkpoints/best.pt")["model"],
    )
    last = [
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)
        for d in ("straight", "resumed")
    ]
    _assert_same_params(last[0]["model"], last[1]["model"])

    def strip(directory):
        rows = [json.loads(x) for x in (tmp_path / directory / "train_log.jsonl").open()]
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]

    assert strip("straight") == strip("resumed")
    assert json.loads((tmp_path / "straight" / "weights_history.json").read_text()) == json.loads(
        (tmp_path / "resumed" / "weights_history.json").read_text()
    )


def test_resume_refuses_a_different_configuration(data, tmp_path):
    dataset, weights = data
    train(dataset, weights, tmp_path / "m", epochs=1, scheme="inverse", **TINY)
    with pytest.raises(ConfigError, match="cannot --resume.*lr"):
        train(
            dataset,
            weights,
            tmp_path / "m",
            epochs=2,
            scheme="inverse",
            lr=0.5,
            resume=True,
            **TINY,
        )


def test_ddp_two_gloo_processes_equal_one_process(data, tmp_path):
    dataset, weights = data
    args = [
        "--dataset",
        str(dataset),
        "--weights",
        str(weights),
        "--scheme",
        "dynamic",
        "--loss",
        "ce",
        "--epochs",
        "2",
        "--dropout",
        "0",
        "--batch-size",
        "16",
        "--max-len",
        "12",
        "--d-model",
        "16",
        "--n-blocks",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.train",
            *args,
            "--output",
            str(tmp_path / "ddp"),
            "--nproc-per-node",
            "2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
    assert cli.main([*args, "--output", str(tmp_path / "single")]) == 0
    single, both = (
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)
        for d in ("single", "ddp")
    )
    assert single["state"]["step"] == both["state"]["step"] == 10  # 80 users / 16 × 2 epochs
    _assert_same_params(single["model"], both["model"], atol=1e-5)
    assert single["weighter"]["weights"] == pytest.approx(both["weighter"]["weights"], abs=1e-12)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("loss", ["ce", "sampled", "bce", "gbce", "mml"])
def test_every_scheme_trains_with_every_loss(data, tmp_path, scheme, loss):
    dataset, weights = data
    summary = train(dataset, weights, tmp_path / "m", scheme=scheme, loss=loss, epochs=1, **TINY)
    assert summary["epochs_run"] == 1 and 0 <= summary["best_val"]["recall@10"] <= 1
    log = json.loads((tmp_path / "m" / "train_log.jsonl").read_text())
    assert np.isfinite(log["train_loss"]) and log["train_loss"] > 0
    if scheme == "none":
        assert set(log["domain_weights"].values()) == {1.0}


def test_scheme_none_needs_no_weights_file(data, tmp_path):
    dataset, _ = data
    summary = train(dataset, None, tmp_path / "m", epochs=1, **TINY)
    assert summary["epochs_run"] == 1
    with pytest.raises(ConfigError, match="--weights is required for --scheme dynamic"):
        train(dataset, None, tmp_path / "m2", epochs=1, scheme="dynamic", **TINY)


def test_nan_loss_stops_with_the_step(data, tmp_path, monkeypatch):
    dataset, weights = data
    monkeypatch.setattr(
        LossFunction, "__call__", lambda self, states, targets, items: states.sum(-1) * float("nan")
    )
    with pytest.raises(TrainingError, match="loss is nan at epoch 1, step 1"):
        train(dataset, weights, tmp_path / "m", epochs=1, **TINY)
    assert not (tmp_path / "m" / "model.pt").exists()


# ---- bad inputs: a clear error, exit status 2, nothing written ----


def _cli(argv, capsys):
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def test_dataset_without_split_column_is_rejected(data, tmp_path, capsys):
    dataset, weights = data
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("items.parquet", "manifest.json"):
        (broken / name).write_bytes((dataset / name).read_bytes())
    table = pq.read_table(dataset / "interactions.parquet").drop_columns(["split"])
    pq.write_table(table, broken / "interactions.parquet")
    rc, err = _cli(
        ["--dataset", str(broken), "--weights", str(weights), "--output", str(tmp_path / "out")],
        capsys,
    )
    assert rc == 2 and "interactions.parquet: missing column(s) ['split']" in err
    assert not (tmp_path / "out").exists()


def test_weights_of_another_dataset_are_rejected(data, tmp_path, capsys):
    dataset, _ = data
    other = write_dataset(tmp_path / "other", n_items=50)
    compute_stats(other, tmp_path / "other_stats")
    rc, err = _cli(
        [
            "--dataset",
            str(dataset),
            "--weights",
            str(tmp_path / "other_stats"),
            "--scheme",
            "inverse",
            "--output",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert rc == 2 and "another dataset" in err and "n_items" in err
    assert not (tmp_path / "out").exists()


def test_unknown_scheme_or_loss_is_rejected(data, tmp_path, capsys):
    dataset, weights = data
    with pytest.raises(ConfigError, match="unknown scheme 'dwl'"):
        train(dataset, weights, tmp_path / "m", scheme="dwl")
    with pytest.raises(ConfigError, match="unknown loss 'hinge'"):
        train(dataset, weights, tmp_path / "m", loss="hinge")
    with pytest.raises(ConfigError, match="unknown option"):
        train(dataset, weights, tmp_path / "m", learning_rate=0.1)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--dataset", str(dataset), "--output", "x", "--loss", "hinge"])
    assert exc.value.code == 2 and "invalid choice: 'hinge'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_device_cuda_without_a_gpu_is_rejected(data, tmp_path, capsys):
    dataset, weights = data
    # before anything is read: a missing dataset is not what the error is about
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device"):
        train(tmp_path / "no-such-dataset", None, tmp_path / "out", device="cuda")
    rc, err = _cli(
        [
            "--dataset",
            str(dataset),
            "--weights",
            str(weights),
            "--device",
            "cuda",
            "--output",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert rc == 2 and "--device cuda: no CUDA device" in err
    assert not (tmp_path / "out").exists()


def test_precision_follows_the_compute_capability(monkeypatch):
    capability = {"value": (8, 0)}
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: capability["value"]
    )
    cuda = torch.device("cuda:0")
    assert autocast_dtype(torch.device("cpu")) is None
    for value, dtype in [
        ((8, 0), torch.bfloat16),
        ((9, 0), torch.bfloat16),
        ((12, 0), torch.bfloat16),
        ((7, 5), torch.float16),
        ((7, 0), torch.float16),
        ((6, 1), torch.float16),
    ]:
        capability["value"] = value
        assert autocast_dtype(cuda) == dtype, value
    assert [precision_name(d) for d in (torch.bfloat16, torch.float16, None)] == [
        "bf16",
        "fp16",
        "fp32",
    ]


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device: 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", 1) == resolve_device("cuda", 1) == torch.device("cuda:1")


def test_fp16_uses_a_gradient_scaler_and_resumes_exactly(data, tmp_path, monkeypatch):
    """The fp16 path (a pre-Ampere GPU) exercised on CPU: fp16 autocast + a CPU GradScaler."""
    dataset, weights = data
    monkeypatch.setattr(trainer, "autocast_dtype", lambda device, precision: torch.float16)
    options = dict(scheme="dynamic", loss="ce", epochs=2, **TINY)
    straight = train(dataset, weights, tmp_path / "straight", **options)
    train(dataset, weights, tmp_path / "resumed", stop_after_epochs=1, **options)
    train(dataset, weights, tmp_path / "resumed", resume=True, **options)
    assert straight["precision"] == "fp16"
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["precision"] == "fp16"
    last = [
        torch.load(tmp_path / d / "checkpoints/last.pt", weights_only=True)
        for d in ("straight", "resumed")
    ]
    assert last[0]["scaler"]["scale"] > 0 and last[0]["scaler"] == last[1]["scaler"]
    _assert_same_params(last[0]["model"], last[1]["model"])
    _assert_same_params(
        _params(tmp_path / "straight" / "model.pt"), _params(tmp_path / "resumed" / "model.pt")
    )
    log = json.loads((tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(log["train_loss"])


def test_cli_defaults_mirror_the_library():
    """Every TrainConfig / ModelConfig field (n_items aside) is an option with the dataclass's
    default and type; the weighting options are unset unless given (weights.json decides)."""
    parser = cli.build_parser()
    actions = {a.dest: a for a in parser._actions}
    library = {f.name: f for f in fields(TrainConfig)}
    library.update({f.name: f for f in fields(ModelConfig) if f.name not in DERIVED})
    types = {"int": int, "float": float, "str": str}
    for name, field in library.items():
        action = actions[name]
        flag = "--no-progress" if name == "progress" else "--" + name.replace("_", "-")
        on_by_default = field.type == "bool" and field.default is True and name != "progress"
        # a switch that is on by default also has its --no- form
        assert action.option_strings == [flag, *(["--no-" + flag[2:]] if on_by_default else [])]
        if name in WEIGHTING_OPTIONS:
            assert field.default is None and action.default is argparse.SUPPRESS, name
        elif name == "progress":  # --no-progress; not given: TrainConfig's default
            assert field.default is True and action.default is argparse.SUPPRESS
            assert action.const is False
        elif on_by_default:
            assert (
                action.default is True
                and parser.parse_args(
                    ["--dataset", "d", "--output", "o", flag.replace("--", "--no-")]
                ).__dict__[name]
                is False
            ), name
        elif field.type == "bool":
            assert action.default is field.default is False and action.const is True, name
        else:
            assert type(action.default) is type(field.default), name
            assert action.default == field.default, name
            assert action.type is types[field.type.removesuffix(" | None")], name
    for name in WEIGHTING_OPTIONS:
        kind = library[name].type.removesuffix(" | None")
        element = {"list[str]": "str", "tuple[float, float, float]": "float"}.get(kind, kind)
        if actions[name].type is not None:
            assert actions[name].type is types[element], name
        nargs = "+" if kind.startswith("list") else 3 if kind.startswith("tuple") else None
        assert actions[name].nargs == nargs, name

    # nothing given: exactly the library's defaults, and no weighting option at all
    args = parser.parse_args(["--dataset", "d", "--output", "o"])
    options = cli.options_from_args(args)
    assert set(options) == set(library) - set(WEIGHTING_OPTIONS) - {"progress"}
    defaults = {**vars(TrainConfig()), **vars(ModelConfig(n_items=1))}
    assert {k: v for k, v in options.items() if v != defaults[k]} == {}
    cfg, model_options = split_options(options)
    assert cfg == TrainConfig() and ModelConfig(n_items=1, **model_options) == ModelConfig(1)
    # given: each reaches train as given
    given = ["--beta", "0.5", "--agg", "max", "--update-every-steps", "3", "--no-progress"]
    args = parser.parse_args(["--dataset", "d", "--output", "o", *given, "--compile"])
    options = cli.options_from_args(args)
    given_names = ("beta", "agg", "update_every_steps", "progress", "compile")
    assert not set(WEIGHTING_OPTIONS) - set(given_names) & set(options)
    assert {k: options[k] for k in given_names} == {
        "beta": 0.5,
        "agg": "max",
        "update_every_steps": 3,
        "progress": False,
        "compile": True,
    }
    # the choices the CLI offers are the library's
    choices = {a.dest: tuple(a.choices) for a in parser._actions if a.choices}
    assert choices == {
        "scheme": SCHEMES,
        "loss": LOSSES,
        "decay": DECAYS,
        "agg": AGGS,
        "target": TARGETS,
        "device": DEVICES,
        "norm": NORMS,
        "optimizer": OPTIMIZERS,
        "select_metric": SELECT_METRICS,
        "loss_norm": LOSS_NORMS,
        "precision": PRECISIONS,
    }
    assert "(default: 200)" in " ".join(parser.format_help().split())  # --max-len


def test_importing_the_step_does_not_import_torch():
    code = "import sys, components.train; assert 'torch' not in sys.modules; print(components.train.train)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "function train" in result.stdout, result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_with_the_device_precision(data, tmp_path):
    dataset, weights = data
    summary = train(
        dataset,
        weights,
        tmp_path / "m",
        scheme="dynamic",
        epochs=2,
        lr=0.01,
        device="cuda",
        **{**TINY, "threads": 0},
    )
    assert summary["device"].startswith("cuda") and summary["best_val"]["recall@10"] > 0
    # bf16 from compute capability 8.0 on, fp16 with a gradient scaler before
    expected = "bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16"
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert summary["precision"] == config["precision"] == expected
    last = torch.load(tmp_path / "m" / "checkpoints/last.pt", weights_only=True)
    assert (last["scaler"] is not None) == (expected == "fp16")
    model, _ = load_model(tmp_path / "m", device="cuda")
    assert next(model.parameters()).is_cuda


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_with_a_cuda_gradient_scaler(data, tmp_path, monkeypatch):
    """The pre-Ampere path (T4, V100) on whatever GPU there is: fp16 autocast + GradScaler."""
    dataset, weights = data
    monkeypatch.setattr(trainer, "autocast_dtype", lambda device, precision: torch.float16)
    options = dict(scheme="dynamic", epochs=2, lr=0.01, device="cuda", **{**TINY, "threads": 0})
    train(dataset, weights, tmp_path / "m", stop_after_epochs=1, **options)
    summary = train(dataset, weights, tmp_path / "m", resume=True, **options)
    assert summary["precision"] == "fp16" and summary["epochs_run"] == 2
    last = torch.load(tmp_path / "m" / "checkpoints/last.pt", weights_only=True)
    assert last["scaler"]["scale"] > 0
    log = [json.loads(x) for x in (tmp_path / "m" / "train_log.jsonl").open()]
    assert all(np.isfinite(r["train_loss"]) for r in log) and summary["best_val"]["recall@10"] > 0
