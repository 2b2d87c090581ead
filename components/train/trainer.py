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

The pieces: ``config`` (the options), ``inputs`` (what a run reads), ``distributed`` (devices,
precision, torchrun), ``step`` (one optimiser step), ``validation`` (the validation pass),
``checkpoint`` (last.pt / best.pt). Under torchrun (WORLD_SIZE > 1) every process builds the
same global batch, trains on its share and averages gradients with DDP; only rank 0 writes files.
With ``data="stream"`` each rank streams its own local batch from the training view instead
(``inputs.Inputs.train_batches``); the loss is the same Σω·ℓ/N over the global batch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from components.core import model_artifact
from components.core.devices import resolve_device
from components.core.model import SeqRecModel
from components.core.model_artifact import CONFIG_FILE, HISTORY_FILE, LOG_FILE, MODEL_FILE
from components.io import (
    atomic_dir,
    check_output,
    library_versions,
    read_output_marker,
    write_output_marker,
    write_text_atomic,
)
from components.train.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    clear_checkpoints,
    last_payload,
    read_best_model,
    restore_last,
    rng_state,
    run_identity,
    write_checkpoint,
)
from components.train.config import SELECT_METRICS, TrainConfig, split_options
from components.train.distributed import (
    Process,
    all_gather,
    autocast_dtype,
    barrier,
    broadcast,
    init_process,
    is_main_rank,
    local_rank,
    precision_name,
)
from components.train.inputs import Inputs, read_inputs
from components.train.step import (
    StepParts,
    make_optimizer,
    make_scheduler,
    train_step,
    wrap_model,
)
from components.train.validation import evaluate_split

log = logging.getLogger("dwlrec.train")


@dataclass
class TrainState:
    """What a run carries from epoch to epoch; last.pt saves it (``asdict``) as "state"."""

    epoch: int = 0  # the last epoch done
    step: int = 0  # optimiser steps done
    best_score: float = -1.0  # the best epoch's select_metric
    best_epoch: int = 0  # 0: none yet
    bad_epochs: int = 0  # epochs since the best one
    log: list[dict] = field(default_factory=list)  # train_log.jsonl
    best_val: dict | None = None

    def stopped_early(self, patience: int) -> bool:
        return self.bad_epochs >= patience > 0


@dataclass
class Run:
    """One invocation of the trainer: its inputs, the step's parts, where it writes."""

    inputs: Inputs
    parts: StepParts
    device: torch.device
    out: Path
    identity: dict  # what a --resume must agree on (checkpoint.run_identity)

    @property
    def cfg(self) -> TrainConfig:
        return self.inputs.cfg

    @property
    def proc(self) -> Process:
        return self.parts.proc

    @property
    def ckpt_dir(self) -> Path:
        return self.out / CHECKPOINT_DIR


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
    output: dict[str, Any] = {
        "step": "train",
        "inputs": (dataset_dir, weights_path),
        "overwrite": overwrite,
    }
    check_output(output_dir, in_place=resume, **output)  # every process, before any work
    if resume or not is_main_rank():  # in place; only rank 0 writes files
        return _train(dataset_dir, weights_path, Path(output_dir), resume=resume, **options)
    with atomic_dir(output_dir, **output) as staging:
        summary = _train(dataset_dir, weights_path, staging, resume=False, **options)
    return {**summary, "output": str(output_dir)}


