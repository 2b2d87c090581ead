"""``python -m components.train``: train one weighting variant, write the Model artifact dir."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import MISSING, fields
from typing import Any

from components.clitools import HelpFormatter, add_output_arguments, run_cli
from components.core.devices import DEVICES
from components.core.model_config import NORMS, ModelConfig
from components.core.weighting import AGGS, DEFAULTS, SCHEMES, TARGETS
from components.core.weighting.spec import option_name
from components.errors import ConfigError
from components.train.config import (
    DATA_SOURCES,
    DECAYS,
    LOSS_NORMS,
    LOSSES,
    MODEL_OPTIONS,
    OPTIMIZERS,
    PRECISIONS,
    SELECT_METRICS,
    WEIGHTING_OPTIONS,
    TrainConfig,
)

# The weighting options: not given = the value the stats step recorded in weights.json.
RECORDED = "default: as recorded in weights.json, else"
# A field's annotation → the argparse type of its option.
TYPES = {"int": int, "float": float, "str": str}


def field_defaults(config: type) -> dict[str, Any]:
    """Field name → default of the dataclass ``config`` (fields without one left out)."""
    return {f.name: f.default for f in fields(config) if f.default is not MISSING}


TRAIN_DEFAULTS = field_defaults(TrainConfig)
MODEL_DEFAULTS = field_defaults(ModelConfig)
# field name → its annotation as written (``int``, ``float | None``, …)
FIELD_TYPES = {
    f.name: f.type if isinstance(f.type, str) else f.type.__name__
    for config in (TrainConfig, ModelConfig)
    for f in fields(config)
}


def add_option(group: Any, name: str, help: str | None = None, **kwargs: Any) -> None:
    """``--name`` for the TrainConfig / ModelConfig field ``name``: its default (the one written
    in the dataclass) and its type; a bool field is a switch (``store_true``)."""
    default = {**TRAIN_DEFAULTS, **MODEL_DEFAULTS}[name]
    if FIELD_TYPES[name] == "bool":  # --x / --no-x when on by default
        kwargs.setdefault("action", argparse.BooleanOptionalAction if default else "store_true")
    else:
        kwargs.setdefault("type", TYPES[FIELD_TYPES[name]])
    group.add_argument(option_name(name), default=default, help=help, **kwargs)


def add_weighting_option(group: Any, name: str, help: str, **kwargs: Any) -> None:
    """A weighting option: not given, it is not set (the value weights.json recorded wins)."""
    kind = FIELD_TYPES[name].removesuffix(" | None")
    if kind.startswith("list["):  # fixed_domains
        kwargs.setdefault("nargs", "+")
        kind = "str"
    elif kind.startswith("tuple["):  # lambdas: (float, float, float)
        kwargs.setdefault("nargs", kind.count(",") + 1)
        kind = "float"
    if "choices" not in kwargs:
        kwargs["type"] = TYPES[kind]
    default = getattr(DEFAULTS, name)
    shown = (
        f"{default:g}"
        if isinstance(default, float)
        else " ".join(map(str, default))
        if isinstance(default, tuple)
        else default
    )
    help = f"{help} ({RECORDED} {shown})" if default is not None else f"{help} ({RECORDED[:-6]})"
    group.add_argument(option_name(name), default=argparse.SUPPRESS, help=help, **kwargs)


EXAMPLES = """The weighting parameters are those the stats step recorded in weights.json (e.g. its
--beta, --agg, --target); each one given here wins (e.g. --target composite --beta 0.8). config.json
records the values used ("weighting") and where each came from ("weighting_sources").

examples:
  python -m components.train --dataset out/ml100k --weights out/stats/weights.json \\
      --output out/model-dynamic --scheme dynamic --loss ce
  python -m components.train --dataset out/beauty --output out/beauty-none --max-len 50 \\
      --epochs 200 --patience 10          # scheme none needs no --weights
  python -m components.train ... --resume              # continue from checkpoints/last.pt
  python -m components.train ... --nproc-per-node 2    # DDP via torchrun (gloo on CPU)
  python -m components.train ... --data stream         # from the sharded train_view/
