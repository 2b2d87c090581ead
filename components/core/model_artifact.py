"""The model dir (SPEC §6): written by the train step, read by evaluate. Its one owner.

    model.pt               state dict of the best epoch (read with ``weights_only=True``)
    config.json            ModelConfig, TrainConfig, dataset fingerprint, epochs run, best epoch,
                           ``model_sha256``: the sha256 of model.pt as written, and
                           ``domain_classes``: the domain head's classes in order (aux-domain;
                           [] or absent = no head)
    weights_history.json   the domain weights after every update (initial weights first)
    train_log.jsonl        one JSON line per epoch

The names are importable without torch (the train task's launcher copies these files); torch is
imported by the functions that read or write tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.core.weighting.spec import scheme_parameters
from components.errors import ConfigError, InputError
from components.io import atomic_file, sha256_file, write_json_atomic
from components.schema import Dataset, check_same_dataset

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "weights_history.json"
LOG_FILE = "train_log.jsonl"
MODEL_SHA256_KEY = "model_sha256"  # in config.json: the sha256 of model.pt as written
DOMAIN_CLASSES_KEY = "domain_classes"  # in config.json: the domain head's classes, in order
ARTIFACT_FILES = (MODEL_FILE, CONFIG_FILE, LOG_FILE, HISTORY_FILE)  # the finished model dir
# the training settings a reader of a comparison needs to judge it (shown by the report)
TRAIN_SETTINGS = (
    "optimizer",
    "epochs",
    "patience",
    "select_metric",
    "exclude_seen",
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
    "aux_domain",
)


def save_torch_file(obj, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (a reader never sees half a file)."""
    import torch

    with atomic_file(path, "wb") as handle:
        torch.save(obj, handle)


def load_torch_file(path: str | Path, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; an empty, truncated or corrupt file, or one that
    holds anything but tensors and plain values, is an InputError (one line, no torch advice)."""
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except Exception as exc:  # EOFError, RuntimeError (zip), UnpicklingError (weights-only), …
        if type(exc).__name__ == "UnpicklingError" and "Weights only" in str(exc):
            why = "it holds objects other than tensors and plain values"
        elif isinstance(exc, EOFError):
            why = "the file is empty or truncated"
        else:
            why = f"the file is truncated or corrupt ({type(exc).__name__})"
        raise InputError(f"{path}: not a valid dwlrec checkpoint: {why}") from None


def write_model_artifact(out: Path, state_dict: dict, history: list, config: dict) -> None:
    """Write model.pt, weights_history.json and config.json (with model.pt's sha256) in ``out``."""
    save_torch_file(state_dict, out / MODEL_FILE)
    write_json_atomic(out / HISTORY_FILE, history)
    write_json_atomic(
        out / CONFIG_FILE, {**config, MODEL_SHA256_KEY: sha256_file(out / MODEL_FILE)}
    )


def load_model(model_dir: str | Path, device="cpu") -> tuple:
    """Rebuild the trained model from a train step output dir (model.pt + config.json).

    Returns (SeqRecModel in eval mode on ``device``, the full config.json dict).
    """
    from components.core.model import ModelConfig, SeqRecModel

    model_dir = Path(model_dir)
    for name in (MODEL_FILE, CONFIG_FILE):
        if not (model_dir / name).exists():
            raise InputError(f"{model_dir}: not a train step output, missing {name}")
    try:
        config = json.loads((model_dir / CONFIG_FILE).read_text())
        model_cfg = ModelConfig.from_dict(config["model"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{model_dir / CONFIG_FILE}: unreadable model config ({exc})") from exc
    if len(domain_classes(config)) != model_cfg.n_domains:
        raise InputError(
            f"{model_dir / CONFIG_FILE}: {DOMAIN_CLASSES_KEY} lists "
            f"{len(domain_classes(config))} domains, the model's head has {model_cfg.n_domains}"
        )
    model = SeqRecModel(model_cfg)
    expected = config.get(MODEL_SHA256_KEY)
    if expected is not None and sha256_file(model_dir / MODEL_FILE) != expected:
        raise InputError(
            f"{model_dir / MODEL_FILE}: not a valid dwlrec checkpoint: its sha256 differs from "
            f"the one in {CONFIG_FILE} (the file is corrupt or was replaced)"
        )
    state = load_torch_file(model_dir / MODEL_FILE, map_location=device)
    try:
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a state dict")
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{model_dir / MODEL_FILE}: does not match config.json ({exc})") from exc
    return model.to(device).eval(), config


def domain_classes(config: dict) -> list[str]:
    """The domain head's classes (class c = output c of ``SeqRecModel.domain_logits``) from a
    config.json; [] for a model without a head (and for models from before aux-domain)."""
    classes = config.get(DOMAIN_CLASSES_KEY)
    return [str(d) for d in classes] if isinstance(classes, list) else []


def check_trained_on(config: dict, dataset: Dataset, model_dir: str | Path) -> None:
    """ConfigError if config.json records another dataset than ``dataset`` (no record: no check)."""
    trained_on = config.get("dataset")
    if isinstance(trained_on, dict):
        check_same_dataset(trained_on, dataset, str(model_dir), "trained")


def trained_protocol(config: dict) -> bool:
    """The evaluation protocol a model was selected under: True = the history masked (config.json
    ``train.exclude_seen``; models from before it was recorded kept the history)."""
    train = config.get("train")
    return bool(train.get("exclude_seen", False)) if isinstance(train, dict) else False


def run_protocol(config: dict, asked: bool | None, model_dir: str | Path) -> bool:
    """``asked`` (None = not given) checked against the model's protocol; the one to use.

    One protocol per run: a model selected with the history kept is not evaluated with it
    masked, or the other way round (ConfigError naming both)."""
    trained = trained_protocol(config)
    if asked is None or asked == trained:
        return trained
    kept = {True: "masked", False: "kept"}
    flag = "--exclude-seen" if asked else "--no-exclude-seen"
    raise ConfigError(
        f"{flag}: the model in {model_dir} was trained and selected with the history "
        f"{kept[trained]} ({CONFIG_FILE} train.exclude_seen = {str(trained).lower()}); evaluate "
        f"it under that protocol (leave {flag} out) or train with {flag}"
    )


def model_summary(config: dict) -> dict:
    """Scheme, loss and training facts from a train step's config.json (tolerant of layout)."""
    weighting: dict = w if isinstance(w := config.get("weighting"), dict) else {}
    train: dict = t if isinstance(t := config.get("train"), dict) else {}
    return {
        "scheme": config.get("scheme") or weighting.get("scheme") or "unknown",
        "loss": config.get("loss") if isinstance(config.get("loss"), str) else "unknown",
        "best_epoch": config.get("best_epoch"),
        "epochs_run": config.get("epochs_run"),
        "model": config.get("model", {}),
        # the parameters that shaped the weights (scheme_parameters of the spec)
        "weighting": {k: weighting[k] for k in scheme_parameters(weighting) if k in weighting},
        "train": {k: train[k] for k in TRAIN_SETTINGS if k in train},
        "precision": config.get("precision"),
        "device": config.get("device"),
    }
