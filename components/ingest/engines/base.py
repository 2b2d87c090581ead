"""The engine contract: what every ingest engine computes and returns (``Reduced``), and the
pieces of the processing whose exact definition all engines share (error messages, the
global-time split's cut positions)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from components.errors import InputError
from components.ingest.options import IngestOptions

LABEL_NAMES = ("train", "valid", "test")  # the split labels' codes 0, 1, 2


@dataclass
class Reduced:
    """An engine's result: the kept interactions as columns sorted by (user_idx, timestamp, file
    order), with dense indices in the ids' natural order, and the kept items' ids."""

    user_idx: np.ndarray  # 0..n_users-1
    item_idx: np.ndarray  # 1..n_items (0 is padding)
    timestamp: np.ndarray  # int64
    labels: np.ndarray  # int8: 0 train, 1 valid, 2 test
    item_ids: pa.Array  # string; position k holds the id of item_idx k + 1
    n_users: int
    # removed_by_rating_threshold, duplicates_removed, removed_by_kcore
    counts: dict[str, int]


class Engine(Protocol):
    def __call__(
        self, table: pa.Table, options: IngestOptions, min_user: int, scratch: Path | None
    ) -> Reduced:
        """Process the raw interactions ``table`` (RAW_INTERACTIONS_SCHEMA, file order, no blank
        ids; string ids, except that the arrow engine may get ``raw.INTEGER_ID`` ones: see
        ``core.process``) with ``options``; ``min_user`` is the users' k-core threshold in effect; ``scratch``
        a path whose parent may hold spill files (the output directory), None: $TMPDIR."""
        ...


def check_rating_left(n_left: int, threshold: float) -> None:
    if n_left == 0:
        raise InputError(f"no interactions left after --rating-threshold {threshold}")


def check_kcore_left(n_left: int, n_before: int, min_user: int, options: IngestOptions) -> None:
    if n_left == 0:
        raise InputError(
            f"no interactions left after the k-core filter (users >= {min_user}, items >= "
            f"{options.min_item_interactions} interactions; {n_before} before it): "
            f"lower --min-user-interactions/--min-item-interactions"
        )


def global_time_cut_positions(n: int, options: IngestOptions) -> tuple[int, int]:
    """Positions in the kept timestamps sorted ascending of the first valid and the first test
    timestamp: exactly ``np.quantile(..., method="higher")``'s choice (ceil((n - 1) * q))."""
    quantiles = np.asarray(
        [1 - options.valid_fraction - options.test_fraction, 1 - options.test_fraction]
    )
    valid_at, test_at = np.ceil((n - 1) * quantiles).astype(np.intp).tolist()
    return int(valid_at), int(test_at)
