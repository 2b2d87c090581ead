"""The train step (SPEC §6): fit the model with a (domain-weighted) next-item loss.

``train(dataset_dir, weights_path, output_dir, **options)`` reads an ingest output and a stats
step's weights.json and writes the Model artifact dir:

    model.pt               state dict of the best epoch by validation NDCG@10 (full ranking)
    config.json            ModelConfig, TrainConfig, dataset fingerprint, epochs run, best epoch
    weights_history.json   the domain weights after every update (initial weights first)
    train_log.jsonl        one JSON line per epoch
    checkpoints/last.pt    model, optimiser, scheduler, gradient scaler, RNG and weighter state:
                           for --resume
    checkpoints/best.pt    the best model's state dict so far ({"model": state dict})

Both checkpoints carry a ``checksum`` of their content, verified when they are read (a corrupt
file is refused, never resumed from); config.json records the sha256 of model.pt. A fresh run
trains in a staging directory that replaces ``output_dir`` only on success (``atomic_dir``: a
failed run leaves the previous model as it was); ``resume=True`` trains in place, so that a
killed run continues from its checkpoints.

Precision follows the device (``autocast_dtype``): bf16 autocast on CUDA devices of compute
capability >= 8.0, fp16 autocast with a gradient scaler on older ones (T4, V100), float32 on CPU.

Under torchrun (WORLD_SIZE > 1) every process builds the same global batch, trains on its share
and averages gradients with DDP (gloo on CPU, nccl on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from components.core.devices import DEVICES, resolve_device
from components.core.metrics import ndcg_at_k, recall_at_k
from components.core.model import ModelConfig, SeqRecModel
from components.core.model_artifact import (
    CONFIG_FILE,
    HISTORY_FILE,
    LOG_FILE,
    MODEL_FILE,
    load_torch_file,
    save_torch_file,
    write_model_artifact,
)
from components.core.ranking import ranks_from_embeddings, user_states
from components.core.sequences import UserSequences, trim_left_padding
from components.core.weighting import (
    PARAMETER_NAMES,
    SCHEMES,
    DomainWeighter,
    WeightingSpec,
    check_dataset,
    load_weights,
    resolve_spec,
)
from components.errors import ConfigError, DwlrecError, InputError
from components.io import (
    atomic_dir,
    check_output,
    library_versions,
    read_output_marker,
    write_output_marker,
    write_text_atomic,
)
from components.schema import dataset_fingerprint, load_dataset
from components.train.data import TrainWindows, epoch_batches, shard
from components.train.losses import LOSSES, LossFunction, train_item_probs, weighted_mean

log = logging.getLogger("dwlrec.train")

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
DECAYS = ("none", "linear", "cosine")
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


class TrainingError(DwlrecError):
    """Training failed (e.g. the loss became NaN/inf)."""


@dataclass
class TrainConfig:
    """Every option of the train step except the model's (those are in ModelConfig)."""

    scheme: str = "none"  # none | fixed | inverse | dynamic (SPEC §5)
    loss: str = "ce"  # ce | sampled | bce | gbce | mml (SPEC §6)
    epochs: int = 50
    batch_size: int = 128  # users per optimiser step (global, across DDP processes)
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay: str = "none"  # none | linear | cosine, to 0 at the last step of `epochs`
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    patience: int = 5  # early stopping: epochs without a better val NDCG@10; 0 = off
    seed: int = 0
    negatives: int = 128  # R (sampled) or k (gbce, mml); bce uses 1
    temperature: float = 1.0  # sampled softmax
    gbce_t: float = 0.75
    # the weighting parameters train may set (WeightingSpec); None = as weights.json recorded
    beta: float | None = None  # dynamic: EMA factor
    update_every_steps: int | None = None  # dynamic: 0 = update at each epoch end
    agg: str | None = None  # ω of a multi-domain item: mean | max of its domains' weights
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    compile: bool = False  # torch.compile the model (CUDA)
    val_batch_size: int = 1024
    length_buckets: int = 0  # > 1: batch users of similar length, sorting runs of N batches
    stop_after_epochs: int = 0  # stop this invocation after N epochs (resume later); 0 = off
    progress: bool = True  # tqdm progress bar on rank 0

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed; runs before anything is read
        (and in the pipeline's pre-run check). --negatives above the catalogue size is checked
        by LossFunction once the dataset is known, still before training."""
        import numbers

        def option(name: str) -> str:
            return f"--{name.replace('_', '-')}"

        for name, allowed in (
            ("scheme", SCHEMES),
            ("loss", LOSSES),
            ("device", DEVICES),
            ("decay", DECAYS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(
                    f"{option(name)}: unknown {name} {value!r}; choose one of {list(allowed)}"
                )
        # integers: name → smallest allowed value
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("val_batch_size", 1),
            ("negatives", 1),
            ("warmup_steps", 0),
            ("patience", 0),
            ("seed", 0),
            ("threads", 0),
            ("length_buckets", 0),
            ("stop_after_epochs", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(f"{option(name)}: expected an integer, got {value!r}")
            if value < low:
                raise ConfigError(f"{option(name)} must be >= {low}, got {value}")
        # real numbers: name → (test, what is allowed); NaN and inf fail every test
        reals = {
            "lr": (lambda v: v > 0, "> 0"),
            "weight_decay": (lambda v: v >= 0, ">= 0"),
            "grad_clip": (lambda v: v >= 0, ">= 0 (0 = off)"),
            "temperature": (lambda v: v > 0, "> 0"),
            "gbce_t": (lambda v: 0 <= v <= 1, "in [0, 1]"),
        }
        for name, (ok, allowed) in reals.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{option(name)}: expected a number, got {value!r}")
            if not math.isfinite(value) or not ok(value):
                raise ConfigError(
                    f"{option(name)} must be {allowed} (a finite number), got {value}"
                )
        for name in ("compile", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{option(name)}: expected true or false, got {getattr(self, name)!r}"
                )
        WeightingSpec(scheme=self.scheme, **self.weighting_given()).validate()

    def weighting_given(self) -> dict:
        """The weighting parameters given explicitly (the others: as weights.json recorded)."""
        return {k: getattr(self, k) for k in WEIGHTING_OPTIONS if getattr(self, k) is not None}


# the TrainConfig fields that are WeightingSpec parameters: given, they override weights.json
WEIGHTING_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name in PARAMETER_NAMES)


def split_options(options: dict) -> tuple[TrainConfig, dict]:
    """Keyword options → (TrainConfig, model options); unknown names are a ConfigError."""
    train_names = {f.name for f in fields(TrainConfig)}
    model_names = {f.name for f in fields(ModelConfig)} - {"n_items"}
    unknown = sorted(set(options) - train_names - model_names)
    if unknown:
        raise ConfigError(f"train: unknown option(s) {unknown}")
    cfg = TrainConfig(**{k: v for k, v in options.items() if k in train_names})
    cfg.validate()
    return cfg, {k: v for k, v in options.items() if k in model_names}


# ---- devices and processes (resolve_device: components.core.devices) ----


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on ``device``: bf16 from compute capability 8.0 (Ampere) on, fp16 on
    older GPUs (T4, V100: trained with a gradient scaler), None (float32) on CPU."""
    if device.type != "cuda":
        return None
    if torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """``bf16`` | ``fp16`` | ``fp32``, as recorded in config.json and the summary."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype]


@dataclass
class Process:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """This process's rank on its node (torchrun's LOCAL_RANK; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def init_process(device: torch.device) -> Process:
    """Join the torchrun process group when WORLD_SIZE > 1 (or reuse an initialised one)."""
    if dist.is_available() and dist.is_initialized():
        return Process(dist.get_rank(), dist.get_world_size(), local_rank())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Process()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), local_rank())


