"""Domain sparsity statistics on the train split (SPEC §4) and the stats step's outputs.

Everything is computed with pyarrow joins/group-bys and numpy bincounts over (interaction, domain)
rows: an interaction counts once in each distinct domain of its item (multi-label items).
"""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.download import localize
from components.errors import ConfigError, InputError
from components.io import atomic_dir, check_output, write_json_atomic, write_parquet_atomic
from components.schema import NO_DOMAIN, dataset_fingerprint, load_dataset
from components.stats import weighting as W

log = logging.getLogger(__name__)

DOMAIN_STATS_FILE = "domain_stats.parquet"
POWER_USERS_FILE = "power_users.parquet"

POWER_USERS_SCHEMA = pa.schema(
    [
        pa.field("user_idx", pa.int32(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("share", pa.float64(), nullable=False),
    ]
)


@dataclass
class StatsConfig:
    """Parameters of the stats step; the scheme parameters are recorded in weights.json."""

    power_thresholds: tuple[float, ...] = (0.5, 0.2)
    fixed_domains: list[str] | None = None  # None → default_fixed_domains (the clearly sparse)
    fixed_weight: float = 2.0
    gamma: float = 0.5
    w_min: float = 0.5
    w_max: float = 5.0
    beta: float = 0.9
    target: str = "inverse"
    lambdas: tuple[float, float, float] = (0.6, 0.3, 0.1)
    alpha: float = 0.5
    agg: str = "mean"
    # names meaning "no domain known": weight 1 under every scheme, out of every target and of
    # the default fixed set, unless boost_unlabelled (then they are ordinary domains)
    unlabelled_domains: tuple[str, ...] = W.UNLABELLED_DOMAINS
    boost_unlabelled: bool = False

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed; run before any data is read."""
        thresholds = _numbers("--power-threshold", self.power_thresholds)
        if not thresholds:
            raise ConfigError("--power-threshold: give at least one threshold")
        bad = [t for t in thresholds if not 0 < t <= 1]
        if bad:
            raise ConfigError(f"--power-threshold: values must be in (0, 1], got {bad}")
        for option, value in (
            ("--fixed-weight", self.fixed_weight),
            ("--gamma", self.gamma),
            ("--w-min", self.w_min),
            ("--w-max", self.w_max),
            ("--beta", self.beta),
            ("--alpha", self.alpha),
        ):
            _finite(option, value)
        if not self.w_min > 0:
            raise ConfigError(f"--w-min: must be > 0, got {self.w_min}")
        if not self.w_min <= self.w_max:
            raise ConfigError(
                f"--w-min/--w-max: need --w-min <= --w-max, got {self.w_min} > {self.w_max}"
            )
        if self.gamma < 0:
            raise ConfigError(f"--gamma: must be >= 0, got {self.gamma}")
        if not self.fixed_weight > 0:
            raise ConfigError(f"--fixed-weight: must be > 0, got {self.fixed_weight}")
        if not 0 <= self.beta < 1:
            raise ConfigError(f"--beta: must be in [0, 1), got {self.beta}")
        if self.target not in W.TARGETS:
            raise ConfigError(f"--target: {self.target!r} is not one of {list(W.TARGETS)}")
        if self.agg not in W.AGGS:
            raise ConfigError(f"--agg: {self.agg!r} is not one of {list(W.AGGS)}")
        lambdas = _numbers("--lambdas", self.lambdas)
        if len(lambdas) != 3 or min(lambdas) < 0 or sum(lambdas) <= 0:
            raise ConfigError(
                f"--lambdas: need 3 finite values >= 0 with a positive sum; got {list(lambdas)}"
            )
        if self.alpha < 0:
            raise ConfigError(f"--alpha: must be >= 0, got {self.alpha}")
        if self.fixed_domains is not None and (
            isinstance(self.fixed_domains, str)
            or not all(isinstance(d, str) and d for d in self.fixed_domains)
        ):
            raise ConfigError(f"--fixed-domains: expected domain names, got {self.fixed_domains}")
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

    def unlabelled_in(self, domains: list[str]) -> list[str]:
        """The domains of this dataset held at weight 1 as unlabelled (none if boosting them)."""
        if self.boost_unlabelled:
            return []
        names = set(self.unlabelled_domains)
        return [d for d in domains if d in names]


def _finite(option: str, value) -> float:
    """``value`` as a float; ConfigError naming ``option`` if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{option}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{option}: must be a finite number, got {value}")
    return float(value)


def _numbers(option: str, values) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{option}: expected a list of numbers, got {values!r}")
    return tuple(_finite(option, v) for v in values)


def stats_config(
    power_thresholds=(0.5, 0.2),
    fixed_domains=None,
    fixed_weight: float = 2.0,
    gamma: float = 0.5,
    w_min: float = 0.5,
    w_max: float = 5.0,
    beta: float = 0.9,
    target: str = "inverse",
    lambdas=(0.6, 0.3, 0.1),
    alpha: float = 0.5,
    agg: str = "mean",
    unlabelled_domains=W.UNLABELLED_DOMAINS,
    boost_unlabelled: bool = False,
) -> StatsConfig:
    """compute_stats' options → a validated StatsConfig (the pipeline's pre-run check uses it)."""
    config = StatsConfig(
        power_thresholds=_numbers("--power-threshold", power_thresholds),
        fixed_domains=fixed_domains,
        fixed_weight=fixed_weight,
        gamma=gamma,
        w_min=w_min,
        w_max=w_max,
        beta=beta,
        target=target,
        lambdas=_numbers("--lambdas", lambdas),
        alpha=alpha,
        agg=agg,
        unlabelled_domains=unlabelled_domains,
        boost_unlabelled=boost_unlabelled,
    )
    config.validate()
    config.power_thresholds = tuple(sorted(set(config.power_thresholds), reverse=True))
    config.fixed_domains = list(fixed_domains) if fixed_domains else None
    config.unlabelled_domains = tuple(unlabelled_domains)
    for name in ("fixed_weight", "gamma", "w_min", "w_max", "beta", "alpha"):
        setattr(config, name, float(getattr(config, name)))
    return config


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
    params = {
        "fixed_domains": fixed_domains,
        "fixed_domains_rule": (
            "given"
            if not fixed_default
            else f"default: domains with share < {W.FIXED_DEFAULT_SHARE_FRACTION:g}/|D|, "
            f"else the sparsest"
        ),
        "fixed_weight": config.fixed_weight,
        "gamma": config.gamma,
        "w_min": config.w_min,
        "w_max": config.w_max,
        "beta": config.beta,
        "target": config.target,
        "lambdas": list(config.lambdas),
        "alpha": config.alpha,
        "agg": config.agg,
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


def compute_stats(
    dataset_dir,
    output_dir,
    power_thresholds=(0.5, 0.2),
    fixed_domains=None,
    fixed_weight: float = 2.0,
    gamma: float = 0.5,
    w_min: float = 0.5,
    w_max: float = 5.0,
    beta: float = 0.9,
    target: str = "inverse",
    lambdas=(0.6, 0.3, 0.1),
    alpha: float = 0.5,
    agg: str = "mean",
    unlabelled_domains=W.UNLABELLED_DOMAINS,
    boost_unlabelled: bool = False,
    *,
    overwrite: bool = False,
) -> dict:
    """Run the stats step: read an ingest output, write domain_stats.parquet, power_users.parquet,
    weights.json, report.md/.html (+ the chart PNG) into ``output_dir`` atomically.

    ``unlabelled_domains``: names meaning "no domain known" (default ``(none)``, ``unknown``,
    ``(no genres listed)``): weight 1 under every scheme, left out of the targets' normalisation
    and the default fixed set, reported as their own cohort; ``boost_unlabelled=True`` treats
    them as ordinary domains. What was decided is recorded in weights.json for the train step.
    Every option is checked before the dataset is read, and ``output_dir`` too: it may replace
    only a previous stats output unless ``overwrite``, never the dataset (components.io)."""
    from components.stats.report import write_reports

    config = stats_config(
        power_thresholds=power_thresholds,
        fixed_domains=fixed_domains,
        fixed_weight=fixed_weight,
        gamma=gamma,
        w_min=w_min,
        w_max=w_max,
        beta=beta,
        target=target,
        lambdas=lambdas,
        alpha=alpha,
        agg=agg,
        unlabelled_domains=unlabelled_domains,
        boost_unlabelled=boost_unlabelled,
    )
    output = {"step": "stats", "inputs": (dataset_dir,), "overwrite": overwrite}
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
        write_json_atomic(staging / W.WEIGHTS_FILE, document)
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
