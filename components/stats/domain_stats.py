"""Domain sparsity statistics on the train split (SPEC §4) and the stats step's outputs.

Everything is computed with pyarrow joins/group-bys and numpy bincounts over (interaction, domain)
rows: an interaction counts once in each distinct domain of its item (multi-label items).
"""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.core import weighting as W
from components.core.stats_artifact import DOMAIN_STATS_FILE, POWER_USERS_FILE
from components.download import localize
from components.errors import InputError
from components.io import atomic_dir, check_output, write_parquet_atomic
from components.schema import NO_DOMAIN, dataset_fingerprint, load_dataset
from components.stats.config import StatsConfig, stats_config

log = logging.getLogger("dwlrec.stats")


POWER_USERS_SCHEMA = pa.schema(
    [
        pa.field("user_idx", pa.int32(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("share", pa.float64(), nullable=False),
    ]
)


def _item_domain_pairs(items: pa.Table, domain_names: list[str]) -> pa.Table:
    """(item_idx, domain code) once per distinct domain of each item; no domain → '(none)'."""
    domains = items.column("domains")
    empty = pc.equal(pc.list_value_length(domains), 0)
    if pc.any(empty).as_py():
        domains = pc.if_else(empty, pa.scalar([NO_DOMAIN], pa.list_(pa.string())), domains)
    flat = pc.list_flatten(domains)
    parent = pc.list_parent_indices(domains)
    pairs = pa.table(
        {
            "item_idx": pc.take(items.column("item_idx"), parent),
            "domain": pc.cast(pc.index_in(flat, value_set=pa.array(domain_names)), pa.int32()),
        }
    )
    return pairs.group_by(["item_idx", "domain"]).aggregate([])  # distinct pairs


def _catalogue_domains(items: pa.Table) -> list[str]:
    domains = items.column("domains")
    names = set(pc.unique(pc.list_flatten(domains)).to_pylist())
    if pc.any(pc.equal(pc.list_value_length(domains), 0)).as_py():
        names.add(NO_DOMAIN)
    return sorted(names)


def domain_statistics(dataset, power_thresholds=(0.5, 0.2)) -> tuple[dict, pa.Table]:
    """Per-domain statistics of the train split (domains in name order) and the power users.

    Returns ({"domains", "n", "u", "i", "share", "idf", "user_ratio", "entropy",
    "power_users": {θ: counts}, "n_train_interactions", "n_train_users"}, power_users table with
    share ≥ min(θ)). Arrays are aligned with "domains".
    """
    domains = _catalogue_domains(dataset.items)
    n_domains = len(domains)
    interactions = dataset.interactions
    train = interactions.filter(pc.equal(interactions.column("split"), "train"))
    train = train.select(["user_idx", "item_idx"])
    if train.num_rows == 0:
        raise InputError(f"{dataset.path}/interactions.parquet: no train-split interactions")

    pairs = _item_domain_pairs(dataset.items, domains)
    rows = train.join(pairs, keys="item_idx", join_type="inner")  # one row per (interaction, d)
    domain_col = rows.column("domain").to_numpy()
    n = np.bincount(domain_col, minlength=n_domains).astype(np.int64)

    # users per domain and each user's share of train interactions in the domain
    per_user = rows.group_by(["user_idx", "domain"]).aggregate([("item_idx", "count")])
    pu_user = per_user.column("user_idx").to_numpy().astype(np.int64)
    pu_domain = per_user.column("domain").to_numpy()
    pu_count = per_user.column("item_idx_count").to_numpy()
    user_totals = np.bincount(train.column("user_idx").to_numpy())  # train interactions per user
    share = pu_count / user_totals[pu_user]
    u = np.bincount(pu_domain, minlength=n_domains).astype(np.int64)
    n_train_users = int(np.count_nonzero(user_totals))

    # items per domain and the normalised entropy of interactions over the domain's items
    per_item = rows.group_by(["item_idx", "domain"]).aggregate([("user_idx", "count")])
    pi_domain = per_item.column("domain").to_numpy()
    pi_count = per_item.column("user_idx_count").to_numpy().astype(np.float64)
    i = np.bincount(pi_domain, minlength=n_domains).astype(np.int64)
    p_item = pi_count / n[pi_domain]
    h = np.bincount(pi_domain, weights=-p_item * np.log(p_item), minlength=n_domains)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.where(i > 1, h / np.log(np.maximum(i, 2)), 0.0)
    entropy = np.where(n > 0, entropy, np.nan)

    total = int(n.sum())
    power = {
        t: np.bincount(pu_domain[share >= t], minlength=n_domains).astype(np.int64)
        for t in power_thresholds
    }
    keep = share >= min(power_thresholds)
    power_users = pa.table(
        {
            "user_idx": pa.array(pu_user[keep], pa.int32()),
            "domain": pa.array(np.array(domains, dtype=object)[pu_domain[keep]], pa.string()),
            "share": pa.array(share[keep], pa.float64()),
        },
        schema=POWER_USERS_SCHEMA,
    ).sort_by([("domain", "ascending"), ("user_idx", "ascending")])
    stats = {
        "domains": domains,
        "n": n,
        "u": u,
        "i": i,
        "share": n / total,
        "idf": W.idf_from_counts(n),
        "user_ratio": u / n_train_users,
        "entropy": entropy,
        "power_users": power,
        "n_train_interactions": train.num_rows,
        "n_train_users": n_train_users,
    }
    return stats, power_users


def scheme_targets(stats: dict, config: StatsConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """Target weights of every scheme (aligned with stats['domains']) and the fixed domains.

    Unlabelled domains (``config.unlabelled_in``) get 1.0 from every target and are left out of
    the others' normalisation and of the default fixed set; named --fixed-domains are honoured.
    """
    domains, n = stats["domains"], stats["n"]
    unlabelled = config.unlabelled_in(domains)
    if config.fixed_domains:
        fixed_domains = sorted(dict.fromkeys(config.fixed_domains))
    else:
        fixed_domains = W.default_fixed_domains(domains, n, unlabelled)
    active = W.weightable(domains, n, unlabelled)
    targets = {
        "fixed": W.fixed_weights(domains, fixed_domains, config.fixed_weight),
        "inverse": W.inverse_weights(
            stats["share"], config.gamma, config.w_min, config.w_max, active=active
        ),
        "composite": W.composite_weights(
            stats["idf"],
            stats["user_ratio"],
            stats["entropy"],
            config.lambdas,
            config.alpha,
            config.w_min,
            config.w_max,
            active=active,
        ),
    }
    targets["dynamic"] = targets[config.target]
    return targets, fixed_domains


def sparsity_order(stats: dict) -> np.ndarray:
    """Domain positions sorted sparsest → densest (n_d ascending, then name)."""
    return np.array(
        sorted(range(len(stats["domains"])), key=lambda k: (stats["n"][k], stats["domains"][k])),
        dtype=np.int64,
    )


def _stats_table(
    stats: dict, targets: dict, order: np.ndarray, thresholds, unlabelled=()
) -> pa.Table:
    def column(values, dtype):
        values = np.asarray(values)[order]
        if dtype == pa.float64():
            values = values.astype(np.float64)
            return pa.array(values, dtype, mask=~np.isfinite(values))
        return pa.array(values, dtype)

    columns = {
        "domain": pa.array([stats["domains"][k] for k in order], pa.string()),
        "n_d": column(stats["n"], pa.int64()),
        "u_d": column(stats["u"], pa.int64()),
        "i_d": column(stats["i"], pa.int64()),
        "p_d": column(stats["share"], pa.float64()),
        "idf_d": column(stats["idf"], pa.float64()),
        "user_ratio": column(stats["user_ratio"], pa.float64()),
        "entropy": column(stats["entropy"], pa.float64()),
    }
    for t in thresholds:
        columns[f"power_users_{t:g}"] = column(stats["power_users"][t], pa.int64())
    for scheme in ("fixed", "inverse", "composite", "dynamic"):
        name = "weight_dynamic_target" if scheme == "dynamic" else f"weight_{scheme}"
        columns[name] = column(targets[scheme], pa.float64())
    columns["no_train_interactions"] = pa.array(stats["n"][order] == 0, pa.bool_())
    skip = set(unlabelled)
    columns["unlabelled"] = pa.array([stats["domains"][k] in skip for k in order], pa.bool_())
    return pa.table(columns)


def _clean(value):
    """JSON-safe floats (NaN/inf → None)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _weights_document(dataset, stats, targets, order, config, fixed_domains, fixed_default):
    ordered = [stats["domains"][k] for k in order]
    pos = {d: k for k, d in enumerate(stats["domains"])}
    # every weighting parameter as used: what the train step takes unless told otherwise
    used = {f.name: getattr(config, f.name) for f in fields(W.WeightingParams)}
    used.update(fixed_domains=fixed_domains, lambdas=list(config.lambdas))
    params = {
        **used,
        "fixed_domains_rule": (
            "given"
            if not fixed_default
            else f"default: domains with share < {W.FIXED_DEFAULT_SHARE_FRACTION:g}/|D|, "
            f"else the sparsest"
        ),
        # the domains held at weight 1 as "no domain known" (train applies the same)
        "unlabelled_domains": config.unlabelled_in(stats["domains"]),
        "unlabelled_names": list(config.unlabelled_domains),
        "boost_unlabelled": config.boost_unlabelled,
    }
    return {
        "version": W.WEIGHTS_VERSION,
        "dataset": dataset_fingerprint(dataset),
        "domains": ordered,
        "params": params,
        "targets": {
            scheme: {d: float(targets[scheme][pos[d]]) for d in ordered}
            for scheme in ("fixed", "inverse", "composite", "dynamic")
        },
        "domain_counts": {d: int(stats["n"][pos[d]]) for d in ordered},
        "domain_stats": {
            d: {
                "n": int(stats["n"][pos[d]]),
                "users": int(stats["u"][pos[d]]),
                "items": int(stats["i"][pos[d]]),
                "share": _clean(stats["share"][pos[d]]),
                "idf": _clean(stats["idf"][pos[d]]),
                "user_ratio": _clean(stats["user_ratio"][pos[d]]),
                "entropy": _clean(stats["entropy"][pos[d]]),
            }
            for d in ordered
        },
        "power_thresholds": list(config.power_thresholds),
        "n_train_interactions": stats["n_train_interactions"],
        "n_train_users": stats["n_train_users"],
        "zero_train_domains": [d for d in ordered if stats["n"][pos[d]] == 0],
    }


def compute_stats(dataset_dir, output_dir, *, overwrite: bool = False, **options) -> dict:
    """Run the stats step: read an ingest output, write domain_stats.parquet, power_users.parquet,
    weights.json, report.md/.html (+ the chart PNG) into ``output_dir`` atomically.

    ``options``: any StatsConfig field (power_thresholds, fixed_domains, the weighting
    parameters gamma, w_min, w_max, beta, target, lambdas, alpha, agg, fixed_weight, and
    unlabelled_domains, boost_unlabelled); an unknown name is a ConfigError.
    ``unlabelled_domains``: names meaning "no domain known" (default ``(none)``, ``unknown``,
    ``(no genres listed)``): weight 1 under every scheme, left out of the targets' normalisation
    and the default fixed set, reported as their own cohort; ``boost_unlabelled=True`` treats
    them as ordinary domains. What was decided is recorded in weights.json for the train step.
    Every option is checked before the dataset is read, and ``output_dir`` too: it may replace
    only a previous stats output unless ``overwrite``, never the dataset (components.io)."""
    from components.stats.report import write_reports

    config = stats_config(**options)
    output: dict[str, Any] = {"step": "stats", "inputs": (dataset_dir,), "overwrite": overwrite}
    check_output(output_dir, **output)
    dataset = load_dataset(localize(str(dataset_dir)))
    log.info(
        "stats: %s (%d items, %d interactions)",
        dataset.path,
        dataset.n_items,
        dataset.interactions.num_rows,
    )
    stats, power_users = domain_statistics(dataset, config.power_thresholds)
    targets, chosen_fixed = scheme_targets(stats, config)
    order = sparsity_order(stats)
    unlabelled = config.unlabelled_in(stats["domains"])
    table = _stats_table(stats, targets, order, config.power_thresholds, unlabelled)
    document = _weights_document(
        dataset, stats, targets, order, config, chosen_fixed, fixed_default=not config.fixed_domains
    )
    zero = document["zero_train_domains"]
    if zero:
        log.warning("stats: domain(s) %s have no train interactions: weight 1, excluded", zero)
    if unlabelled:
        log.info(
            "stats: unlabelled domain(s) %s kept at weight 1 and out of every target "
            "(--boost-unlabelled to weight them like any domain)",
            unlabelled,
        )

    with atomic_dir(output_dir, **output) as staging:
        write_parquet_atomic(table, staging / DOMAIN_STATS_FILE)
        write_parquet_atomic(power_users, staging / POWER_USERS_FILE)
        W.save_weights(staging, document)
        write_reports(staging, table, document)
    log.info("stats: wrote %s", output_dir)
    return {
        "output": str(Path(output_dir)),
        "n_domains": len(stats["domains"]),
        "n_train_interactions": stats["n_train_interactions"],
        "n_train_users": stats["n_train_users"],
        "sparsest": [d for d in document["domains"] if d not in unlabelled][:3],
        "densest": [d for d in document["domains"] if d not in unlabelled][-3:],
        "fixed_domains": chosen_fixed,
        "zero_train_domains": zero,
        "unlabelled_domains": unlabelled,
        "power_users": int(power_users.num_rows),
        "params": document["params"],
    }
