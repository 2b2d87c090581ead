"""The evaluate step's post-hoc logit adjustment (``--logit-adjust inverse``; the math is
``components.core.logit_adjust``): τ chosen on the validation split, the test split ranked with it.

Validation users are ranked as train's validation ranks them (prefix = the items before the
valid item, the run's ``exclude_seen`` protocol); the test ranking at the chosen τ then feeds
every test metric of the eval dir, so the report compares it like any other variant.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from components.core.logit_adjust import (
    CALIBRATION_K,
    calibration_record,
    grid_ranks_from_embeddings,
    inverse_item_bias,
    ndcg_curves,
    select_tau,
    tau_grid,
)
from components.core.ranking import seen_mask, user_states
from components.core.sequences import UserSequences
from components.core.stats_artifact import DomainStats
from components.core.weighting.weights_file import (
    WEIGHTS_FILE,
    read_weights_json,
    validate_weights,
)
from components.errors import ConfigError, InputError
from components.evaluate.config import EvalConfig

log = logging.getLogger("dwlrec.evaluate")


def stats_item_bias(stats_root: Path, item_domains: list[list[str]]) -> np.ndarray:
    """b(i) = log ω_inverse(i) from a stats output dir's weights.json (``inverse_item_bias``)."""
    path = Path(stats_root) / WEIGHTS_FILE
    return inverse_item_bias(validate_weights(read_weights_json(path), str(path)), item_domains)


def split_exclude(sequences: UserSequences, split: str, config: EvalConfig, n: int, device):
    """The run's protocol for ``split``: the seen-items mask callable, or None (history kept)."""
    return seen_mask(*sequences.history(split), n, device) if config.exclude_seen else None


def adjusted_test_ranks(
    model,
    sequences: UserSequences,
    max_len: int,
    item_embeddings,
    test: tuple,
    item_bias: np.ndarray | None,
    item_domains: list[list[str]],
    stats: DomainStats,
    config: EvalConfig,
    device: str,
) -> tuple:
    """Choose τ on the validation split, rank the test split with it.

    ``test``: (user states, targets, exclude) of the test users. Returns (test ranks [U] torch,
    top items [U, max K] torch, the ``logit_adjust`` record with the whole τ curve)."""
    import torch

    if item_bias is None or len(item_bias) != item_embeddings.shape[0]:
        raise ConfigError(
            "--logit-adjust: needs one item bias per item (the stats dir's weights.json)"
        )
    taus = tau_grid(config.tau_max, config.tau_steps)
    sparse = stats.sparse_domains()
    _, prefix, val_targets = sequences.prefixes("valid", max_len)
    if len(val_targets) == 0:
        raise InputError("--logit-adjust: no validation interactions to choose tau on")
    val_states = user_states(model, prefix, device, config.batch_size)
    if not torch.isfinite(val_states).all():
        raise InputError("the model produced NaN/inf user states on the validation split")
    n = item_embeddings.shape[0]
    val_exclude = split_exclude(sequences, "valid", config, n, device)
    val_ranks, _ = grid_ranks_from_embeddings(
        val_states, item_embeddings, val_targets, item_bias, taus, val_exclude
    )
    val = ndcg_curves(val_ranks.cpu().numpy(), [item_domains[t] for t in val_targets], sparse)
    chosen = select_tau(*val, config.la_max_overall_drop)
    states, targets, exclude = test
    test_ranks, top_items = grid_ranks_from_embeddings(
        states, item_embeddings, targets, item_bias, taus, exclude,
        topk=max(config.ks), topk_tau=chosen, progress=True,
    )  # fmt: skip
    test_curves = ndcg_curves(
        test_ranks.cpu().numpy(), [item_domains[t] for t in np.asarray(targets)], sparse
    )
    record = calibration_record(taus, val, test_curves, chosen, config.la_max_overall_drop)
    log.info(
        "logit adjustment: tau = %g chosen on validation (NDCG@%d %.4f vs %.4f at tau = 0; "
        "mean sparse-domain NDCG@%d %.4f vs %.4f)",
        taus[chosen], CALIBRATION_K, val[0][chosen], val[0][0],
        CALIBRATION_K, val[1][chosen], val[1][0],
    )  # fmt: skip
    return test_ranks[chosen], top_items, record
