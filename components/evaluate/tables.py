"""The evaluate step's cohort tables (SPEC §7): each cohort's metrics with bootstrap CIs, the
exposure of each domain in the top-K lists, and per_domain.parquet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from components.core.bootstrap import bootstrap_ci, stable_seed
from components.core.cohorts import Domains, cohort_key_str, cohort_masks
from components.core.metrics import coverage_at_k, metric_names, per_user_metrics

if TYPE_CHECKING:
    from components.evaluate.config import EvalConfig


def cohort_rows(per_user: pa.Table, stats: Domains, config: EvalConfig) -> list[dict]:
    """Each cohort's n, metrics and bootstrap CI (each cohort resampled with its own seed)."""
    values = per_user_metrics(per_user["rank"].to_numpy(), config.ks)
    names = metric_names(config.ks)
    rows = []
    for key, mask in cohort_masks(per_user, stats):
        cohort_values = values[mask]
        row = dict(key, n=int(mask.sum()))
        means = cohort_values.mean(axis=0) if len(cohort_values) else np.full(len(names), np.nan)
        ci = bootstrap_ci(
            cohort_values,
            config.bootstrap,
            seed=stable_seed(config.seed, cohort_key_str(key)),
            confidence=config.confidence,
        )
        for j, name in enumerate(names):
            row[name] = float(means[j])
            row[f"{name}_low"], row[f"{name}_high"] = float(ci[j, 0]), float(ci[j, 1])
        rows.append(row)
    return rows


def domain_slot_shares(
    items: np.ndarray, item_domains: list[list[str]], domains: list[str]
) -> dict[str, float]:
    """Share of the given item slots (any shape) filled by an item of each domain.

    A multi-domain item counts in each of its domains, so shares can sum to more than 1.
    """
    items = np.asarray(items).ravel()
    if len(items) == 0:
        return {d: float("nan") for d in domains}
    counts = np.bincount(items, minlength=len(item_domains))
    totals = dict.fromkeys(domains, 0)
    for item in np.flatnonzero(counts):
        for domain in item_domains[item]:
            totals[domain] = totals.get(domain, 0) + int(counts[item])
    return {d: totals[d] / len(items) for d in domains}


def exposure(
    top_items: np.ndarray, targets: np.ndarray, item_domains, stats: Domains, ks, n_items: int
) -> dict:
    """Coverage@K and the share of top-K slots per domain (vs the share of test targets)."""
    return {
        "coverage": {f"coverage@{k}": coverage_at_k(top_items, n_items, k) for k in ks},
        "top_share": {
            str(k): domain_slot_shares(top_items[:, :k], item_domains, stats.domains) for k in ks
        },
        "target_share": domain_slot_shares(targets, item_domains, stats.domains),
    }


def per_domain_table(rows: list[dict], stats: Domains, exposure_info: dict, ks) -> pa.Table:
    """One row per cohort (overall, domains, power users) in sparsest → densest order."""
    table = pa.Table.from_pylist(rows)
    domain = table["domain"].to_pylist()
    extra = {
        "p_d": [stats.shares.get(d) if d else None for d in domain],
        "target_share": [
            exposure_info["target_share"].get(d) if d and c == "domain" else None
            for d, c in zip(domain, table["cohort"].to_pylist(), strict=True)
        ],
    }
    for k in ks:
        shares = exposure_info["top_share"][str(k)]
        extra[f"top{k}_share"] = [
            shares.get(d) if d and c == "domain" else None
            for d, c in zip(domain, table["cohort"].to_pylist(), strict=True)
        ]
    for name, values in extra.items():
        table = table.append_column(pa.field(name, pa.float64()), pa.array(values, pa.float64()))
    return table.set_column(
        table.schema.get_field_index("theta"),
        "theta",
        pa.array(table["theta"].to_pylist(), pa.float64()),
    )