"""


def build_parser() -> argparse.ArgumentParser:
    """The train CLI; every default is the TrainConfig / ModelConfig one (``add_option``)."""
    parser = argparse.ArgumentParser(
        prog="python -m components.train",
        description="Train a causal-transformer sequential recommender (SPEC §6) with a "
        "domain-weighted loss (SPEC §5). Writes model.pt, config.json, weights_history.json, "
        "train_log.jsonl and checkpoints/ to --output. Early stopping on validation NDCG@10 "
        "(full ranking over every item).",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="ingest output dir")
    parser.add_argument(
        "--weights", help="stats step weights.json (or its dir); optional for --scheme none"
    )
    add_output_arguments(parser, "Model artifact dir")
    add_option(parser, "scheme", "domain weighting", choices=SCHEMES)
    add_option(parser, "loss", "base loss", choices=LOSSES)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT/checkpoints/last.pt if it exists",
    )

    model = parser.add_argument_group("model")
    add_option(model, "max_len", "longest input sequence")
    add_option(model, "d_model", "embedding and state size")
    add_option(model, "n_blocks", "transformer blocks")
    add_option(model, "n_heads", "attention heads (must divide --d-model)")
    add_option(model, "dropout", "dropout rate, in [0, 1)")
    add_option(model, "ff_mult", "feed-forward size / d-model")
    add_option(
        model,
        "norm",
        "LayerNorm before each sublayer + a final one (pre), or after each residual (post, "
        "SASRec's reference code)",
        choices=NORMS,
    )
    add_option(model, "emb_norm", "LayerNorm on item + position embeddings")
    add_option(model, "scale_emb", "scale item embeddings by sqrt(d-model) at the input")
    add_option(
        model,
        "init_std",
        "> 0: every Linear/Embedding N(0, STD), biases 0 (0.02 = SASRec's); 0: item embeddings "
        "N(0, 1/d-model), positions N(0, 0.02), Linear torch's default",
    )

    opt = parser.add_argument_group("optimisation")
    add_option(opt, "epochs", "maximum epochs")
    add_option(opt, "batch_size", "users per step (global)")
    add_option(
        opt, "optimizer", "adam (L2 in the gradient) or adamw (decoupled)", choices=OPTIMIZERS
    )
    add_option(opt, "lr", "learning rate")
    add_option(opt, "weight_decay", "weight decay")
    add_option(opt, "warmup_steps", "linear learning-rate warm-up steps")
    add_option(
        opt, "decay", "learning-rate decay to 0 at the last step of --epochs", choices=DECAYS
    )
    add_option(opt, "grad_clip", "max gradient norm; 0 = off")
    add_option(
        opt,
        "loss_norm",
        "divide a batch's loss by its number of targets (batch) or by its users x the mean "
        "targets per user (token: every target weighs the same, also with --length-buckets)",
        choices=LOSS_NORMS,
    )
    add_option(
        opt, "patience", "stop after this many epochs without a better --select-metric; 0 = off"
    )
    add_option(
        opt, "select_metric", "validation metric that keeps the best epoch", choices=SELECT_METRICS
    )
    add_option(
        opt,
        "exclude_seen",
        "the run's protocol: the user's earlier items are out of the validation ranking (and "
        "evaluate's, which reads it from config.json)",
    )
    add_option(opt, "seed", "seed of the initial model, the batches and the negatives")
    add_option(
        opt,
        "length_buckets",
        "> 1: batch users of similar length (sorted within runs of N batches): much faster "
        "when sequences are short, and with --loss-norm token the same objective; 0 = plain "
        "shuffle; not used by --data stream",
    )
    add_option(
        opt,
        "data",
        "where the training windows come from: memory (the train split loaded whole) or "
        "stream (the ingest step's sharded train_view/, read per rank in bounded memory; "
        "--batch-size must be a multiple of the world size)",
        # not choices: TrainConfig.validate checks it, naming --data, like the pipeline's check
        metavar="{" + ",".join(DATA_SOURCES) + "}",
    )
    add_option(
        opt,
        "data_workers",
        "--data stream: data-loader workers per rank; 0 = the training process reads; the "
        "view's --train-shards must be a multiple of world size x max(workers, 1)",
    )
    add_option(
        opt,
        "stop_after_epochs",
        "stop this invocation after N epochs (continue with --resume); 0 = off",
    )

    loss = parser.add_argument_group("loss and weighting")
    add_option(loss, "negatives", "uniform negatives: R for sampled, k for gbce/mml (bce uses 1)")
    add_option(loss, "temperature", "sampled softmax τ")
    add_option(loss, "gbce_t", "gBCE calibration t")
    add_option(
        loss,
        "aux_domain",
        "aux-domain λ: a head predicts the next item's domain, loss item + λ·domain; 0 = off",
    )
    add_weighting_option(loss, "fixed_domains", "fixed: the boosted domains", metavar="DOMAIN")
    add_weighting_option(loss, "fixed_weight", "fixed: weight of the boosted domains")
    add_weighting_option(loss, "gamma", "inverse: power of (mean share / domain share)")
    add_weighting_option(loss, "w_min", "lower clip bound of the weights")
    add_weighting_option(loss, "w_max", "upper clip bound of the weights")
    add_weighting_option(loss, "target", "dynamic: the target it moves toward", choices=TARGETS)
    add_weighting_option(
        loss, "lambdas", "composite: weights of IDF, user ratio, entropy", metavar="L"
    )
    add_weighting_option(loss, "alpha", "composite: w = 1 + alpha * zscore(S)")
    add_weighting_option(loss, "beta", "dynamic: EMA factor β")
    add_weighting_option(
        loss,
        "update_every_steps",
        "dynamic: update the weights every K steps; 0 = each epoch end",
    )
    add_weighting_option(
        loss, "agg", "ω of a multi-domain item from its domains' weights", choices=AGGS
    )
    add_weighting_option(loss, "eta", "dro: step size of q_g <- q_g * exp(eta * EMA loss_g), > 0")
    add_weighting_option(
        loss, "user_theta", "dynamic-user: weigh targets in domains with >= this user share"
    )

    dev = parser.add_argument_group("devices")
    add_option(dev, "device", "auto: cuda if available, else cpu", choices=DEVICES)
    add_option(dev, "threads", "CPU threads for torch; 0 = default")
    add_option(dev, "compile", "torch.compile the model")
    add_option(
        dev,
        "precision",
        "autocast of training: auto (bf16 on recent GPUs, fp16 on older ones, fp32 on CPU), "
        "fp32, or bf16 (also on a CPU: fast where it has AMX / AVX-512 BF16)",
        choices=PRECISIONS,
    )
    add_option(dev, "val_batch_size", "users per batch of the validation pass")
    add_option(
        dev,
        "record_test",
        "log test metrics after each epoch in train_log.jsonl (benchmarks; never used to select)",
    )
    dev.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="processes for DDP, launched with torchrun (gloo on CPU, nccl on GPU)",
    )
    dev.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,  # not given: TrainConfig's (a bar on rank 0)
        help="no progress bar",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> dict:
    """The keyword options of ``train`` from parsed arguments (a weighting option only when
    given)."""
    names = {*TRAIN_DEFAULTS, *WEIGHTING_OPTIONS, *MODEL_OPTIONS}
    return {k: v for k, v in vars(args).items() if k in names}


def _launch_torchrun(args: argparse.Namespace, argv: list[str]) -> int:
    """Re-run this command under torchrun with N processes per node; the nodes come from the
    cluster's environment (``launch.torchrun_prefix``), one machine without one."""
    from components.train.launch import torchrun_prefix

    if args.nproc_per_node < 1:
        print("error: --nproc-per-node must be >= 1", file=sys.stderr)
        return 2
    rest = [a for a in argv if not a.startswith("--nproc-per-node")]
    if "--nproc-per-node" in argv:  # drop the separate value too
        i = argv.index("--nproc-per-node")
        rest = argv[:i] + argv[i + 2 :]
    cmd = [*torchrun_prefix(args.nproc_per_node), "-m", "components.train", *rest]
    result = subprocess.run(cmd, check=False)
    return 2 if result.returncode else 0


def _run(args: argparse.Namespace) -> None:
    from components.train.trainer import train

    summary = train(
        args.dataset,
        args.weights,
        args.output,
        resume=args.resume,
        overwrite=args.overwrite,
        **options_from_args(args),
    )
    if summary["world_size"] == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    # not WORLD_SIZE: a PyTorchJob or Vertex pod has it before torchrun starts; torchrun's own
    # workers are the ones to run in place
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        from components.train.cluster_env import detect

        try:
            # a multi-node pod needs torchrun, even for 1 process
            nnodes = detect(os.environ).nnodes
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.nproc_per_node != 1 or nnodes > 1:
            return _launch_torchrun(args, argv)
    return run_cli(_run, parser, argv)
