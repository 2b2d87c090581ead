"""Devices and processes: the precision a device trains in, the torchrun process group, and the
few collective operations the trainer needs (rank 0 decides, every process follows).

Precision follows the device (``autocast_dtype``): bf16 autocast on CUDA devices of compute
capability >= 8.0, fp16 autocast with a gradient scaler on older ones (T4, V100), float32 on CPU.

Under torchrun (WORLD_SIZE > 1) every process joins one group (gloo on CPU, nccl on GPU); with
one process every helper here is a plain pass-through. Device names: ``components.core.devices``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


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
    """This process's place in the torchrun group (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """This process's rank on its node (torchrun's LOCAL_RANK; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_rank() -> bool:
    """Whether this process is rank 0, before (or without) joining the process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


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


def broadcast(obj: Any, proc: Process) -> Any:
    """Rank 0's ``obj`` on every process (picklable objects)."""
    if proc.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: Any, proc: Process) -> list:
    """Every process's ``obj``, in rank order, on every process."""
    if proc.world_size == 1:
        return [obj]
    objects: list = [None] * proc.world_size
    dist.all_gather_object(objects, obj)
    return objects


def barrier(proc: Process) -> None:
    """Wait for every process (no-op with one)."""
    if proc.world_size > 1:
        dist.barrier()


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy batch as a tensor on ``device`` (pinned, non-blocking copy to a GPU)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