def _broadcast(obj, proc: Process):
    if proc.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


# ---- validation ----


@torch.no_grad()
def evaluate_split(
    model: SeqRecModel,
    seqs: UserSequences,
    split: str,
    device: torch.device,
    batch_size: int = 1024,
) -> dict:
    """Full-ranking Recall@10 / NDCG@10 of ``split`` ('valid' or 'test') over every item."""
    was_training = model.training
    _, prefix, target = seqs.prefixes(split, model.cfg.max_len)
    states = user_states(model, prefix, device, batch_size)  # puts the model in eval mode
    ranks, _ = ranks_from_embeddings(states, model.item_embeddings(), target)
    ranks = ranks.cpu().numpy()
    model.train(was_training)
    return {
        "users": len(target),
        "recall@10": float(recall_at_k(ranks, 10).mean()) if len(ranks) else 0.0,
        "ndcg@10": float(ndcg_at_k(ranks, 10).mean()) if len(ranks) else 0.0,
    }


# ---- the schedule ----


def lr_lambda(cfg: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.decay == "none":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.decay == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ---- checkpoints ----


def _digest(obj, digest) -> None:
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
    import hashlib

    digest = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "checksum"}, digest)
    return digest.hexdigest()


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write a checkpoint dict with its ``checksum`` (atomically)."""
    save_torch_file({**payload, "checksum": checkpoint_checksum(payload)}, path)


def load_checkpoint(path: Path, keys=()) -> dict:
    """Read a checkpoint written by ``save_checkpoint``; anything else (corrupt, truncated,
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


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _gather_rng(proc: Process) -> list:
    if proc.world_size == 1:
        return [_rng_state()]
    states = [None] * proc.world_size
    dist.all_gather_object(states, _rng_state())
    return states


def _run_identity(cfg: TrainConfig, model_cfg: ModelConfig, fingerprint: dict, weights_fp) -> dict:
    """What a --resume must agree on with the checkpoint it resumes."""
    train = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    return {
        "train": train,
        "model": asdict(model_cfg),
        "dataset": fingerprint,
        "weights": weights_fp,
    }


def _check_resumable(saved: dict, current: dict, path: Path) -> None:
    diffs = {}
    for section in current:
        a, b = saved.get(section), current[section]
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


# ---- one optimiser step ----


@dataclass
class StepParts:
    """What one training step needs; ``wrapped`` is the model as called (compiled / DDP)."""

    model: SeqRecModel
    wrapped: torch.nn.Module
    loss_fn: LossFunction
    weighter: DomainWeighter | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    grad_clip: float
    proc: Process
    autocast: torch.dtype | None = None  # None: float32
    scaler: torch.amp.GradScaler | None = None  # fp16 only


def train_step(
    parts: StepParts, inputs_np: np.ndarray, targets_np: np.ndarray, epoch: int, step: int
) -> tuple[float, int]:
    """One optimiser step on a GLOBAL batch (this process trains on its shard).

    Returns (the global batch loss Σω·ℓ/N, N = the number of targets in the global batch).
    """
    proc, weighter = parts.proc, parts.weighter
    device = next(parts.model.parameters()).device
    count = int((targets_np > 0).sum())
    mine = shard(np.arange(len(inputs_np)), proc.rank, proc.world_size)
    inputs_np, targets_np_mine = trim_left_padding(inputs_np[mine], targets_np[mine])
    inputs = _to_device(inputs_np, device)  # [b, L' <= max_len]
    targets = _to_device(targets_np_mine, device)  # [b, L']
    is_target = targets > 0
    flat_targets = targets[is_target]  # [N_local]
    with torch.autocast(
        device.type, dtype=parts.autocast or torch.float32, enabled=parts.autocast is not None
    ):
        states = parts.wrapped(inputs)[is_target]  # [N_local, d]
        per_example = parts.loss_fn(states, flat_targets, parts.model.item_embeddings())
        omega = (
            weighter.example_weights(flat_targets)
            if weighter is not None
            else torch.ones_like(per_example)
        )
        # Σω·ℓ / N over the GLOBAL batch; DDP averages gradients over processes, hence × world
        loss = weighted_mean(per_example.float(), omega.float(), count) * proc.world_size
    batch_loss = loss.detach().double() / proc.world_size
    if proc.world_size > 1:
        dist.all_reduce(batch_loss)
    if not torch.isfinite(batch_loss):
        raise TrainingError(
            f"loss is {batch_loss.item()} at epoch {epoch}, step {step} "
            f"(lr {parts.scheduler.get_last_lr()[0]:.3g}); try a lower --lr or --grad-clip"
        )
    parts.optimizer.zero_grad(set_to_none=True)
    scaler = parts.scaler
    if scaler is None:
        loss.backward()
    else:  # fp16: scale the loss so small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.unscale_(parts.optimizer)  # clip the true gradients
    if parts.grad_clip:
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), parts.grad_clip)
    if scaler is None:
        parts.optimizer.step()
    else:
        scaler.step(parts.optimizer)  # skipped when the gradients overflowed
        scaler.update()
    parts.scheduler.step()
    if weighter is not None:
        weighter.observe(torch.from_numpy(targets_np))
        weighter.step_end(epoch, step)
    return batch_loss.item(), count


