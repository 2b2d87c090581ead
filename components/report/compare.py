"""The report step's comparison (SPEC §7): variants (one eval dir each, or several runs averaged
per user) checked to be comparable, and each cohort × variant × metric scored against the
baseline with a PAIRED bootstrap: every resample draws one set of users and scores every variant
on it, so the noise the variants share cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from components.core.bootstrap import bootstrap_ci, paired_bootstrap, stable_seed
from components.core.cohorts import Domains, cohort_key_str, cohort_masks
from components.core.eval_artifact import EvalRun, load_eval
from components.core.metrics import metric_values
from components.errors import ConfigError
from components.report.domains_view import GROUP

# Cohorts smaller than this are never flagged significant (our choice; --min-users).
MIN_USERS = 20


@dataclass
class Variant:
    """A named variant: one eval dir, or several (e.g. training seeds) averaged per user."""

    name: str
    runs: list[EvalRun]

    @property
    def scheme(self) -> str:
        return self.runs[0].scheme

    @property
    def per_user(self) -> pa.Table:
        return self.runs[0].per_user

    @property
    def metrics(self) -> dict:
        return self.runs[0].metrics

    def values(self, metric: str) -> np.ndarray:
        """Per-user ``metric`` ("ndcg@10"…), averaged over the variant's runs."""
        return np.mean([metric_values(r.per_user["rank"].to_numpy(), metric) for r in self.runs], 0)


def variant_dirs(dirs: str | list[str]) -> list[str]:
    """One eval dir, a list of them, or a comma-separated string of them → the list."""
    return list(dirs) if isinstance(dirs, list | tuple) else [d for d in str(dirs).split(",") if d]


def load_variant(name: str, dirs: str | list[str]) -> Variant:
    """``dirs``: one eval dir, a list of them, or a comma-separated string of them."""
    paths = variant_dirs(dirs)
    if not paths:
        raise ConfigError(f"--eval {name}: no eval dir given")
    return Variant(name, [load_eval(name, path) for path in paths])


def check_comparable(runs: list[EvalRun]) -> None:
    """Same dataset, same test users and targets, same candidate set (exclude_seen)."""
    first = runs[0]
    for run in runs[1:]:
        if run.metrics.get("dataset") != first.metrics.get("dataset"):
            raise ConfigError(
                f"--eval {run.name} ({run.path}) was evaluated on another dataset "
                f"({run.metrics.get('dataset')}) than --eval {first.name} "
                f"({first.metrics.get('dataset')})"
            )
        if run.metrics.get("exclude_seen") != first.metrics.get("exclude_seen"):
            raise ConfigError(
                f"--eval {run.name} and --eval {first.name} differ in --exclude-seen: "
                "their ranks are not comparable"
            )
        same_users = run.per_user["user_idx"].equals(first.per_user["user_idx"]) and run.per_user[
            "target_item_idx"
        ].equals(first.per_user["target_item_idx"])
        if not same_users:
            raise ConfigError(
                f"--eval {run.name} and --eval {first.name} rank different test users/targets"
            )


def comparison_rows(
    variants: list[Variant],
    baseline: Variant,
    domains: Domains,
    metrics,
    bootstrap: int,
    seed: int,
    min_users: int = MIN_USERS,
    extra_cohorts: Sequence[tuple[dict, np.ndarray]] = (),
) -> list[dict]:
    """One row per cohort × variant × metric with the paired bootstrap lift vs the baseline.

    ``significant``: the difference's CI excludes 0 AND the cohort has >= ``min_users`` users
    (a percentile bootstrap over a handful of users gives degenerate, overconfident CIs); a CI
    that touches 0 is not significant. ``extra_cohorts``: more (key, mask) pairs after
    ``cohort_masks``' (the pooled "other … domains", whose key carries ``sparse``).
    """
    sparse = set(domains.sparse_domains())
    base_values = {m: baseline.values(m) for m in metrics}
    variant_values = {(v.name, m): v.values(m) for v in variants for m in metrics}
    rows = []
    for key, mask in [*cohort_masks(baseline.per_user, domains), *extra_cohorts]:
        # one seed per cohort: every variant and metric sees the same resampled users
        cohort_seed = stable_seed(seed, _seed_key(key))
        for variant in variants:
            for metric in metrics:
                values = variant_values[(variant.name, metric)][mask]
                paired = paired_bootstrap(values, base_values[metric][mask], bootstrap, cohort_seed)
                ci = bootstrap_ci(values, bootstrap, cohort_seed)
                rows.append(
                    {
                        **key,
                        "sparse": key.get("sparse", key["domain"] in sparse)
                        if key["domain"]
                        else None,
                        "n": int(mask.sum()),
                        "variant": variant.name,
                        "scheme": variant.scheme,
                        "runs": len(variant.runs),
                        "metric": metric,
                        "value": paired["variant"],
                        "value_low": float(ci[0]),
                        "value_high": float(ci[1]),
                        "baseline_value": paired["baseline"],
                        "delta": paired["delta"],
                        "delta_low": paired["delta_ci"][0],
                        "delta_high": paired["delta_ci"][1],
                        "lift": paired["lift"],
                        "lift_low": paired["lift_ci"][0],
                        "lift_high": paired["lift_ci"][1],
                        "significant": paired["significant"] and int(mask.sum()) >= min_users,
                    }
                )
    return rows


def _seed_key(key: dict) -> str:
    """The cohort's bootstrap seed name (a pooled cohort's: ``group:<label>``)."""
    return f"group:{key['domain']}" if key["cohort"] == GROUP else cohort_key_str(key)


COMPARISON_SCHEMA = pa.schema(
    [
        ("cohort", pa.string()),
        ("domain", pa.string()),
        ("theta", pa.float64()),
        ("sparse", pa.bool_()),
        ("n", pa.int64()),
        ("variant", pa.string()),
        ("scheme", pa.string()),
        ("runs", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("value_low", pa.float64()),
        ("value_high", pa.float64()),
        ("baseline_value", pa.float64()),
        ("delta", pa.float64()),
        ("delta_low", pa.float64()),
        ("delta_high", pa.float64()),
        ("lift", pa.float64()),
        ("lift_low", pa.float64()),
        ("lift_high", pa.float64()),
        ("significant", pa.bool_()),
    ]
)


def significance_summary(rows: list[dict], variants: list[Variant], metrics) -> dict:
    """Per non-baseline variant and metric: sparse domains with a significant gain, and the
    overall lift (summary.json)."""
    return {
        variant.name: {
            m: {
                "sparse_gains": sum(
                    1
                    for r in rows
                    if r["variant"] == variant.name
                    and r["metric"] == m
                    and r["cohort"] == "domain"
                    and r["sparse"]
                    and r["significant"]
                    and r["delta"] > 0
                ),
                "overall_lift": next(
                    r["lift"]
                    for r in rows
                    if r["variant"] == variant.name
                    and r["metric"] == m
                    and r["cohort"] == "overall"
                ),
            }
            for m in metrics
        }
        for variant in variants
    }
