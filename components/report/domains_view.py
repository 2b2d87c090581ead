"""Which domains the report's tables and bar chart show, so that hundreds of domains stay
readable (SPEC §7).

The ``top`` sparsest and ``top`` densest domains with at least ``min_users`` test users are shown
one by one; every other domain with test users is pooled into one cohort per side (a pool of
one domain is shown as that domain), "other sparse
domains" and "other dense domains": the union of their test users (a user whose target is in
several of them counts once), scored like any cohort with its own paired bootstrap CI. The sparse
side is ``Domains.sparse_domains()``; the dense side every other domain (unlabelled ones
included), as the summary sentences count them. comparison.parquet keeps every domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from components.core.cohorts import Domains

GROUP = "group"  # the cohort kind of a pooled row (comparison.parquet ``cohort``)
OTHER_SPARSE = "other sparse domains"
OTHER_DENSE = "other dense domains"


@dataclass
class DomainView:
    """The domains shown one by one (sparsest → densest on each side) and the pooled rest."""

    sparse: list[str]
    dense: list[str]
    other_sparse: list[str]
    other_dense: list[str]

    @property
    def shown(self) -> list[str]:
        return [*self.sparse, *self.dense]

    def display(self) -> list[tuple[str, str]]:
        """(cohort, domain) of the rows in display order, sparsest → densest: the shown sparse
        domains, the pooled sparse ones, the pooled dense ones, the shown dense domains."""
        return [
            *(("domain", d) for d in self.sparse),
            *([(GROUP, OTHER_SPARSE)] if self.other_sparse else []),
            *([(GROUP, OTHER_DENSE)] if self.other_dense else []),
            *(("domain", d) for d in self.dense),
        ]


def domain_view(
    domains: Domains, counts: Mapping[str, int], top: int, min_users: int
) -> DomainView:
    """Split the domains with test users (``counts``: domain → test users) into shown and pooled."""
    sparse_set = set(domains.sparse_domains())
    present = [d for d in domains.domains if counts.get(d, 0) > 0]
    sparse = [d for d in present if d in sparse_set]
    dense = [d for d in present if d not in sparse_set]
    shown_sparse = [d for d in sparse if counts[d] >= min_users][:top] if top > 0 else []
    big_dense = [d for d in dense if counts[d] >= min_users]
    shown_dense = big_dense[max(len(big_dense) - top, 0) :] if top > 0 else []
    sides = []
    for side, shown in ((sparse, shown_sparse), (dense, shown_dense)):
        rest = [d for d in side if d not in shown]
        if len(rest) == 1:  # a pool of one domain is that domain: show it under its own name
            shown, rest = side, []
        sides.append(([d for d in side if d in shown], rest))
    (shown_sparse, other_sparse), (shown_dense, other_dense) = sides
    return DomainView(shown_sparse, shown_dense, other_sparse, other_dense)


def group_cohorts(
    masks: Mapping[str, np.ndarray], view: DomainView
) -> list[tuple[dict, np.ndarray]]:
    """The pooled cohorts as (key, mask) pairs like ``cohort_masks``' (key ``sparse`` set)."""
    out = []
    for label, members, sparse in (
        (OTHER_SPARSE, view.other_sparse, True),
        (OTHER_DENSE, view.other_dense, False),
    ):
        if members:
            mask = np.logical_or.reduce([masks[d] for d in members])
            key = {"cohort": GROUP, "domain": label, "theta": None, "sparse": sparse}
            out.append((key, mask))
    return out


def all_zero(rows: list[dict]) -> bool:
    """True when every variant scored exactly 0 on a cohort (a row that says nothing)."""
    return all(r["value"] == 0 and r["baseline_value"] == 0 for r in rows)
