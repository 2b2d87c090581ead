"""The embedded default dataset: seeded, scalable, with planted domain structure (SPEC §3).

Planted structure, so a model can learn and the Dynamic Weighted Loss has something to find:
- a few *dense* domains holding most items and most interactions, several *sparse* ones;
- ``power_user_fraction`` of users are power users of one sparse domain (most of their
  interactions fall in it); everyone else visits sparse domains rarely;
- sequential signal: with probability ``p_next`` a user's next item is the successor of their
  previous item in that item's domain chain, otherwise a fresh draw (domain from the user's
  preference, item from the domain's Zipf popularity).
Vectorised over users, one loop over positions: ML-20M scale (20M interactions) in seconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError
from components.ingest.raw import RawData
from components.options import Checked

MAX_INTERACTIONS = 200_000_000  # ~10× ML-20M; the generator holds ~100 bytes per interaction
MAX_ITEMS = 10_000_000
MAX_DOMAINS = 10_000
MAX_MEAN_LENGTH = 10_000  # one vectorised step per position, up to 6× the mean


_CLI_FLAGS = {"num_users", "num_items", "num_domains", "dense_domains", "mean_length",
              "power_user_fraction", "seed"}  # fmt: skip


def _flag(name: str) -> str:
    """How messages name an option: its CLI flag, or the option name for Python-only ones."""
    return "--" + name.replace("_", "-") if name in _CLI_FLAGS else name


@dataclass
class SyntheticConfig(Checked):
    num_users: int = 2000
    num_items: int = 800
    num_domains: int = 8
    dense_domains: int = 3  # the rest are sparse
    mean_length: float = 30.0  # mean interactions per user (before k-core)
    power_user_fraction: float = 0.1  # users concentrated in one sparse domain
    power_user_focus: float = 0.7  # share of a power user's fresh draws in their domain
    sparse_share: float = 0.06  # share of an ordinary user's fresh draws in sparse domains
    p_next: float = 0.5  # probability that the next item follows the previous one's chain
    multi_label_fraction: float = 0.1  # items with a second domain
    zipf: float = 1.0  # item popularity exponent within a domain
    seed: int = 0

    def validate(self) -> None:
        for name in ("num_users", "num_items", "num_domains", "dense_domains", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"synthetic: {_flag(name)} {value!r}: expected an integer")
        for name in (
            "mean_length",
            "power_user_fraction",
            "power_user_focus",
            "sparse_share",
            "p_next",
            "multi_label_fraction",
            "zipf",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ConfigError(f"synthetic: {_flag(name)} {value!r}: expected a number")
            if not math.isfinite(value):
                raise ConfigError(f"synthetic: {_flag(name)} {value}: expected a finite number")
        if self.num_users < 1 or self.num_items < self.num_domains or self.num_domains < 2:
            raise ConfigError("synthetic: need users >= 1, domains >= 2 and items >= domains")
        if not 1 <= self.dense_domains < self.num_domains:
            raise ConfigError("synthetic: --dense-domains must be in [1, domains)")
        if not 3 <= self.mean_length <= MAX_MEAN_LENGTH:
            raise ConfigError(
                f"synthetic: --mean-length {self.mean_length}: expected 3..{MAX_MEAN_LENGTH:,}"
            )
        for name in (
            "power_user_fraction",
            "power_user_focus",
            "sparse_share",
            "p_next",
            "multi_label_fraction",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"synthetic: {_flag(name)} {getattr(self, name)}: expected 0..1")
        if self.zipf < 0:
            raise ConfigError(f"synthetic: zipf {self.zipf}: expected >= 0")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"synthetic: --seed {self.seed}: expected an integer >= 0")
        if self.num_items > MAX_ITEMS or self.num_domains > MAX_DOMAINS:
            raise ConfigError(
                f"synthetic: --num-items {self.num_items:,} / --num-domains {self.num_domains:,}: "
                f"the generator's limits are {MAX_ITEMS:,} items and {MAX_DOMAINS:,} domains"
            )
        expected = self.num_users * self.mean_length
        if expected > MAX_INTERACTIONS:
            raise ConfigError(
                f"synthetic: --num-users {self.num_users:,} × --mean-length {self.mean_length:g} "
                f"≈ {expected:,.0f} interactions, beyond the generator's limit of "
                f"{MAX_INTERACTIONS:,} (about {MAX_INTERACTIONS * 100 // 2**30} GiB of memory): "
                f"lower --num-users or --mean-length"
            )

    def domain_names(self) -> list[str]:
        n_sparse = self.num_domains - self.dense_domains
        return [f"dense-{i + 1}" for i in range(self.dense_domains)] + [
            f"sparse-{i + 1}" for i in range(n_sparse)
        ]


def generate(config: SyntheticConfig) -> RawData:
    config.validate()
    rng = np.random.default_rng(config.seed)
    names = config.domain_names()
    n_dense, n_domains = config.dense_domains, config.num_domains
    n_sparse = n_domains - n_dense

    # Items per domain: dense domains hold ~70% of the catalogue.
    dense_items = np.full(n_dense, 0.7 / n_dense)
    sparse_items = np.full(n_sparse, 0.3 / n_sparse)
    sizes = np.maximum(1, np.round(np.r_[dense_items, sparse_items] * config.num_items)).astype(int)
    sizes[0] += config.num_items - sizes.sum()
    item_domain = np.repeat(np.arange(n_domains), sizes)  # items 0..n-1, grouped by domain
    starts = np.r_[0, np.cumsum(sizes)[:-1]]

    # Successor chain inside each domain: a random cycle through the domain's items.
    successor = np.empty(config.num_items, dtype=np.int64)
    for d in range(n_domains):
        members = starts[d] + rng.permutation(sizes[d])
        successor[members] = np.roll(members, -1)

    # Zipf popularity within each domain, as one concatenated CDF offset by domain index.
    rank_in_domain = np.arange(config.num_items) - starts[item_domain]
    popularity = 1.0 / (1.0 + rank_in_domain) ** config.zipf
    domain_cdf = np.empty(config.num_items)
    for d in range(n_domains):
        part = popularity[starts[d] : starts[d] + sizes[d]]
        domain_cdf[starts[d] : starts[d] + sizes[d]] = np.cumsum(part) / part.sum() + d

    # Users: fresh-draw domain distribution; power users favour one sparse domain.
    base = np.r_[
        np.full(n_dense, (1 - config.sparse_share) / n_dense),
        np.full(n_sparse, config.sparse_share / n_sparse),
    ]
    base_cdf = np.cumsum(base)
    is_power = rng.random(config.num_users) < config.power_user_fraction
    power_domain = n_dense + rng.integers(0, n_sparse, config.num_users)

    lengths = np.maximum(3, rng.geometric(1.0 / config.mean_length, config.num_users))
    lengths = np.minimum(lengths, int(config.mean_length * 6))
    offsets = np.r_[0, np.cumsum(lengths)]  # user u's items live at [offsets[u], offsets[u+1])
    item_col = np.empty(offsets[-1], dtype=np.int64)

    def fresh_items(users: np.ndarray) -> np.ndarray:
        domain = np.searchsorted(base_cdf, rng.random(len(users)) * base_cdf[-1])
        focused = is_power[users] & (rng.random(len(users)) < config.power_user_focus)
        domain = np.where(focused, power_domain[users], domain)
        return np.minimum(
            np.searchsorted(domain_cdf, domain + rng.random(len(users))),
            starts[domain] + sizes[domain] - 1,
        )

    active = np.arange(config.num_users)
    item_col[offsets[active]] = fresh_items(active)
    for position in range(1, int(lengths.max())):  # one vectorised step per position
        active = active[lengths[active] > position]
        slots = offsets[active] + position
        follow = rng.random(len(active)) < config.p_next
        nxt = fresh_items(active)
        nxt[follow] = successor[item_col[slots - 1][follow]]
        item_col[slots] = nxt

    user_col = np.repeat(np.arange(config.num_users), lengths)
    position_col = np.arange(len(item_col)) - offsets[user_col]
    start_time = 1_600_000_000 + rng.integers(0, 30 * 86400, config.num_users)
    timestamp = start_time[user_col] + position_col * 86400 + rng.integers(0, 3600, len(user_col))

    interactions = pa.table(
        {
            "user_id": pc.cast(pa.array(user_col + 1), pa.string()),
            "item_id": pc.cast(pa.array(item_col + 1), pa.string()),
            "timestamp": pa.array(timestamp, pa.int64()),
            "rating": pa.nulls(len(user_col), pa.float64()),
        }
    )

    second = rng.random(config.num_items) < config.multi_label_fraction
    other = (item_domain + rng.integers(1, n_domains, config.num_items)) % n_domains
    domain_lists = [
        [names[d], names[o]] if two else [names[d]]
        for d, o, two in zip(item_domain.tolist(), other.tolist(), second.tolist(), strict=True)
    ]
    items = pa.table(
        {
            "item_id": pc.cast(pa.array(np.arange(1, config.num_items + 1)), pa.string()),
            "domains": pa.array(domain_lists, pa.list_(pa.string())),
        }
    )
    return RawData(
        interactions=interactions,
        items=items,
        rows_read=interactions.num_rows,
        source_files=["synthetic"],
    )


def describe(config: SyntheticConfig) -> dict:
    """What the manifest records about the planted structure."""
    names = config.domain_names()
    return {
        **asdict(config),
        "dense": names[: config.dense_domains],
        "sparse": names[config.dense_domains :],
    }
