"""``python -m components.evaluate``: full-ranking test metrics of a trained model (SPEC §7)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from components.clitools import HelpFormatter, add_output_arguments, run_cli
from components.evaluate.config import LOGIT_ADJUST_MODES, EvalConfig

EXAMPLES = """examples:
  python -m components.evaluate --dataset out/ml100k --stats out/stats --model out/train-none \\
      --output out/eval-none
  python -m components.evaluate --dataset out/ml100k --stats out/stats --model out/train-dynamic \\
      --output out/eval-dynamic --k 10 20 50 --exclude-seen --bootstrap 2000 --device cuda
  python -m components.evaluate --dataset out/ml100k --stats out/stats --model out/train-none \\
      --output out/eval-logit-adjust --logit-adjust inverse --tau-max 2 --tau-steps 21
  python -m components.evaluate ... --nproc-per-node 2   # users shared by 2 processes (torchrun)

outputs (written atomically to --output):
  per_user.parquet    user_idx, target_item_idx, rank (0-based, pessimistic), target_domains,
                      power_domains_<theta> (the cohorts each user belongs to)
  metrics.json        overall + per cohort: n, Recall@K, NDCG@K with 95% bootstrap CIs;
                      coverage@K; share of top-K slots per domain; model scheme/loss
  per_domain.parquet  the same per cohort as a table, sparsest -> densest domain
  metrics.md          a Markdown table
  train_log.jsonl, weights_history.json, model_config.json  copied from --model for the report
  calibration.json    with --logit-adjust: the tau chosen on validation and the whole curve
                      (also metrics.json "logit_adjust")
"""


def build_parser() -> argparse.ArgumentParser:
    defaults = EvalConfig()  # the one place the defaults are written
    parser = argparse.ArgumentParser(
        prog="python -m components.evaluate",
        description="Rank every test user's held-out item against EVERY item (padding masked, "
        "ties pessimistic) given the train+valid prefix, and report Recall@K / NDCG@K overall, "
        "per target domain and per domain's power users, with bootstrap confidence intervals.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--dataset", required=True, help="ingest output dir (local, gs://, https://)"
    )
    parser.add_argument(
        "--stats", required=True, help="stats step output dir (domains, power users)"
    )
    parser.add_argument(
        "--model", required=True, help="train step output dir (model.pt, config.json)"
    )
    add_output_arguments(parser)
    parser.add_argument("--k", type=int, nargs="+", default=list(defaults.ks), help="cut-offs K")
    parser.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=defaults.exclude_seen,
        help="drop the items the user interacted with before the target (train+valid) from the "
        "candidates. Default: the run's protocol, as the model was trained and selected "
        "(config.json train.exclude_seen); the other one is refused (the output records it)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=defaults.bootstrap, help="bootstrap resamples (0: no CI)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="users per model forward pass",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        help="processes sharing the encoding and the ranking, launched with torchrun --standalone "
        "(gloo on CPU, nccl on GPU); the same results as one process; not with --logit-adjust. "
        "Under torchrun (WORLD_SIZE > 1) evaluate shares the work without this option",
    )
    adjust = parser.add_argument_group(
        "post-hoc logit adjustment (SPEC §5): score s_i + tau * log w_inverse(i), tau chosen on "
        "the validation split; every test metric is of the adjusted scores"
    )
    adjust.add_argument(
        "--logit-adjust",
        choices=LOGIT_ADJUST_MODES,
        default=defaults.logit_adjust,
        help="off, or inverse: the bias is the log of the inverse scheme's weight of the item "
        "(the stats dir's weights.json)",
    )
    adjust.add_argument(
        "--tau-max",
        type=float,
        default=defaults.tau_max,
        help="the tau grid is linspace(0, --tau-max, --tau-steps)",
    )
    adjust.add_argument(
        "--tau-steps", type=int, default=defaults.tau_steps, help="grid points (tau = 0 included)"
    )
    adjust.add_argument(
        "--la-max-overall-drop",
        type=float,
        default=defaults.la_max_overall_drop,
        help="tau maximises the mean sparse-domain val NDCG@10 among the tau whose overall val "
        "NDCG@10 >= (1 - this) x its value at tau = 0",
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    from components.evaluate.evaluate import evaluate

    summary = evaluate(
        args.dataset,
        args.stats,
        args.model,
        args.output,
        ks=tuple(args.k),
        exclude_seen=args.exclude_seen,
        bootstrap=args.bootstrap,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        logit_adjust=args.logit_adjust,
        tau_max=args.tau_max,
        tau_steps=args.tau_steps,
        la_max_overall_drop=args.la_max_overall_drop,
        overwrite=args.overwrite,
    )
    if "rank" not in summary:  # rank 0 (or one process) reports
        print(json.dumps(summary, indent=2))


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Re-run this command in ``nproc`` torchrun processes on this machine."""
    rest, skip = [], False
    for arg in argv:  # drop --nproc-per-node N / --nproc-per-node=N
        if skip or arg.startswith("--nproc-per-node"):
            skip = arg == "--nproc-per-node" and not skip
            continue
        rest.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", "-m", "components.evaluate", *rest]
    return 2 if subprocess.run(cmd, check=False).returncode else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, _ = parser.parse_known_args(argv)
    if args.nproc_per_node < 1:
        print("error: --nproc-per-node: must be an integer >= 1", file=sys.stderr)
        return 2
    if args.nproc_per_node > 1 and args.logit_adjust != "off":
        print(
            "error: --logit-adjust: runs in one process only (no --nproc-per-node)", file=sys.stderr
        )
        return 2
    # torchrun's own workers (TORCHELASTIC_RUN_ID) run in place
    if args.nproc_per_node > 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return _launch_torchrun(args.nproc_per_node, argv)
    return run_cli(_run, parser, argv)
