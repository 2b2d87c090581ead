"""What a train run reads, and every check on it, before anything is written: the dataset, the
stats step's weights.json (same dataset), the weighting spec the run uses, the training windows
and the loss.

The spec follows one rule (``resolve_spec``): a weighting option given to train wins, else the
value weights.json recorded, else the default; config.json records the values used and where
each came from.

The training windows come from memory (``--data memory``: every process builds the same GLOBAL
batches) or from the ingest step's sharded training view (``--data stream``: each rank streams
its LOCAL batch of batch_size / world_size users, ``components.train.streaming``). Either way
the dataset is also loaded whole: validation ranks every item for each validation user, from
the user's in-memory prefix (``UserSequences``), and the sampled loss's Q, the aux-domain head
and dynamic-user's gate read the train split. Streaming validation would need the users'
prefixes from the view (its rows are the train prefixes) plus the valid rows, ranked per rank
(as ``components.core.sharded_ranking`` does for evaluate), and Q counted in one pass over the
view.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from components.core.model_config import ModelConfig
from components.core.sequences import UserSequences
from components.core.weighting import DomainWeighter, check_dataset, load_weights, resolve_spec
from components.errors import ConfigError, InputError
from components.schema import MANIFEST_FILE, dataset_fingerprint, load_dataset
from components.train.config import WEIGHTING_OPTIONS, TrainConfig
from components.train.data import TrainWindows, epoch_batches
from components.train.distributed import Process
from components.train.losses import DomainLoss, LossFunction, domain_targets, train_item_probs
from components.train.streaming import StreamingConfig, StreamingWindows

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # users [B], inputs [B, L], targets [B, L]


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
    stream: StreamingWindows | None = None  # --data stream: this rank's reader of the view
    # memory: the steps of an epoch (the same every epoch: the same users cut the same way)
    _memory_steps: int | None = field(default=None, repr=False)

    @property
    def local(self) -> bool:
        """Whether ``train_batches`` gives this rank's LOCAL batch (stream), not the GLOBAL one."""
        return self.stream is not None

    def batches(self, epoch: int, proc: Process) -> list[np.ndarray]:
        """The global batches (users) of ``epoch``, each big enough to give every process one."""
        cfg, windows = self.cfg, self.windows
        batches = epoch_batches(
            windows.users, cfg.batch_size, cfg.seed, epoch, windows.lengths, cfg.length_buckets
        )
        return [b for b in batches if len(b) >= proc.world_size]

    def steps_per_epoch(self, proc: Process) -> int:
        """Optimiser steps of a whole epoch, the same on every rank (the LR schedule's unit)."""
        if self.stream is not None:  # len(stream) less a mid-epoch resume's start_batch
            return self.stream.steps_per_reader * self.stream.cfg.workers
        if self._memory_steps is None:
            self._memory_steps = len(self.batches(0, proc))
        return self._memory_steps

    def train_batches(self, epoch: int, proc: Process) -> Iterator[Batch]:
        """(users, inputs, targets) of each step of ``epoch``: the GLOBAL batch (memory: every
        process builds it, ``train_step`` takes its shard) or this rank's LOCAL one (stream)."""
        if self.stream is None:
            for users in self.batches(epoch, proc):
                yield (users, *self.windows.batch(users))
            return
        self.stream.set_epoch(epoch)  # before the loader's iterator copies it to its workers
        loader = DataLoader(
            self.stream,
            batch_size=None,  # the dataset yields whole batches
            num_workers=self.cfg.data_workers,
            # its own generator: making an iterator draws a seed, which would otherwise come
            # from (and shift) the global stream of dropout and negatives
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )
        for users, inputs, targets in loader:
            yield users.numpy(), inputs.numpy(), targets.numpy()


def check_stream_options(cfg: TrainConfig, dataset_dir: str | Path, proc: Process) -> None:
    """--data stream: ConfigError, before any data is read, for a batch that does not split
    evenly over the ranks, a dataset without a training view, or a shard count that does not
    split evenly over the readers (ranks × workers)."""
    if cfg.data != "stream":
        return
    world = proc.world_size
    if cfg.batch_size % world:
        raise ConfigError(
            f"--batch-size {cfg.batch_size}: with --data stream it must be a multiple of the "
            f"world size {world} (each rank streams batch-size / world-size users)"
        )
    path = Path(dataset_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # load_dataset names the file and what is wrong with it
    entry = manifest.get("training_view") if isinstance(manifest, dict) else None
    if entry is None:
        raise ConfigError(
            f"--data stream: {dataset_dir} has no training view (no training_view in "
            f"{MANIFEST_FILE}); re-run the ingest step with --train-shards S (S a multiple of "
            f"world size × --data-workers), or train with --data memory"
        )
    readers = world * max(cfg.data_workers, 1)
    shards = entry.get("n_shards") if isinstance(entry, dict) else None
    if isinstance(shards, int) and shards % readers:
        fits = ", ".join(str(readers * k) for k in range(1, 4))
        raise ConfigError(
            f"--data stream: the training view has {shards} shards (--train-shards), not a "
            f"multiple of world size {world} × max(--data-workers {cfg.data_workers}, 1) = "
            f"{readers}; re-ingest with --train-shards {fits}…, or change --data-workers or "
            f"the number of processes"
        )


def make_stream(
    cfg: TrainConfig, dataset_dir: str | Path, max_len: int, proc: Process
) -> StreamingWindows | None:
    """--data stream: this rank's reader of the view (shards checked against the manifest)."""
    if cfg.data != "stream":
        return None
    stream_cfg = StreamingConfig(
        batch_size=cfg.batch_size // proc.world_size,  # checked by check_stream_options
        max_len=max_len,
        seed=cfg.seed,
        rank=proc.rank,
        world_size=proc.world_size,
        num_workers=cfg.data_workers,
        with_users=True,  # dynamic-user's gate, and the epoch's sequence count
    )
    return StreamingWindows.from_dataset(dataset_dir, stream_cfg)


def read_inputs(
    cfg: TrainConfig,
    model_options: dict,
    dataset_dir: str | Path,
    weights_path: str | Path | None,
    device: torch.device,
    proc: Process | None = None,
) -> Inputs:
    """Read and check everything a run trains on; an InputError or ConfigError names the file
    or option at fault. ``proc``: this process's place in the group (--data stream reads its
    rank's shards; default one process)."""
    proc = proc or Process()
    check_stream_options(cfg, dataset_dir, proc)
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
    stream = make_stream(cfg, dataset_dir, model_cfg.max_len, proc)
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
        stream=stream,
    )
