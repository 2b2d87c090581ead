"""What the evaluate step reads from a stats step output dir: the domains in sparsity order, their
shares, the power users and the cohort thresholds (SPEC §4), checked against the dataset.

The stats dir's weights.json is owned by ``components.core.weighting.weights_file``; this reads
only the entries the cohorts need (dataset, power_thresholds, params.unlabelled_domains).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.core.cohorts import Domains
from components.core.weighting.weights_file import WEIGHTS_FILE, check_dataset, read_weights_json
from components.errors import ConfigError, InputError
from components.schema import Dataset

DOMAIN_STATS_FILE = "domain_stats.parquet"
POWER_USERS_FILE = "power_users.parquet"
DEFAULT_POWER_THRESHOLDS = (0.5, 0.2)  # when weights.json records none


@dataclass
class DomainStats(Domains):
    """``Domains`` plus the power users: (user_idx, domain, share >= min threshold) rows."""

    power_users: pa.Table = field(kw_only=True)


def load_domain_stats(stats_dir: str | Path, dataset: Dataset) -> DomainStats:
    """Read domain_stats.parquet, power_users.parquet and weights.json; check the dataset."""
    root = Path(stats_dir)
    files = {n: root / n for n in (DOMAIN_STATS_FILE, POWER_USERS_FILE, WEIGHTS_FILE)}
    missing = [n for n, p in files.items() if not p.exists()]
    if missing:
        raise InputError(f"{root}: not a stats step output, missing {missing}")
    weights = read_weights_json(files[WEIGHTS_FILE])
    check_dataset(weights, dataset, files[WEIGHTS_FILE])
    stats = pq.read_table(files[DOMAIN_STATS_FILE])
    for column in ("domain", "p_d"):
        if column not in stats.column_names:
            raise InputError(f"{files[DOMAIN_STATS_FILE]}: missing column {column!r}")
    domains = stats.column("domain").to_pylist()
    shares = dict(zip(domains, stats.column("p_d").to_pylist(), strict=True))
    unknown = sorted(set(dataset.domain_names()) - set(domains))
    if unknown:
        raise ConfigError(f"{files[DOMAIN_STATS_FILE]}: domains {unknown} of the dataset missing")
    power = pq.read_table(files[POWER_USERS_FILE])
    needed = {"user_idx", "domain", "share"}
    if not needed <= set(power.column_names):
        raise InputError(f"{files[POWER_USERS_FILE]}: expected columns {sorted(needed)}")
    thresholds = [float(t) for t in weights.get("power_thresholds", DEFAULT_POWER_THRESHOLDS)]
    recorded = weights.get("params")
    params: dict = recorded if isinstance(recorded, dict) else {}
    unlabelled = [d for d in params.get("unlabelled_domains") or [] if d in shares]
    return DomainStats(
        domains,
        shares,
        thresholds,
        unlabelled,
        power_users=power.select(["user_idx", "domain", "share"]),
    )
