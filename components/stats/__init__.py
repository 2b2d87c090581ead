"""The stats step (SPEC §4, §5): domain sparsity statistics and the per-domain loss weights.

``compute_stats`` writes domain_stats.parquet, power_users.parquet, weights.json and a report;
``components.stats.weighting`` is the weighting library the train step uses. No torch import.
"""

from components.stats.domain_stats import compute_stats

__all__ = ["compute_stats"]
