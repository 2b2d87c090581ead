"""The cohorts a test population is cut into (SPEC §7): overall, each target domain, and each
domain's power users at each threshold θ. Evaluate writes them per user (``per_user_table``);
evaluate and report both cut by them (``cohort_masks``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class Domains:
    """What the cohorts and the sparse/dense split need to know of the domains."""

    domains: list[str]  # sparsest → densest
    shares: dict[str, float]  # p_d: share of train interactions
    power_thresholds: list[float]
    # items without a known domain, e.g. "(none)" (weights.json params.unlabelled_domains):
    # reported as their own cohort, never counted as a sparse domain
    unlabelled: list[str] = field(default_factory=list)

    def sparse_domains(self) -> list[str]:
        """Domains with less than a uniform share 1/|D| of train interactions (up-weighted);
        unlabelled ones are neither counted in |D| nor sparse."""
        labelled = [d for d in self.domains if d not in self.unlabelled]
        uniform = 1.0 / max(len(labelled), 1)
        return [d for d in labelled if self.shares.get(d, 0.0) < uniform]


def theta_name(theta: float) -> str:
    return f"{theta:g}"


def power_column(theta: float) -> str:
    """The per_user column listing the domains a user is a power user of at ``theta``."""
    return f"power_domains_{theta_name(theta)}"


def per_user_table(
    users: np.ndarray,
    targets: np.ndarray,
    ranks: np.ndarray,
    item_domains: list[list[str]],
    domains: Domains,
    power_users: pa.Table,
) -> pa.Table:
    """One row per test user: rank of the target and every cohort the user belongs to.

    ``power_users``: (user_idx, domain, share) rows, the stats step's power_users.parquet."""
    columns = {
        "user_idx": pa.array(users, pa.int32()),
        "target_item_idx": pa.array(targets, pa.int32()),
        "rank": pa.array(ranks, pa.int64()),
        "target_domains": pa.array([item_domains[t] for t in targets], pa.list_(pa.string())),
    }
    order = {d: i for i, d in enumerate(domains.domains)}
    for theta in domains.power_thresholds:
        power = power_users.filter(pc.greater_equal(power_users["share"], theta))
        by_user: dict[int, list[str]] = {}
        for user, domain in zip(
            power["user_idx"].to_pylist(), power["domain"].to_pylist(), strict=True
        ):
            by_user.setdefault(user, []).append(domain)
        columns[power_column(theta)] = pa.array(
            [
                sorted(by_user.get(int(u), []), key=lambda d: order.get(d, len(order)))
                for u in users
            ],
            pa.list_(pa.string()),
        )
    return pa.table(columns)


def cohort_masks(per_user: pa.Table, domains: Domains) -> list[tuple[dict, np.ndarray]]:
    """[(cohort key, bool mask over per_user rows)]: overall, each domain, each domain's power users.

    The key is {"cohort": "overall"|"domain"|"power", "domain": str|None, "theta": float|None}.
    """
    n = per_user.num_rows
    cohorts: list[tuple[dict, np.ndarray]] = [
        ({"cohort": "overall", "domain": None, "theta": None}, np.ones(n, dtype=bool))
    ]

    def membership(column: str) -> dict[str, np.ndarray]:
        lists = per_user[column]
        rows = pc.list_parent_indices(lists).to_numpy()
        values = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
        masks = {}
        for domain in domains.domains:
            mask = np.zeros(n, dtype=bool)
            mask[rows[values == domain]] = True
            masks[domain] = mask
        return masks

    for domain, mask in membership("target_domains").items():
        cohorts.append(({"cohort": "domain", "domain": domain, "theta": None}, mask))
    for theta in domains.power_thresholds:
        for domain, mask in membership(power_column(theta)).items():
            cohorts.append(({"cohort": "power", "domain": domain, "theta": theta}, mask))
    return cohorts


def cohort_key_str(key: dict) -> str:
    """``overall``, ``domain:D`` or ``power@θ:D`` (seeds each cohort's bootstrap)."""
    if key["cohort"] == "overall":
        return "overall"
    if key["cohort"] == "domain":
        return f"domain:{key['domain']}"
    return f"power@{theta_name(key['theta'])}:{key['domain']}"
