"""The report step's options, defaults written once: ``ReportConfig`` is the source of
``report(evals, output_dir, **options)``, the CLI's defaults and the pipeline's pre-run check of
``report_options`` (``report_option_names``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.errors import ConfigError
from components.options import Checked, config_from, option_names
from components.report.compare import MIN_USERS


@dataclass
class ReportConfig(Checked):
    baseline: str = "none"  # the variant the others are compared to
    bootstrap: int = 1000  # paired bootstrap resamples
    seed: int = 0  # bootstrap seed
    k: int = 10  # cut-off K of Recall@K / NDCG@K
    min_users: int = MIN_USERS  # never flag a smaller cohort as significant
    top_domains: int = 10  # tables and bars: the N sparsest and N densest domains, rest pooled

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed (before anything is read)."""
        if self.bootstrap < 0:
            raise ConfigError(f"--bootstrap: must be >= 0, got {self.bootstrap}")
        if self.k < 1:
            raise ConfigError(f"--k: must be >= 1, got {self.k}")
        if self.min_users < 1:
            raise ConfigError(f"--min-users: must be >= 1, got {self.min_users}")
        if self.top_domains < 1:
            raise ConfigError(f"--top-domains: must be >= 1, got {self.top_domains}")


def report_option_names() -> tuple[str, ...]:
    """The keyword options of ``report`` (every ReportConfig field)."""
    return option_names(ReportConfig)


def report_config(**options: Any) -> ReportConfig:
    """``report``'s options → a checked ReportConfig; an unknown name is a ConfigError."""
    return config_from(ReportConfig, "report", options)
