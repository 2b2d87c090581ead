"""Where this process stands among torchrun's processes, and the few collectives the train and
evaluate steps need (rank 0 decides or writes, every process follows).

Under torchrun (WORLD_SIZE > 1) every process joins one group: gloo on CPU, nccl on GPU. With one
process every helper is a plain pass-through. Torch is imported inside the functions, so the
evaluate step's light paths stay light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
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


def env_process() -> Process:
    """The place torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) describes, not joined."""
    env = os.environ
    return Process(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), local_rank())


def join(device) -> Process:
    """Join the torchrun process group when WORLD_SIZE > 1 (or reuse an initialised one)."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Process(dist.get_rank(), dist.get_world_size(), local_rank())
    if env_process().world_size <= 1:
        return Process()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), local_rank())


def leave(proc: Process) -> None:
    """Leave the process group (after the last collective); nothing with one process."""
    import torch.distributed as dist

    if proc.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj: Any, proc: Process) -> Any:
    """Rank 0's ``obj`` on every process (picklable objects)."""
    if proc.world_size == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: Any, proc: Process) -> list:
    """Every process's ``obj``, in rank order, on every process."""
    if proc.world_size == 1:
        return [obj]
    import torch.distributed as dist

    objects: list = [None] * proc.world_size
    dist.all_gather_object(objects, obj)
    return objects


def barrier(proc: Process) -> None:
    """Wait for every process (no-op with one)."""
    if proc.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