def _train(dataset_dir, weights_path, out: Path, *, resume: bool, **options) -> dict:
    """Train into ``out`` (a staging directory, or the output itself when resuming)."""
    cfg, model_options = split_options(options)
    device = resolve_device(cfg.device, local_rank())  # fails fast: nothing read or written yet
    proc = init_process(device)
    amp_dtype = autocast_dtype(device, cfg.precision)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    inputs = read_inputs(cfg, model_options, dataset_dir, weights_path, device, proc)
    cfg = inputs.cfg

    torch.manual_seed(cfg.seed)
    model = SeqRecModel(inputs.model_cfg).to(device)
    optimizer, scaler = make_optimizer(cfg, model, amp_dtype)
    scheduler = make_scheduler(cfg, optimizer, cfg.epochs * inputs.steps_per_epoch(proc))
    torch.manual_seed(cfg.seed + 1000 * proc.rank)  # per-process stream: dropout, negatives
    parts = StepParts(
        model,
        model,  # wrapped below, once the checkpoint is loaded
        inputs.loss_fn,
        inputs.weighter,
        optimizer,
        scheduler,
        cfg.grad_clip,
        proc,
        autocast=amp_dtype,
        scaler=scaler,
        aux=inputs.aux,
        targets_per_user=inputs.windows.targets_per_user if cfg.loss_norm == "token" else None,
    )
    identity = run_identity(cfg, inputs.model_cfg, inputs.fingerprint, inputs.weights_dataset)
    run = Run(inputs, parts, device, out, identity)
    state = start_or_resume(run, resume)
    parts.wrapped = wrap_model(model, cfg, proc)

    end_epoch = cfg.epochs
    if cfg.stop_after_epochs:
        end_epoch = min(end_epoch, state.epoch + cfg.stop_after_epochs)
    best_state = None  # the best model of this invocation, if any
    for epoch in range(state.epoch + 1, end_epoch + 1):
        if state.stopped_early(cfg.patience):
            break
        improved = run_epoch(run, state, epoch)
        if improved:
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        save_checkpoint(run, state, best_state if improved else None)

    summary = {
        "output": str(out),
        "epochs_run": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val": state.best_val,
        "stopped_early": state.stopped_early(cfg.patience),
        "steps": state.step,
        "scheme": cfg.scheme,
        "loss": cfg.loss,
        "device": str(device),
        "precision": precision_name(amp_dtype),
        "world_size": proc.world_size,
    }
    if proc.is_main:
        write_model_artifact(run, state, best_state, summary)
        if resume:
            write_output_marker(out, "train")
    barrier(proc)
    return summary


def start_or_resume(run: Run, resume: bool) -> TrainState:
    """The state to start from: last.pt's with ``resume`` (if there is one), else a fresh one,
    with any previous run's files removed (rank 0)."""
    out, proc = run.out, run.proc
    last_path = run.ckpt_dir / LAST_CHECKPOINT
    if resume and last_path.exists():
        state = TrainState(**restore_last(last_path, run.identity, run.parts))
        if proc.is_main:
            log.info("resuming from %s after epoch %d", last_path, state.epoch)
    else:
        state = TrainState()
        if resume and proc.is_main:
            log.info("--resume: no checkpoint at %s, starting from scratch", last_path)
        if proc.is_main:
            for name in (MODEL_FILE, CONFIG_FILE, HISTORY_FILE, LOG_FILE):
                (out / name).unlink(missing_ok=True)  # never mix a new run with an old one's files
            clear_checkpoints(run.ckpt_dir)
    if resume and proc.is_main and (read_output_marker(out) or {}).get("step") != "train":
        out.mkdir(parents=True, exist_ok=True)  # in place: a train output even if killed
        write_output_marker(out, "train", complete=False)
    return state


