"""The stats step (SPEC §4, §5): domain sparsity statistics and the per-domain loss weights.

``compute_stats`` writes domain_stats.parquet, power_users.parquet, weights.json and a report.
The weighting itself (targets, weights.json, the train step's weighter) is
``components.core.weighting``. No torch import.
"""

from components.stats.config import StatsConfig, stats_option_names
from components.stats.domain_stats import compute_stats

__all__ = ["StatsConfig", "compute_stats", "stats_option_names"]
