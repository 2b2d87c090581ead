"""What a train run reads, and every check on it, before anything is written: the dataset, the
stats step's weights.json (same dataset), the weighting spec the run uses, the training windows
and the loss.

The spec follows one rule (``resolve_spec``): a weighting option given to train wins, else the
value weights.json recorded, else the default; config.json records the values used and where
each came from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from components.core.model_config import ModelConfig
from components.core.sequences import UserSequences
from components.core.weighting import DomainWeighter, check_dataset, load_weights, resolve_spec
from components.errors import ConfigError, InputError
from components.schema import dataset_fingerprint, load_dataset
from components.train.config import WEIGHTING_OPTIONS, TrainConfig
from components.train.data import TrainWindows, epoch_batches
from components.train.distributed import Process
from components.train.losses import DomainLoss, LossFunction, domain_targets, train_item_probs


@dataclass
class Inputs:
    """A run's inputs, read and checked."""

    cfg: TrainConfig  # the options, with the weighting values the run uses
    model_cfg: ModelConfig
    fingerprint: dict  # of the dataset (components.schema)
    weights_path: str | Path | None
    weights_dataset: dict | None  # the fingerprint weights.json recorded
    spec_sources: dict  # weighting parameter → train option | weights.json | default
    weighter: DomainWeighter | None  # None: no weights.json (scheme none)
    seqs: UserSequences
    windows: TrainWindows
    loss_fn: LossFunction
    aux: DomainLoss | None = None  # --aux-domain > 0: the domain head's loss

    def batches(self, epoch: int, proc: Process) -> list[np.ndarray]:
        """The global batches (users) of ``epoch``, each big enough to give every process one."""
        cfg, windows = self.cfg, self.windows
        batches = epoch_batches(
            windows.users, cfg.batch_size, cfg.seed, epoch, windows.lengths, cfg.length_buckets
        )
        return [b for b in batches if len(b) >= proc.world_size]


def read_inputs(
    cfg: TrainConfig,
    model_options: dict,
    dataset_dir: str | Path,
    weights_path: str | Path | None,
    device: torch.device,
) -> Inputs:
    """Read and check everything a run trains on; an InputError or ConfigError names the file
    or option at fault."""
    dataset = load_dataset(dataset_dir)
    fingerprint = dataset_fingerprint(dataset)
    if weights_path is None:
        if cfg.scheme != "none":
            raise ConfigError(f"--weights is required for --scheme {cfg.scheme}")
        weights = None
    else:
        weights = load_weights(weights_path)
        check_dataset(weights, fingerprint, weights_path)  # e.g. another dataset's item count
    # the spec: each option given explicitly, else what weights.json recorded, else the default
    spec, spec_sources = resolve_spec(
        cfg.scheme,
        weights and weights["params"],
        str(weights_path),
        **cfg.weighting_given(),
    )
    cfg = replace(cfg, **{k: getattr(spec, k) for k in WEIGHTING_OPTIONS})  # the values used
    weighter = DomainWeighter(spec, weights, dataset.item_domains()) if weights else None
    aux = None
    if cfg.aux_domain > 0:  # the domain head's classes: every domain of the items, '(none)' too
        aux = DomainLoss(cfg.aux_domain, domain_targets(dataset.item_domains()).to(device))
    n_domains = len(aux.targets.domains) if aux is not None else 0
    model_cfg = ModelConfig(n_items=dataset.n_items, n_domains=n_domains, **model_options)
    seqs = UserSequences.from_interactions(dataset.interactions, dataset.n_items)
    train_offsets, train_items = seqs.train_sequences()
    windows = TrainWindows(train_offsets, train_items, model_cfg.max_len)
    if len(windows.users) == 0:
        raise InputError(f"{dataset.path}: no user has 2+ train interactions; nothing to train on")
    if weighter is not None:  # dynamic-user: each user's domain shares, computed once
        weighter.set_user_history(windows.offsets, windows.item_idx)
    loss_fn = LossFunction(
        cfg.loss,
        dataset.n_items,
        negatives=cfg.negatives,
        temperature=cfg.temperature,
        gbce_t=cfg.gbce_t,
        item_probs=train_item_probs(train_items, dataset.n_items).to(device),
    )
    return Inputs(
        cfg=cfg,
        model_cfg=model_cfg,
        fingerprint=fingerprint,
        weights_path=weights_path,
        weights_dataset=weights and weights.get("dataset"),
        spec_sources=spec_sources,
        weighter=weighter,
        seqs=seqs,
        windows=windows,
        loss_fn=loss_fn,
        aux=aux,
    )
