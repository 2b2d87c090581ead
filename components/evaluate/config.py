"""The evaluate step's options, defaults written once: ``EvalConfig`` is the source of
``evaluate(**options)``, the CLI's defaults and the pipeline's pre-run check of ``eval_options``
(``eval_option_names``). Light: no torch, no data libraries."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from components.core.devices import DEVICES
from components.errors import ConfigError
from components.options import Checked, config_from, option_names


@dataclass
class EvalConfig(Checked):
    ks: tuple[int, ...] = (10, 20)
    # mask the items the user interacted with before the target; None = the run's protocol,
    # as the model was trained (config.json train.exclude_seen); another value is refused
    exclude_seen: bool | None = None
    bootstrap: int = 1000  # resamples for the 95% CIs (0 = no CIs)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 256  # users per forward pass of the model
    confidence: float = 0.95

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed (before anything is read)."""

        def whole(value) -> bool:  # an integer, or a float holding one (JSON params)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return False
            return isinstance(value, numbers.Integral) or float(value).is_integer()

        ks = list(self.ks) if isinstance(self.ks, list | tuple) else [self.ks]
        if not ks or not all(whole(k) and k >= 1 for k in ks):
            raise ConfigError(f"--k: cut-offs must be positive integers, got {ks}")
        self.ks = tuple(sorted({int(k) for k in ks}))
        for option, value, low in (
            ("--bootstrap", self.bootstrap, 0),
            ("--seed", self.seed, 0),
            ("--batch-size", self.batch_size, 1),
        ):
            if not whole(value) or value < low:
                raise ConfigError(f"{option}: must be an integer >= {low}, got {value!r}")
        if self.exclude_seen is not None and not isinstance(self.exclude_seen, bool):
            raise ConfigError(f"--exclude-seen: expected true or false, got {self.exclude_seen!r}")
        if (
            isinstance(self.confidence, bool)
            or not isinstance(self.confidence, numbers.Real)
            or not 0 < self.confidence < 1
        ):
            raise ConfigError(f"confidence: must be a number in (0, 1), got {self.confidence!r}")
        if not isinstance(self.device, str) or (
            self.device not in DEVICES and not self.device.startswith("cuda:")
        ):
            raise ConfigError(f"--device: expected auto, cpu or cuda, got {self.device!r}")


def eval_option_names() -> tuple[str, ...]:
    """The keyword options of ``evaluate`` (every EvalConfig field)."""
    return option_names(EvalConfig)


def eval_config(**options: Any) -> EvalConfig:
    """``evaluate``'s options → a checked EvalConfig; an unknown name is a ConfigError."""
    return config_from(EvalConfig, "evaluate", options)
