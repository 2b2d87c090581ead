"""Devices and processes: the precision a device trains in, the torchrun process group, and the
few collective operations the trainer needs (rank 0 decides, every process follows).

Precision (``autocast_dtype``, train's ``--precision``): ``auto`` follows the device — bf16
autocast on CUDA devices of compute capability >= 8.0, fp16 autocast with a gradient scaler on
older ones (T4, V100), float32 on CPU; ``bf16`` asks for bf16 autocast on any device (on a CPU
with AMX or AVX-512 BF16 its matrix products are several times faster); ``fp32`` turns it off.

The process group and its collectives live in ``components.core.process_group`` (the evaluate
step shares them); device names in ``components.core.devices``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from components.core.process_group import (
    Process,
    all_gather,
    barrier,
    broadcast,
    join,
    local_rank,
)

# the trainer's names for the shared process-group helpers (components/core/process_group.py)
__all__ = [
    "Process",
    "all_gather",
    "autocast_dtype",
    "barrier",
    "broadcast",
    "init_process",
    "is_main_rank",
    "local_rank",
    "precision_name",
    "to_device",
]


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype on ``device`` for ``precision`` (auto | fp32 | bf16): auto is bf16
    from compute capability 8.0 (Ampere) on, fp16 on older GPUs (T4, V100: trained with a
    gradient scaler), None (float32) on CPU."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type != "cuda":
        return None
    if torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """``bf16`` | ``fp16`` | ``fp32``, as recorded in config.json and the summary."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype]


def is_main_rank() -> bool:
    """Whether this process is rank 0, before (or without) joining the process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


init_process = join  # the trainer's name: join the torchrun group when WORLD_SIZE > 1


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy batch as a tensor on ``device`` (pinned, non-blocking copy to a GPU)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
