"""The evaluate step's options, defaults written once: ``EvalConfig`` is the source of
``evaluate(**options)``, the CLI's defaults and the pipeline's pre-run check of ``eval_options``
(``eval_option_names``). Light: no torch, no data libraries."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from components.core.devices import DEVICES
from components.errors import ConfigError
from components.options import Checked, config_from, option_names

LOGIT_ADJUST_MODES = ("off", "inverse")  # off: plain scores; inverse: + τ·log ω_inverse(item)


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
    # post-hoc domain logit adjustment (SPEC §5 "Beyond DWL"): off | inverse (s_i + τ·log ω_inv(i),
    # τ chosen on the validation split from linspace(0, tau_max, tau_steps))
    logit_adjust: str = "off"
    tau_max: float = 2.0
    tau_steps: int = 21
    # allowed relative drop of overall val NDCG@10 vs τ = 0 (0: never below τ = 0's)
    la_max_overall_drop: float = 0.0

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed (before anything is read)."""

        def finite(value) -> bool:
            return (
                not isinstance(value, bool)
                and isinstance(value, numbers.Real)
                and math.isfinite(value)
            )

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
            ("--tau-steps", self.tau_steps, 1),
        ):
            if not whole(value) or value < low:
                raise ConfigError(f"{option}: must be an integer >= {low}, got {value!r}")
        self.tau_steps = int(self.tau_steps)
        if self.logit_adjust not in LOGIT_ADJUST_MODES:
            raise ConfigError(
                f"--logit-adjust: expected one of {list(LOGIT_ADJUST_MODES)}, "
                f"got {self.logit_adjust!r}"
            )
        if not finite(self.tau_max) or self.tau_max < 0:
            raise ConfigError(f"--tau-max: must be a finite number >= 0, got {self.tau_max!r}")
        self.tau_max = float(self.tau_max)
        drop = self.la_max_overall_drop
        if not finite(drop) or not 0 <= drop < 1:
            raise ConfigError(f"--la-max-overall-drop: must be a number in [0, 1), got {drop!r}")
        self.la_max_overall_drop = float(drop)
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