# ---- the entry point ----


def _is_main_rank() -> bool:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def train(
    dataset_dir,
    weights_path,
    output_dir,
    *,
    resume: bool = False,
    overwrite: bool = False,
    **options,
) -> dict:
    """Train one variant and write the Model artifact dir (see the module docstring).

    ``options``: any TrainConfig field (scheme, loss, epochs, batch_size, lr, …, device) and any
    ModelConfig field but n_items (max_len, d_model, n_blocks, n_heads, dropout, ff_mult).
    ``weights_path`` may be None for scheme 'none'. Returns a summary dict.

    ``output_dir`` may replace (fresh run) or be trained in (``resume``) only when it is new,
    empty or a previous train output, unless ``overwrite``; never an input (components.io).
    A fresh run writes it only on success.
    """
    output = {"step": "train", "inputs": (dataset_dir, weights_path), "overwrite": overwrite}
    check_output(output_dir, in_place=resume, **output)  # every process, before any work
    if resume or not _is_main_rank():  # in place; only rank 0 writes files
        return _train(dataset_dir, weights_path, Path(output_dir), resume=resume, **options)
    with atomic_dir(output_dir, **output) as staging:
        summary = _train(dataset_dir, weights_path, staging, resume=False, **options)
    return {**summary, "output": str(output_dir)}


