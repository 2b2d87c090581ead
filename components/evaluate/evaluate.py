"""The evaluate step (SPEC §7): full-ranking test metrics per domain and per power-user cohort.

Every test user's held-out item is ranked against EVERY item (padding masked, ties pessimistic)
given the user's train + valid prefix. Recall@K / NDCG@K are reported overall, per target domain
and per domain's power users, each with a 95% bootstrap CI (users resampled, seeded), plus
catalogue coverage and the share of top-K slots per domain. ``per_user.parquet`` keeps each
user's rank and cohort memberships so the report step can compare variants on the same users.
``--logit-adjust inverse`` ranks by s_i + τ·log ω_inverse(i), τ chosen on validation (calibrate.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from components.core.chunked_ranking import seen_tiles
from components.core.cohorts import per_user_table
from components.core.devices import resolve_device
from components.core.eval_artifact import METRICS_VERSION, domain_entries, write_eval_dir_files
from components.core.logit_adjust import CALIBRATION_FILE
from components.core.metrics import metric_names
from components.core.model_artifact import check_trained_on, load_model, model_summary, run_protocol
from components.core.process_group import Process, env_process, join, leave
from components.core.ranking import user_states
from components.core.sequences import UserSequences
from components.core.sharded_ranking import sharded_ranks_from_embeddings, sharded_user_states
from components.core.stats_artifact import DomainStats, load_domain_stats
from components.download import localize
from components.errors import ConfigError, InputError
from components.evaluate.calibrate import adjusted_test_ranks, split_exclude, stats_item_bias
from components.evaluate.config import EvalConfig, eval_config
from components.evaluate.render import metrics_markdown
from components.evaluate.tables import cohort_rows, exposure, per_domain_table
from components.io import check_output, json_safe, library_versions
from components.schema import Dataset, dataset_fingerprint, load_dataset

log = logging.getLogger("dwlrec.evaluate")


def evaluate_model(
    dataset: Dataset,
    stats: DomainStats,
    model,
    max_len: int,
    config: EvalConfig,
    device: str,
    item_bias: np.ndarray | None = None,
    group: Process | None = None,
) -> tuple[pa.Table, list[dict], dict]:
    """Rank every test user's target with ``model`` → (per_user table, cohort rows, info).

    ``model`` needs ``last_state(prefix [B, L] left-padded) -> [B, d]`` and
    ``item_embeddings() -> [n_items + 1, d]`` (tests inject fakes here). ``info``: the exposure
    (coverage, top-K shares) and ``logit_adjust``, the calibration record (None when off);
    ``item_bias`` [n_items + 1]: b(i) of the adjustment (``calibrate.stats_item_bias``).
    ``group``: the torchrun processes sharing the work (``rank_test_users``).
    """
    users, targets, ranks, top_items, calibration = rank_test_users(
        dataset, model, max_len, config, device, item_bias, group or Process(), stats
    )
    item_domains = dataset.item_domains()
    per_user = per_user_table(users, targets, ranks, item_domains, stats, stats.power_users)
    rows = cohort_rows(per_user, stats, config)
    info = exposure(top_items, targets, item_domains, stats, config.ks, dataset.n_items)
    return per_user, rows, {**info, "logit_adjust": calibration}


def rank_test_users(
    dataset: Dataset,
    model,
    max_len: int,
    config: EvalConfig,
    device: str,
    item_bias: np.ndarray | None,
    group: Process,
    stats: DomainStats | None = None,
) -> tuple:
    """(users, targets, ranks [U], top items [U, max K], calibration record or None), numpy.

    Without the logit adjustment the encoding and the ranking are shared among ``group``'s
    processes (``core.sharded_ranking``; every rank gets the whole result, exactly what one
    process computes); the adjustment (``stats`` needed) runs in one process only."""
    import torch

    sequences = UserSequences.from_interactions(dataset.interactions, dataset.n_items)
    users, prefix, targets = sequences.prefixes("test", max_len)
    if len(users) == 0:
        raise InputError(f"{dataset.path}: no test interactions to evaluate")
    show = group.is_main
    if config.logit_adjust == "off":
        states = sharded_user_states(model, prefix, device, config.batch_size, group, show)
    else:
        states = user_states(model, prefix, device, config.batch_size, progress=True)
    with torch.no_grad():
        item_embeddings = model.item_embeddings().detach().to(device)
    if item_embeddings.shape[0] != dataset.n_items + 1:
        raise ConfigError(
            f"the model scores {item_embeddings.shape[0] - 1} items, the dataset has "
            f"{dataset.n_items}: model and dataset do not match"
        )
    if not torch.isfinite(states).all() or not torch.isfinite(item_embeddings).all():
        raise InputError("the model produced NaN/inf user states or item embeddings")
    calibration = None
    if config.logit_adjust == "off":
        exclude = seen_tiles(*sequences.history("test"), device) if config.exclude_seen else None
        ranks, top_items = sharded_ranks_from_embeddings(
            states, item_embeddings, targets, group, exclude, topk=max(config.ks), progress=show
        )
    else:
        if group.world_size > 1 or stats is None:
            raise ConfigError("--logit-adjust: runs in one process only (no torchrun)")
        exclude = split_exclude(sequences, "test", config, dataset.n_items + 1, device)
        ranks, top_items, calibration = adjusted_test_ranks(
            model, sequences, max_len, item_embeddings, (states, targets, exclude),
            item_bias, dataset.item_domains(), stats, config, device,
        )  # fmt: skip
    return users, targets, ranks.cpu().numpy(), top_items.cpu().numpy(), calibration


def evaluate(
    dataset_dir: str,
    stats_dir: str,
    model_dir: str,
    output_dir: str,
    *,
    overwrite: bool = False,
    **options,
) -> dict:
    """Evaluate a trained model on the test split; write the eval dir; return the summary.

    ``options``: any EvalConfig field (ks, exclude_seen, bootstrap, seed, device, batch_size,
    confidence, logit_adjust, tau_max, tau_steps, la_max_overall_drop; its defaults); an
    unknown name is a ConfigError. With ``logit_adjust="inverse"`` every test metric is of the
    adjusted scores, τ chosen on the validation split (metrics.json ``logit_adjust``,
    calibration.json). ``output_dir`` may replace only a previous evaluate output unless
    ``overwrite``, and never one of the inputs (checked before anything is read; components.io)."""
    config = eval_config(**options)
    group = env_process()
    if group.world_size > 1 and config.logit_adjust != "off":
        raise ConfigError(
            f"--logit-adjust {config.logit_adjust}: not supported with {group.world_size} "
            "processes (WORLD_SIZE); run it in one process"
        )
    inputs = (dataset_dir, stats_dir, model_dir)
    check_output(output_dir, "evaluate", inputs=inputs, overwrite=overwrite)
    started = time.perf_counter()
    torch_device = resolve_device(config.device, group.local_rank)
    group = join(torch_device)
    try:
        return _evaluate(
            dataset_dir,
            stats_dir,
            model_dir,
            output_dir,
            config,
            group,
            torch_device,
            started,
            overwrite,
        )
    finally:
        leave(group)


def _evaluate(
    dataset_dir,
    stats_dir,
    model_dir,
    output_dir,
    config: EvalConfig,
    group: Process,
    torch_device,
    started: float,
    overwrite: bool,
) -> dict:
    """``evaluate`` after the checks, in one process of ``group``; only rank 0 writes."""
    inputs = (dataset_dir, stats_dir, model_dir)
    dataset = load_dataset(localize(dataset_dir))
    stats_root = localize(stats_dir)
    stats = load_domain_stats(stats_root, dataset)
    model_root = localize(model_dir)
    item_bias = None
    if config.logit_adjust != "off":  # read before the model: a bad weights.json fails early
        item_bias = stats_item_bias(stats_root, dataset.item_domains())
    device = str(torch_device)
    model, model_config = load_model(model_root, device)
    check_trained_on(model_config, dataset, model_root)
    config = replace(
        config, exclude_seen=run_protocol(model_config, config.exclude_seen, model_root)
    )
    max_len = int(model_config["model"]["max_len"])
    if not group.is_main:  # its share of the ranking only; rank 0 writes the eval dir
        rank_test_users(dataset, model, max_len, config, device, item_bias, group)
        return {"output_dir": str(output_dir), "rank": group.rank}
    per_user, rows, info = evaluate_model(
        dataset, stats, model, max_len, config, device, item_bias, group
    )
    metrics = write_eval_dir(
        output_dir, dataset, stats, config, per_user, rows, info, model_config, model_root,
        extra={
            "device": device,
            "processes": group.world_size,
            "seconds": round(time.perf_counter() - started, 3),
        },
        inputs=inputs, overwrite=overwrite,
    )  # fmt: skip
    log.info("evaluated %d users in %.1fs → %s", per_user.num_rows, metrics["seconds"], output_dir)
    return {
        "output_dir": str(output_dir),
        **metrics["summary"],
        "scheme": metrics["model"]["scheme"],
    }


def write_eval_dir(
    output_dir: str | Path,
    dataset: Dataset,
    stats: DomainStats,
    config: EvalConfig,
    per_user: pa.Table,
    rows: list[dict],
    info: dict,
    model_config: dict,
    model_root: Path | None = None,
    extra: dict | None = None,
    *,
    inputs=(),
    overwrite: bool = False,
) -> dict:
    """Write the eval dir (``components.core.eval_artifact``); return metrics.json's dict.

    ``inputs``: the paths the eval dir must not overwrite (``components.io.atomic_dir``)."""
    metrics = {
        "version": METRICS_VERSION,
        "dataset": dataset_fingerprint(dataset),
        "model": {"dir": str(model_root), **model_summary(model_config)},
        "split": "test",
        "exclude_seen": config.exclude_seen,
        "ks": list(config.ks),
        "bootstrap": {
            "resamples": config.bootstrap,
            "seed": config.seed,
            "confidence": config.confidence,
        },
        "n_users": per_user.num_rows,
        "n_items": dataset.n_items,
        "domains": domain_entries(stats),
        "power_thresholds": stats.power_thresholds,
        "summary": {
            **{name: rows[0][name] for name in metric_names(config.ks)},
            **info["coverage"],
            "n_users": per_user.num_rows,
        },
        "overall": rows[0],
        "cohorts": rows[1:],
        "logit_adjust": None,  # off; else the τ chosen on validation and its curve (in info)
        **info,
        **(extra or {}),
        "versions": library_versions(),
        "config": asdict(config),
    }
    metrics = json_safe(metrics)
    # the logit adjustment's choice of τ and its curve, also in a file of its own
    calibration = {CALIBRATION_FILE: metrics["logit_adjust"]} if metrics["logit_adjust"] else None
    write_eval_dir_files(
        output_dir,
        per_user=per_user,
        per_domain=per_domain_table(rows, stats, info, config.ks),
        metrics=metrics,
        markdown=metrics_markdown(metrics, rows),
        model_config=model_config,
        model_root=model_root,
        inputs=inputs,
        overwrite=overwrite,
        extra_json=calibration,
    )
    return metrics
