"""Checkpoints: ``checkpoints/last.pt`` (everything a --resume needs) and ``checkpoints/best.pt``
(the best model's state dict so far), each with a ``checksum`` of its content.

A checkpoint is verified when it is read: a corrupt, truncated or foreign file is an InputError
naming it, never resumed from. ``last.pt`` also records the run's identity (``run_identity``:
the options, model, dataset and weights.json it trained with); a --resume that differs in
anything but ``RESUMABLE_CHANGES`` is refused (``check_resumable``).
"""

from __future__ import annotations

import hashlib
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.core.model_artifact import load_torch_file, save_torch_file
from components.core.model_config import ModelConfig
from components.errors import ConfigError, InputError
from components.train.config import TrainConfig
from components.train.step import StepParts

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
# what last.pt holds besides "scaler" (None or absent but with fp16) and "checksum"
LAST_KEYS = ("identity", "model", "optimizer", "scheduler", "weighter", "rng", "state")
# options that may differ between a run and its --resume (everything else must match)
RESUMABLE_CHANGES = {
    "epochs",
    "patience",
    "stop_after_epochs",
    "threads",
    "device",
    "compile",
    "progress",
    "val_batch_size",
}

# every option's default: what a checkpoint written before the option existed trained with
TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


# ---- content checksums ----


def _digest(obj: Any, digest: Any) -> None:
    """Feed a canonical encoding of ``obj`` (tensors, dicts, lists, plain values) to ``digest``."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(obj.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        digest.update(f"A{obj.dtype}{obj.shape};".encode())
        digest.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)};".encode())
        for key in sorted(obj, key=repr):
            digest.update(f"{key!r}:".encode())
            _digest(obj[key], digest)
    elif isinstance(obj, list | tuple):
        digest.update(f"L{len(obj)};".encode())
        for item in obj:
            _digest(item, digest)
    else:
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())


def checkpoint_checksum(payload: dict) -> str:
    """sha256 of a checkpoint's content (every key but ``checksum``), independent of devices."""
    digest = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, digest)
    return digest.hexdigest()


# ---- writing and reading ----


def write_checkpoint(payload: dict, path: Path) -> None:
    """Write a checkpoint dict with its ``checksum`` (atomically)."""
    save_torch_file({**payload, "checksum": checkpoint_checksum(payload)}, path)


def read_checkpoint(path: Path, keys: tuple[str, ...] = ()) -> dict:
    """Read a checkpoint written by ``write_checkpoint``; anything else (corrupt, truncated,
    empty, a wrong checksum, missing ``keys``) is an InputError naming the file."""
    payload = load_torch_file(path)
    how = "delete it (or run without --resume) to start over"
    if not isinstance(payload, dict) or "checksum" not in payload:
        raise InputError(f"{path}: not a valid dwlrec checkpoint (no checksum); {how}")
    if payload["checksum"] != checkpoint_checksum(payload):
        raise InputError(
            f"{path}: not a valid dwlrec checkpoint: its content does not match its checksum "
            f"(the file is corrupt); {how}"
        )
    missing = [key for key in keys if key not in payload]
    if missing:
        raise InputError(f"{path}: not a valid dwlrec checkpoint (missing {missing}); {how}")
    return payload


def read_best_model(ckpt_dir: Path) -> dict:
    """The state dict in ``ckpt_dir``/best.pt (verified)."""
    return read_checkpoint(ckpt_dir / BEST_CHECKPOINT, ("model",))["model"]


def clear_checkpoints(ckpt_dir: Path) -> None:
    """Remove last.pt and best.pt: a fresh run never mixes with an old one's checkpoints."""
    for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
        (ckpt_dir / name).unlink(missing_ok=True)


# ---- random number generators ----


def rng_state() -> dict:
    """This process's torch RNG state (CPU, and CUDA once CUDA is in use)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- what a --resume must agree on ----


def run_identity(
    cfg: TrainConfig, model_cfg: ModelConfig, fingerprint: dict, weights_fp: dict | None
) -> dict:
    """What a --resume must agree on with the checkpoint it resumes."""
    train = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    return {
        "train": train,
        "model": asdict(model_cfg),
        "dataset": fingerprint,
        "weights": weights_fp,
    }


def check_resumable(saved: dict, current: dict, path: Path) -> None:
    """ConfigError listing every difference (saved, now) outside ``RESUMABLE_CHANGES``."""
    diffs = {}
    for section in current:
        a, b = saved.get(section), current[section]
        if section == "train" and isinstance(a, dict) and isinstance(b, dict):
            # an option added since it was written: it trained with the option's default
            a = {**{k: TRAIN_DEFAULTS[k] for k in b if k in TRAIN_DEFAULTS}, **a}
        if isinstance(b, dict) and isinstance(a, dict):
            for key in set(a) | set(b):
                if a.get(key) != b.get(key):
                    diffs[f"{section}.{key}"] = (a.get(key), b.get(key))
        elif a != b:
            diffs[section] = (a, b)
    if diffs:
        raise ConfigError(
            f"{path}: cannot --resume, this run differs from the checkpoint (saved, now): {diffs}; "
            "run without --resume to start over, or with another --output"
        )


# ---- last.pt: a run's whole state ----


def last_payload(identity: dict, parts: StepParts, state: dict, rng: list) -> dict:
    """What last.pt holds after an epoch (``rng``: every process's ``rng_state``, by rank)."""
    return {
        "identity": identity,
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "weighter": parts.weighter.state_dict() if parts.weighter is not None else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
        "rng": rng,
        "state": state,
    }


def restore_last(path: Path, identity: dict, parts: StepParts) -> dict:
    """Load last.pt at ``path`` into ``parts`` (model, optimiser, schedule, weighter, scaler,
    this process's RNG) and return the saved trainer state. Refuses a checkpoint of another
    run (``check_resumable``) or a corrupt one, best.pt included (checked now, not at the end)."""
    ckpt = read_checkpoint(path, LAST_KEYS)
    check_resumable(ckpt["identity"], identity, path)
    parts.model.load_state_dict(ckpt["model"])
    parts.optimizer.load_state_dict(ckpt["optimizer"])
    parts.scheduler.load_state_dict(ckpt["scheduler"])
    if parts.weighter is not None:
        parts.weighter.load_state_dict(ckpt["weighter"])
    if parts.scaler is not None and ckpt.get("scaler"):
        parts.scaler.load_state_dict(ckpt["scaler"])
    if len(ckpt["rng"]) == parts.proc.world_size:
        set_rng_state(ckpt["rng"][parts.proc.rank])
    state = ckpt["state"]
    if state["best_epoch"]:
        read_best_model(path.parent)
    return state