def run_epoch(run: Run, state: TrainState, epoch: int) -> bool:
    """Train ``epoch``, validate, and add its record to ``state``; whether the model improved."""
    cfg, parts, proc = run.cfg, run.parts, run.proc
    weighter = parts.weighter
    parts.model.train()
    loss_sum = 0.0
    n_examples = n_sequences = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    local = run.inputs.local  # stream: each rank has its own batch of batch_size / world users
    bar = tqdm(
        run.inputs.train_batches(epoch, proc),
        desc=f"epoch {epoch}/{cfg.epochs}",
        total=run.inputs.steps_per_epoch(proc),
        unit="batch",
        leave=False,
        disable=not (cfg.progress and proc.is_main),
        mininterval=1.0,
    )
    for users, inputs_np, targets_np in bar:
        batch_loss, count = train_step(
            parts, inputs_np, targets_np, epoch, state.step + 1, users_np=users, local=local
        )
        state.step += 1
        loss_sum += batch_loss * count  # count: the GLOBAL batch's targets either way
        n_examples += count
        n_sequences += len(users) * (proc.world_size if local else 1)
        bar.set_postfix(
            refresh=False,
            loss=f"{batch_loss:.4f}",
            seq_s=f"{n_sequences / max(time.perf_counter() - t0, 1e-9):.0f}",
        )
    bar.close()
    seconds = time.perf_counter() - t0
    if weighter is not None:
        weighter.epoch_end(epoch, state.step)

    # validation ranks the in-memory prefixes, also under --data stream (inputs.py says why)
    def ranked(split: str) -> dict:  # under the run's protocol
        return evaluate_split(
            parts.model,
            run.inputs.seqs,
            split,
            run.device,
            cfg.val_batch_size,
            exclude_seen=cfg.exclude_seen,
        )

    val = ranked("valid") if proc.is_main else None
    # what the epoch cost a user: training and the validation pass (wall and this process's CPU)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    # for benchmarks only: never used to select
    test = ranked("test") if proc.is_main and cfg.record_test else None
    val = broadcast(val, proc)
    improved = val[cfg.select_metric] > state.best_score
    if improved:
        state.best_score, state.best_epoch, state.bad_epochs = val[cfg.select_metric], epoch, 0
        state.best_val = val
    else:
        state.bad_epochs += 1
    record = {
        "epoch": epoch,
        "step": state.step,
        "train_loss": float(loss_sum / max(n_examples, 1)),
        **{f"val_{name}": val[name] for name in SELECT_METRICS},
        **({f"test_{name}": test[name] for name in SELECT_METRICS} if test else {}),
        "seconds": round(seconds, 4),
        "epoch_wall_s": round(wall, 4),  # train + validation
        "epoch_cpu_s": round(cpu, 4),
        "sequences_per_s": round(n_sequences / seconds, 2),
        "lr": parts.scheduler.get_last_lr()[0],
        "domain_weights": weighter.current_weights() if weighter is not None else {},
    }
    if parts.aux is not None:  # aux-domain: the epoch's mean ℓ_domain (every process's share)
        record["domain_loss"] = sum(all_gather(parts.aux.take_sum(), proc)) / max(n_examples, 1)
    state.log.append(record)
    state.epoch = epoch
    if proc.is_main:
        log.info("%s", json.dumps(record))
    return improved


def save_checkpoint(run: Run, state: TrainState, best_state: dict | None) -> None:
    """After an epoch: train_log.jsonl, best.pt (when ``best_state``, the epoch improved) and
    last.pt. Every process takes part (their RNG states are gathered); rank 0 writes."""
    rng = all_gather(rng_state(), run.proc)
    if not run.proc.is_main:
        return
    write_text_atomic(run.out / LOG_FILE, "".join(json.dumps(r) + "\n" for r in state.log))
    if best_state is not None:
        write_checkpoint({"model": best_state}, run.ckpt_dir / BEST_CHECKPOINT)
    payload = last_payload(run.identity, run.parts, asdict(state), rng)
    write_checkpoint(payload, run.ckpt_dir / LAST_CHECKPOINT)


def write_model_artifact(
    run: Run, state: TrainState, best_state: dict | None, summary: dict
) -> None:
    """model.pt (the best epoch's), config.json, weights_history.json (rank 0)."""
    inputs, cfg, weighter = run.inputs, run.cfg, run.parts.weighter
    if best_state is None:  # the best epoch was before this invocation (resume)
        best_state = read_best_model(run.ckpt_dir)
    weights_path = inputs.weights_path
    model_artifact.write_model_artifact(
        run.out,
        best_state,
        weighter.history if weighter is not None else [],
        {
            "model": asdict(inputs.model_cfg),
            "train": asdict(cfg),
            "scheme": cfg.scheme,
            "loss": cfg.loss,
            "seed": cfg.seed,
            "dataset": inputs.fingerprint,
            "weights_file": None if weights_path is None else str(weights_path),
            "weighting": weighter.params if weighter is not None else None,
            # where each weighting value came from: train option | weights.json | default
            "weighting_sources": inputs.spec_sources if weighter is not None else None,
            **{k: summary[k] for k in ("epochs_run", "best_epoch", "best_val", "stopped_early")},
            **{k: summary[k] for k in ("world_size", "device", "precision")},
            # the domain head's classes, in order (aux-domain; [] = no head)
            model_artifact.DOMAIN_CLASSES_KEY: inputs.aux.targets.domains if inputs.aux else [],
            "library_versions": library_versions(),
        },
    )
