"""One optimiser step and what it needs: the optimiser, the learning-rate schedule, the gradient
scaler (fp16), the model as called (compiled / DDP) and ``train_step``.

The batch loss is Σω·ℓ / N over the GLOBAL batch. ``--loss-norm batch``: N = its number of
targets; ``token`` (the default): N = its users × the train split's mean targets per user, so
every target weighs the same whatever the batch's lengths (the logged loss stays Σω·ℓ / its
targets). Every process builds the same global batch, trains on its shard, and DDP averages the
gradients. With a LOCAL batch (``local=True``, ``--data stream``: each rank streams its own) the
counts are all-reduced over the ranks, so the loss is the same formula; a weighter that needs every target of the
global batch (``DomainWeighter.needs_global_targets``: dynamic counts, dro's group masses) gets
them all-gathered from the ranks, in rank order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.distributed as dist

from components.core.model import SeqRecModel
from components.core.sequences import trim_left_padding
from components.core.weighting import DomainWeighter
from components.errors import DwlrecError
from components.train.config import TrainConfig
from components.train.data import shard
from components.train.distributed import Process, to_device
from components.train.losses import DomainLoss, LossFunction, weighted_mean


class TrainingError(DwlrecError):
    """Training failed (e.g. the loss became NaN/inf)."""


# ---- the schedule and the optimiser ----


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """The factor of the learning rate at each step: linear warm-up over ``warmup_steps``,
    then constant, linear or cosine decay to 0 at ``total_steps``."""

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


def make_optimizer(
    cfg: TrainConfig, model: SeqRecModel, amp_dtype: torch.dtype | None
) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler | None]:
    """Adam or AdamW (``cfg.optimizer``) over the model's parameters, and a gradient scaler when
    training in fp16."""
    kind = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    optimizer = kind(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    device_type = next(model.parameters()).device.type
    scaler = torch.amp.GradScaler(device_type) if amp_dtype == torch.float16 else None
    return optimizer, scaler


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule over ``total_steps`` (``lr_lambda``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))


def wrap_model(model: SeqRecModel, cfg: TrainConfig, proc: Process) -> torch.nn.Module:
    """The model as the step calls it: torch.compile'd with --compile, in DDP under torchrun."""
    wrapped = cast(torch.nn.Module, torch.compile(model)) if cfg.compile else model
    if proc.world_size > 1:
        device = next(model.parameters()).device
        ddp_ids = [proc.local_rank] if device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(wrapped, device_ids=ddp_ids)
    return wrapped


# ---- one step ----


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
    aux: DomainLoss | None = None  # --aux-domain λ > 0: the domain head's loss
    # --loss-norm token: the train split's mean targets per user; a batch's loss is then
    # divided by its users × this instead of its own number of targets
    targets_per_user: float | None = None


def _target_users(
    weighter: DomainWeighter, users_np: np.ndarray | None, mine: np.ndarray, is_target: torch.Tensor
) -> torch.Tensor | None:
    """The user of each of this shard's targets, for a weighter that needs it (dynamic-user)."""
    if users_np is None or not weighter.needs_users:
        return None
    rows = torch.as_tensor(users_np[mine], device=is_target.device)  # [b]
    return rows[:, None].expand_as(is_target)[is_target]  # [N_local]


def _global_counts(counts: tuple[int, ...], proc: Process, device: torch.device) -> list[int]:
    """The sums of every rank's ``counts`` (one all-reduce; the counts themselves with one
    process)."""
    if proc.world_size == 1:
        return list(counts)
    total = torch.tensor(counts, dtype=torch.int64, device=device)  # nccl: on the GPU
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]


def _global_targets(targets_np: np.ndarray, proc: Process, device: torch.device) -> np.ndarray:
    """Every rank's local targets [B_local, L] stacked in rank order: the global batch's. The
    ranks' batches have one shape (the stream yields full batches); int32 halves the bytes."""
    if proc.world_size == 1:
        return targets_np
    mine = torch.from_numpy(targets_np.astype(np.int32)).to(device)
    parts = [torch.empty_like(mine) for _ in range(proc.world_size)]
    dist.all_gather(parts, mine)
    return torch.cat(parts).cpu().numpy().astype(np.int64)


def train_step(
    parts: StepParts,
    inputs_np: np.ndarray,
    targets_np: np.ndarray,
    epoch: int,
    step: int,
    users_np: np.ndarray | None = None,
    local: bool = False,
) -> tuple[float, int]:
    """One optimiser step on a GLOBAL batch (this process trains on its shard) or, with
    ``local``, on this process's LOCAL part of the global batch (every rank gives its own).

    ``users_np``: the batch's users, one per row (for dynamic-user). Returns (the global batch
    loss Σω·ℓ/N, N = the number of targets in the global batch).
    """
    proc, weighter = parts.proc, parts.weighter
    device = next(parts.model.parameters()).device
    count, n_users = int((targets_np > 0).sum()), len(targets_np)
    all_targets = targets_np  # every target of the global batch (what the weighter observes)
    if local:
        mine = np.arange(len(inputs_np))  # all of it is this process's shard
        count, n_users = _global_counts((count, n_users), proc, device)
        if weighter is not None and weighter.needs_global_targets:
            all_targets = _global_targets(targets_np, proc, device)
    else:
        mine = shard(np.arange(len(inputs_np)), proc.rank, proc.world_size)
    inputs_np, targets_np_mine = trim_left_padding(inputs_np[mine], targets_np[mine])
    inputs = to_device(inputs_np, device)  # [b, L' <= max_len]
    targets = to_device(targets_np_mine, device)  # [b, L']
    is_target = targets > 0
    norm: float = count  # the loss's divisor (--loss-norm)
    if parts.targets_per_user is not None:  # n_users: the GLOBAL batch's
        norm = n_users * parts.targets_per_user
    flat_targets = targets[is_target]  # [N_local]
    with torch.autocast(
        device.type, dtype=parts.autocast or torch.float32, enabled=parts.autocast is not None
    ):
        states = parts.wrapped(inputs)[is_target]  # [N_local, d]
        per_example = parts.loss_fn(states, flat_targets, parts.model.item_embeddings())
        omega = (
            weighter.example_weights(
                flat_targets, _target_users(weighter, users_np, mine, is_target), all_targets
            )
            if weighter is not None
            else torch.ones_like(per_example)
        )
        # Σω·ℓ / N over the GLOBAL batch; DDP averages gradients over processes, hence × world
        loss = weighted_mean(per_example.float(), omega.float(), norm) * proc.world_size
        if parts.aux is not None:  # + λ·Σℓ_domain / N, unweighted (losses.DomainLoss says why)
            domain = parts.aux(parts.model.domain_logits(states), flat_targets)  # [N_local]
            loss = loss + parts.aux.weight * domain.float().sum() / norm * proc.world_size
    batch_loss = loss.detach().double() * (norm / count) / proc.world_size  # per target
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
        weighter.observe(torch.from_numpy(all_targets))
        weighter.observe_losses(flat_targets, per_example)  # dro: q from the detached losses
        weighter.step_end(epoch, step)
    return batch_loss.item(), count
