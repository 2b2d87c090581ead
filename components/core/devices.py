"""Which torch device a step runs on: ``--device auto|cpu|cuda`` (``cuda:N`` where a step allows
it), resolved once, failing before any work when a requested GPU is not there."""

from __future__ import annotations

from components.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0):
    """``auto|cpu|cuda|cuda:N`` → this process's ``torch.device``; ``cuda`` is the GPU of
    ``local_rank`` (torchrun's LOCAL_RANK). A CUDA device where none is available, or another
    name, is a ConfigError."""
    import torch

    if not isinstance(name, str) or (name not in DEVICES and not name.startswith("cuda:")):
        raise ConfigError(f"--device: {name!r} is not one of {list(DEVICES)}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name}: no CUDA device is available (torch.cuda.is_available() "
            "is False); use --device cpu or auto"
        )
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    try:
        return torch.device(name)
    except RuntimeError as exc:  # e.g. cuda:x
        raise ConfigError(f"--device: {name!r} is not a device ({exc})") from None