def _train(dataset_dir, weights_path, out: Path, *, resume: bool, **options) -> dict:
    """Train into ``out`` (a staging directory, or the output itself when resuming)."""
    cfg, model_options = split_options(options)
    device = resolve_device(cfg.device, local_rank())  # fails fast: nothing read or written yet
    proc = init_process(device)
    amp_dtype = autocast_dtype(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # -- inputs: every check before anything is written --
    dataset = load_dataset(dataset_dir)
    fingerprint = dataset_fingerprint(dataset)
    if weights_path is None:
        if cfg.scheme != "none":
            raise ConfigError(f"--weights is required for --scheme {cfg.scheme}")
        weights = None
    else:
        weights = load_weights(weights_path)
        check_dataset(weights, fingerprint, weights_path)  # e.g. another dataset's item count
    # the spec: each option given explicitly, else what weights.json recorded, else the default
    spec, spec_sources = resolve_spec(
        cfg.scheme,
        weights and weights["params"],
        str(weights_path),
        **cfg.weighting_given(),
    )
    cfg = replace(cfg, **{k: getattr(spec, k) for k in WEIGHTING_OPTIONS})  # the values used
    weighter = DomainWeighter(spec, weights, dataset.item_domains()) if weights else None
    model_cfg = ModelConfig(n_items=dataset.n_items, **model_options)
    seqs = UserSequences.from_interactions(dataset.interactions, dataset.n_items)
    train_offsets, train_items = seqs.train_sequences()
    windows = TrainWindows(train_offsets, train_items, model_cfg.max_len)
    train_users = windows.users
    if len(train_users) == 0:
        raise InputError(f"{dataset.path}: no user has 2+ train interactions; nothing to train on")
    loss_fn = LossFunction(
        cfg.loss,
        dataset.n_items,
        negatives=cfg.negatives,
        temperature=cfg.temperature,
        gbce_t=cfg.gbce_t,
        item_probs=train_item_probs(train_items, dataset.n_items).to(device),
    )

    # -- model, optimiser, schedule --
    torch.manual_seed(cfg.seed)
    model = SeqRecModel(model_cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    def batches_of(epoch: int) -> list[np.ndarray]:
        batches = epoch_batches(
            train_users, cfg.batch_size, cfg.seed, epoch, windows.lengths, cfg.length_buckets
        )
        return [b for b in batches if len(b) >= proc.world_size]  # every process gets a user

    steps_per_epoch = len(batches_of(0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg, cfg.epochs * steps_per_epoch)
    )
    torch.manual_seed(cfg.seed + 1000 * proc.rank)  # per-process stream: dropout, negatives

    ckpt_dir = out / CHECKPOINT_DIR
    identity = _run_identity(cfg, model_cfg, fingerprint, weights and weights.get("dataset"))
    state = {
        "epoch": 0,
        "step": 0,
        "best_ndcg": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "log": [],
        "best_val": None,
    }
    last_path = ckpt_dir / LAST_CHECKPOINT
    if resume and last_path.exists():
        ckpt = load_checkpoint(
            last_path, ("identity", "model", "optimizer", "scheduler", "weighter", "rng", "state")
        )
        _check_resumable(ckpt["identity"], identity, last_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if weighter is not None:
            weighter.load_state_dict(ckpt["weighter"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if len(ckpt["rng"]) == proc.world_size:
            _set_rng_state(ckpt["rng"][proc.rank])
        state = ckpt["state"]
        if state["best_epoch"]:  # read at the end: a corrupt one fails now, not after training
            load_checkpoint(ckpt_dir / BEST_CHECKPOINT, ("model",))
        if proc.is_main:
            log.info("resuming from %s after epoch %d", last_path, state["epoch"])
    elif resume and proc.is_main:
        log.info("--resume: no checkpoint at %s, starting from scratch", last_path)
    if proc.is_main and not (resume and last_path.exists()):
        for name in (MODEL_FILE, CONFIG_FILE, HISTORY_FILE, LOG_FILE):
            (out / name).unlink(missing_ok=True)  # never mix a new run with an old one's files
        for name in (LAST_CHECKPOINT, BEST_CHECKPOINT):
            (ckpt_dir / name).unlink(missing_ok=True)
    if resume and proc.is_main and (read_output_marker(out) or {}).get("step") != "train":
        out.mkdir(parents=True, exist_ok=True)  # in place: a train output even if killed
        write_output_marker(out, "train", complete=False)

    if cfg.compile:
        compiled = torch.compile(model)
    else:
        compiled = model
    if proc.world_size > 1:
        ddp_ids = [proc.local_rank] if device.type == "cuda" else None
        compiled = torch.nn.parallel.DistributedDataParallel(compiled, device_ids=ddp_ids)
    parts = StepParts(
        model,
        compiled,
        loss_fn,
        weighter,
        optimizer,
        scheduler,
        cfg.grad_clip,
        proc,
        autocast=amp_dtype,
        scaler=scaler,
    )

    # -- the epochs --
    start_epoch = state["epoch"] + 1
    end_epoch = cfg.epochs
    if cfg.stop_after_epochs:
        end_epoch = min(end_epoch, state["epoch"] + cfg.stop_after_epochs)
    stopped_early = state["bad_epochs"] >= cfg.patience > 0
    best_state = None
    for epoch in range(start_epoch, end_epoch + 1):
        if stopped_early:
            break
        model.train()
        batches = batches_of(epoch)
        loss_sum = 0.0
        n_examples = n_sequences = 0
        t0 = time.perf_counter()
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=not (cfg.progress and proc.is_main),
            mininterval=1.0,
        )
        for users in bar:
            inputs_np, targets_np = windows.batch(users)  # the whole global batch
            batch_loss, count = train_step(parts, inputs_np, targets_np, epoch, state["step"] + 1)
            state["step"] += 1
            loss_sum += batch_loss * count
            n_examples += count
            n_sequences += len(users)
            bar.set_postfix(
                refresh=False,
                loss=f"{batch_loss:.4f}",
                seq_s=f"{n_sequences / max(time.perf_counter() - t0, 1e-9):.0f}",
            )
        bar.close()
        seconds = time.perf_counter() - t0
        if weighter is not None:
            weighter.epoch_end(epoch, state["step"])

        val = (
            evaluate_split(model, seqs, "valid", device, cfg.val_batch_size)
            if proc.is_main
            else None
        )
        val = _broadcast(val, proc)
        improved = val["ndcg@10"] > state["best_ndcg"]
        if improved:
            state.update(best_ndcg=val["ndcg@10"], best_epoch=epoch, bad_epochs=0, best_val=val)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        record = {
            "epoch": epoch,
            "step": state["step"],
            "train_loss": float(loss_sum / max(n_examples, 1)),
            "val_recall@10": val["recall@10"],
            "val_ndcg@10": val["ndcg@10"],
            "seconds": round(seconds, 4),
            "sequences_per_s": round(n_sequences / seconds, 2),
            "lr": scheduler.get_last_lr()[0],
            "domain_weights": weighter.current_weights() if weighter is not None else {},
        }
        state["log"].append(record)
        state["epoch"] = epoch
        stopped_early = state["bad_epochs"] >= cfg.patience > 0
        rng = _gather_rng(proc)
        if proc.is_main:
            log.info("%s", json.dumps(record))
            write_text_atomic(out / LOG_FILE, "".join(json.dumps(r) + "\n" for r in state["log"]))
            if improved:
                save_checkpoint({"model": best_state}, ckpt_dir / BEST_CHECKPOINT)
            save_checkpoint(
                {
                    "identity": identity,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "weighter": weighter.state_dict() if weighter is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng,
                    "state": state,
                },
                last_path,
            )

    # -- the Model artifact --
    summary = {
        "output": str(out),
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_val": state["best_val"],
        "stopped_early": stopped_early,
        "steps": state["step"],
        "scheme": cfg.scheme,
        "loss": cfg.loss,
        "device": str(device),
        "precision": precision_name(amp_dtype),
        "world_size": proc.world_size,
    }
    if proc.is_main:
        if best_state is None:  # the best epoch was before this invocation (resume)
            best_state = load_checkpoint(ckpt_dir / BEST_CHECKPOINT, ("model",))["model"]
        write_model_artifact(
            out,
            best_state,
            weighter.history if weighter is not None else [],
            {
                "model": asdict(model_cfg),
                "train": asdict(cfg),
                "scheme": cfg.scheme,
                "loss": cfg.loss,
                "seed": cfg.seed,
                "dataset": fingerprint,
                "weights_file": None if weights_path is None else str(weights_path),
                "weighting": weighter.params if weighter is not None else None,
                # where each weighting value came from: train option | weights.json | default
                "weighting_sources": spec_sources if weighter is not None else None,
                "epochs_run": state["epoch"],
                "best_epoch": state["best_epoch"],
                "best_val": state["best_val"],
                "stopped_early": stopped_early,
                "world_size": proc.world_size,
                "device": str(device),
                "precision": precision_name(amp_dtype),
                "library_versions": library_versions(),
            },
        )
        if resume:
            write_output_marker(out, "train")
    if proc.world_size > 1:
        dist.barrier()
    return summary
