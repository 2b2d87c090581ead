"""``python -m components.report``: compare variants' eval dirs against a baseline (SPEC §7)."""

from __future__ import annotations

import argparse
import json

from components.clitools import HelpFormatter, add_output_arguments, run_cli
from components.errors import ConfigError
from components.report.config import ReportConfig

EXAMPLES = """examples:
  python -m components.report --eval none=out/eval-none dynamic=out/eval-dynamic \\
      --baseline none --output out/report
  python -m components.report --eval none=out/e0 fixed=out/e1 inverse=out/e2 dynamic=out/e3 \\
      --output out/report --bootstrap 2000 --k 20
  python -m components.report --eval none=out/e-none-s0,out/e-none-s1 \
      dynamic=out/e-dyn-s0,out/e-dyn-s1 --output out/report      # two seeds per variant

outputs (written atomically to --output):
  report.html         settings of each variant (with the seed spread), one verdict per
                      variant, the frontier chart, summary sentences, NDCG@K by domain
                      (grouped bars), lift tables, τ curves, training curves, weight
                      trajectories
  report.md           the same tables and sentences in Markdown
  frontier.png        the frontier chart (overall vs sparse-mean / dense-mean lift)
  comparison.parquet  cohort x variant x metric: value, lift vs baseline, paired 95% CI, flag
  summary.json        the findings, verdicts, frontier numbers, settings and seed spreads
"""


def parse_evals(pairs: list[str]) -> dict[str, str]:
    """['none=dir', 'dyn=d1,d2', …] → {'none': 'dir', 'dyn': 'd1,d2'}; malformed or duplicate
    names are errors (comma-separated dirs are runs of one variant)."""
    evals: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--eval {pair!r}: expected NAME=DIR")
        if name in evals:
            raise ConfigError(f"--eval: duplicate variant name {name!r}")
        evals[name] = path
    return evals


def build_parser() -> argparse.ArgumentParser:
    defaults = ReportConfig()  # the one place the defaults are written
    parser = argparse.ArgumentParser(
        prog="python -m components.report",
        description="Join the per-user results of several evaluate step outputs (same dataset, "
        "same test users) and report each variant's Recall@K / NDCG@K per domain and cohort, "
        "its lift over the baseline with a paired bootstrap 95% CI, and a significance flag.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--eval", required=True, nargs="+", action="extend", metavar="NAME=DIR",
        help="a variant's evaluate output dir under a display name (repeatable); NAME=DIR1,DIR2 "
        "gives several runs (e.g. training seeds) of one variant, averaged per user",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", default=defaults.baseline, help="the NAME the others are compared to"
    )
    add_output_arguments(parser)
    parser.add_argument(
        "--bootstrap", type=int, default=defaults.bootstrap, help="paired bootstrap resamples"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed")
    parser.add_argument("--k", type=int, default=defaults.k, help="cut-off K of Recall@K / NDCG@K")
    parser.add_argument(
        "--min-users", type=int, default=defaults.min_users,
        help="never flag a cohort with fewer users as significant (tiny-n bootstrap CIs are "
        "degenerate)",
    )  # fmt: skip
    parser.add_argument(
        "--top-domains", type=int, default=defaults.top_domains, metavar="N",
        help="tables and the bar chart show the N sparsest and the N densest domains with at "
        "least --min-users test users; the others are pooled into 'other sparse domains' and "
        "'other dense domains' (comparison.parquet keeps every domain)",
    )  # fmt: skip
    return parser


def _run(args: argparse.Namespace) -> None:
    from components.report.report import report

    summary = report(
        parse_evals(args.eval),
        args.output,
        baseline=args.baseline,
        bootstrap=args.bootstrap,
        seed=args.seed,
        k=args.k,
        min_users=args.min_users,
        top_domains=args.top_domains,
        overwrite=args.overwrite,
    )
    print("\n".join(summary["findings"]) or f"wrote {args.output} (baseline only)")
    print(json.dumps({"output_dir": summary["output_dir"], "variants": summary["variants"]}))


def main(argv: list[str] | None = None) -> int:
    return run_cli(_run, build_parser(), argv)
