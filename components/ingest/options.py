"""The source-independent processing options (``IngestOptions``: the CLI flags of the same names)
and the adjustments ``core.process`` makes to them."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass

from components.errors import ConfigError
from components.options import Checked

log = logging.getLogger("dwlrec.ingest")

SPLIT_METHODS = ("leave-one-out", "global-time")
ENGINES = ("arrow", "duckdb", "spark")  # the processing engines (components/ingest/engines/)
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
MIN_USER_LEAVE_ONE_OUT = 3  # train, valid and test each need an interaction


@dataclass
class IngestOptions(Checked):
    """Source-independent processing options (CLI flags of the same names)."""

    min_user_interactions: int = 5  # k-core, users
    min_item_interactions: int = 5  # k-core, items
    rating_threshold: float | None = None  # keep rating >= threshold (implicit feedback)
    split: str = "leave-one-out"  # or "global-time"
    valid_fraction: float = 0.1  # global-time split only: latest fractions of time
    test_fraction: float = 0.1
    max_bad_fraction: float = 0.01  # fail when more malformed rows than this are skipped
    top_domains: int | None = None  # keep the N largest domains (train interactions); rest other
    min_domain_items: int | None = None  # fold domains with fewer items than this into other
    # shards of the streaming training view (components/core/training_view.py); 0: none. A
    # multiple of world size × data-loader workers of the runs that stream it: 8 fits 1/2/4/8.
    train_shards: int = 8
    # the processing engine: arrow (in memory) or duckdb (out of core: spills past the limit)
    engine: str = "arrow"
    # DuckDB's own buffers; out of core (components/ingest/native/) the output is streamed,
    # an input read by the in-memory reader instead is extra
    duckdb_memory_limit: str = "4GB"
    duckdb_threads: int = 0  # 0: one per core

    def validate(self) -> None:
        if self.split not in SPLIT_METHODS:
            raise ConfigError(f"--split {self.split!r}: expected one of {list(SPLIT_METHODS)}")
        if self.min_user_interactions < 1 or self.min_item_interactions < 1:
            raise ConfigError("--min-user-interactions/--min-item-interactions must be >= 1")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"--max-bad-fraction {self.max_bad_fraction}: expected 0..1")
        if self.rating_threshold is not None and not math.isfinite(self.rating_threshold):
            raise ConfigError(f"--rating-threshold {self.rating_threshold}: expected a number")
        for flag, value in (
            ("--top-domains", self.top_domains),
            ("--min-domain-items", self.min_domain_items),
        ):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ConfigError(f"{flag} {value}: expected an integer >= 1")
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine {self.engine!r}: expected one of {list(ENGINES)}")
        if not isinstance(self.duckdb_memory_limit, str) or not _MEMORY.fullmatch(
            self.duckdb_memory_limit.strip()
        ):
            raise ConfigError(
                f"--duckdb-memory-limit {self.duckdb_memory_limit!r}: expected a size such as "
                "'4GB' or '512MiB'"
            )
        threads = self.duckdb_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ConfigError(f"--duckdb-threads {threads!r}: expected an integer >= 0 (0: all)")
        shards = self.train_shards
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 0:
            raise ConfigError(f"--train-shards {shards!r}: expected an integer >= 0 (0: no view)")
        if not (
            0 < self.valid_fraction < 1
            and 0 < self.test_fraction < 1
            and self.valid_fraction + self.test_fraction < 1
        ):
            raise ConfigError("--valid-fraction and --test-fraction must be in (0, 1), sum < 1")


def options_dict(options: IngestOptions) -> dict:
    return asdict(options)


def effective_min_user(options: IngestOptions) -> tuple[int, dict | None]:
    """The users' k-core threshold in effect, and the manifest's ``adjusted_options`` entry when
    it differs from the requested one (leave-one-out needs >= 3: train, valid, test)."""
    min_user = options.min_user_interactions
    if options.split != "leave-one-out" or min_user >= MIN_USER_LEAVE_ONE_OUT:
        return min_user, None
    why = "leave-one-out needs >= 3 interactions per user: train, valid, test"
    log.warning(
        "--min-user-interactions %d raised to %d: %s",
        options.min_user_interactions,
        MIN_USER_LEAVE_ONE_OUT,
        why,
    )
    return MIN_USER_LEAVE_ONE_OUT, {
        "min_user_interactions": {
            "requested": options.min_user_interactions,
            "effective": MIN_USER_LEAVE_ONE_OUT,
            "why": why,
        }
    }
