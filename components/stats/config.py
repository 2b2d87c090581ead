"""The stats step's options: the weighting parameters it records plus its own, defaults once.

``StatsConfig`` is the one place a stats default is written: ``compute_stats(**options)``, the
CLI (``default_of``) and the pipeline's pre-run check (``stats_option_names``) derive from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.core.stats_artifact import DEFAULT_POWER_THRESHOLDS
from components.core.weighting import UNLABELLED_DOMAINS, WeightingParams
from components.core.weighting.spec import finite_list
from components.errors import ConfigError
from components.options import config_from, field_default, option_names


@dataclass
class StatsConfig(WeightingParams):
    """Options of the stats step; the weighting parameters are recorded in weights.json."""

    # a power user of d has >= θ of their train interactions in d; one count per θ
    power_thresholds: tuple[float, ...] = DEFAULT_POWER_THRESHOLDS
    # names meaning "no domain known": weight 1 under every scheme, out of every target and of
    # the default fixed set, unless boost_unlabelled (then they are ordinary domains)
    unlabelled_domains: tuple[str, ...] = UNLABELLED_DOMAINS
    boost_unlabelled: bool = False

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed; run before any data is read."""
        thresholds = finite_list("--power-threshold", self.power_thresholds)
        if not thresholds:
            raise ConfigError("--power-threshold: give at least one threshold")
        bad = [t for t in thresholds if not 0 < t <= 1]
        if bad:
            raise ConfigError(f"--power-threshold: values must be in (0, 1], got {bad}")
        super().validate()
        if isinstance(self.unlabelled_domains, str) or not all(
            isinstance(d, str) and d for d in self.unlabelled_domains
        ):
            raise ConfigError(
                f"--unlabelled-domains: expected domain names, got {self.unlabelled_domains!r}"
            )
        if not isinstance(self.boost_unlabelled, bool):
            raise ConfigError(
                f"--boost-unlabelled: expected true or false, got {self.boost_unlabelled!r}"
            )

    def normalise(self) -> None:
        super().normalise()
        self.power_thresholds = tuple(
            sorted(set(finite_list("--power-threshold", self.power_thresholds)), reverse=True)
        )
        self.fixed_domains = self.fixed_domains or None  # [] = the default rule, as None
        self.unlabelled_domains = tuple(self.unlabelled_domains)

    def unlabelled_in(self, domains: list[str]) -> list[str]:
        """The domains of this dataset held at weight 1 as unlabelled (none if boosting them)."""
        if self.boost_unlabelled:
            return []
        names = set(self.unlabelled_domains)
        return [d for d in domains if d in names]


def stats_option_names() -> tuple[str, ...]:
    """The keyword options of ``compute_stats`` (every StatsConfig field)."""
    return option_names(StatsConfig)


def default_of(name: str) -> Any:
    """The default of StatsConfig field ``name`` (what the CLI shows and uses)."""
    return field_default(StatsConfig, name)


def stats_config(**options: Any) -> StatsConfig:
    """``compute_stats``' options → a validated StatsConfig (the pipeline's pre-run check uses
    it too). An unknown option name is a ConfigError listing the known ones."""
    config = config_from(StatsConfig, "stats", options)  # checked when made
    config.normalise()
    return config


__all__ = ["StatsConfig", "default_of", "stats_config", "stats_option_names"]
