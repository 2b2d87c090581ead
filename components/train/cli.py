"""``python -m components.train``: train one weighting variant, write the Model artifact dir."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import fields

from components.clitools import HelpFormatter, add_output_arguments, run_cli
from components.core.weighting import AGGS, DEFAULTS, SCHEMES

# Mirrors TrainConfig / ModelConfig defaults without importing torch (checked by a test).
LOSSES = ("ce", "sampled", "bce", "gbce", "mml")
# The weighting options: not given = the value the stats step recorded in weights.json.
RECORDED = "default: as recorded in weights.json, else"

EXAMPLES = """The weighting parameters are those the stats step recorded in weights.json (e.g. its
--beta, --agg, --target); --beta, --agg or --update-every-steps given here win. config.json
records the values used ("weighting") and where each came from ("weighting_sources").

examples:
  python -m components.train --dataset out/ml100k --weights out/stats/weights.json \\
      --output out/model-dynamic --scheme dynamic --loss ce
  python -m components.train --dataset out/beauty --output out/beauty-none --max-len 50 \\
      --epochs 200 --patience 10          # scheme none needs no --weights
  python -m components.train ... --resume              # continue from checkpoints/last.pt
  python -m components.train ... --nproc-per-node 2    # DDP via torchrun (gloo on CPU)
"""


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--scheme", choices=SCHEMES, default="none", help="domain weighting")
    parser.add_argument("--loss", choices=LOSSES, default="ce", help="base loss")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT/checkpoints/last.pt if it exists",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--max-len", type=int, default=200, help="longest input sequence")
    model.add_argument("--d-model", type=int, default=64)
    model.add_argument("--n-blocks", type=int, default=2)
    model.add_argument("--n-heads", type=int, default=2)
    model.add_argument("--dropout", type=float, default=0.2)
    model.add_argument("--ff-mult", type=int, default=4, help="feed-forward size / d-model")

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=50, help="maximum epochs")
    opt.add_argument("--batch-size", type=int, default=128, help="users per step (global)")
    opt.add_argument("--lr", type=float, default=1e-3)
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--warmup-steps", type=int, default=0)
    opt.add_argument(
        "--decay",
        choices=("none", "linear", "cosine"),
        default="none",
        help="learning-rate decay to 0 at the last step of --epochs",
    )
    opt.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0 = off")
    opt.add_argument(
        "--patience",
        type=int,
        default=5,
        help="stop after this many epochs without a better val NDCG@10; 0 = off",
    )
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument(
        "--length-buckets",
        type=int,
        default=0,
        help="> 1: batch users of similar length (sorted within runs of N batches); "
        "much faster when sequences are short; 0 = plain shuffle",
    )
    opt.add_argument(
        "--stop-after-epochs",
        type=int,
        default=0,
        help="stop this invocation after N epochs (continue with --resume); 0 = off",
    )

    loss = parser.add_argument_group("loss and weighting")
    loss.add_argument(
        "--negatives",
        type=int,
        default=128,
        help="uniform negatives: R for sampled, k for gbce/mml (bce uses 1)",
    )
    loss.add_argument("--temperature", type=float, default=1.0, help="sampled softmax τ")
    loss.add_argument("--gbce-t", type=float, default=0.75, help="gBCE calibration t")
    loss.add_argument(
        "--beta",
        type=float,
        default=argparse.SUPPRESS,
        help=f"dynamic: EMA factor β ({RECORDED} {DEFAULTS.beta:g})",
    )
    loss.add_argument(
        "--update-every-steps",
        type=int,
        default=argparse.SUPPRESS,
        help="dynamic: update the weights every K steps; 0 = each epoch end "
        f"({RECORDED} {DEFAULTS.update_every_steps})",
    )
    loss.add_argument(
        "--agg",
        choices=AGGS,
        default=argparse.SUPPRESS,
        help=f"ω of a multi-domain item from its domains' weights ({RECORDED} {DEFAULTS.agg})",
    )

    dev = parser.add_argument_group("devices")
    dev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    dev.add_argument("--threads", type=int, default=0, help="CPU threads for torch; 0 = default")
    dev.add_argument("--compile", action="store_true", help="torch.compile the model")
    dev.add_argument("--val-batch-size", type=int, default=1024)
    dev.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="processes for DDP, launched with torchrun (gloo on CPU, nccl on GPU)",
    )
    dev.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def options_from_args(args: argparse.Namespace) -> dict:
    """The keyword options of ``train`` from parsed arguments."""
    from components.core.model import ModelConfig
    from components.train.trainer import TrainConfig

    names = {f.name for f in fields(TrainConfig)} | {f.name for f in fields(ModelConfig)}
    options = {k: v for k, v in vars(args).items() if k in names}
    options["progress"] = not args.no_progress
    return options


def _launch_torchrun(args: argparse.Namespace, argv: list[str]) -> int:
    """Re-run this command under torchrun with N processes on this machine."""
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
    if args.nproc_per_node != 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args, argv)
    return run_cli(_run, parser, argv)
