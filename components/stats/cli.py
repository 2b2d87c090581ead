"""``python -m components.stats``: domain sparsity statistics and loss weights (SPEC §4, §5)."""

from __future__ import annotations

import argparse

from components.clitools import HelpFormatter, add_output_arguments, run_cli
from components.core import weighting as W
from components.stats.config import default_of, stats_option_names

EXAMPLES = f"""outputs (in --output, replaced atomically):
  domain_stats.parquet  one row per domain, sparsest first: n_d u_d i_d p_d idf_d user_ratio
                        entropy power_users_<θ> weight_fixed weight_inverse weight_composite
                        weight_dynamic_target no_train_interactions unlabelled
  power_users.parquet   (user_idx, domain, share) for every share >= min(--power-threshold)
  weights.json          versioned parameters + per-domain targets, read by the train step
  report.md/.html       table sparsest -> densest and a bar chart of shares and weights

--fixed-domains default: the domains whose train share is below
{W.FIXED_DEFAULT_SHARE_FRACTION:g} x 1/|D| (the clearly sparse ones), else the sparsest domain;
recorded in weights.json params.fixed_domains.

Every weighting parameter used is recorded in weights.json params: the train step trains with
them (e.g. --beta 0.5 --agg max here: train uses 0.5 and max unless its own --beta/--agg is given).

Unlabelled domains ({", ".join(W.UNLABELLED_DOMAINS)}: items without a known domain) are not
a niche to boost: weight 1 under every scheme, left out of every target's normalisation and of
the default fixed set, listed as their own cohort; --boost-unlabelled weights them like any
domain. Recorded in weights.json params.unlabelled_domains (the train step applies the same).

examples:
  python -m components.stats --dataset out/ml100k --output out/ml100k-stats
  python -m components.stats --dataset out/ml100k --output out/stats --fixed-domains Film-Noir \\
      --power-threshold 0.5 0.2 --gamma 0.5 --w-min 0.5 --w-max 5
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.stats",
        description="Compute per-domain sparsity statistics on the train split of an ingest "
        "output and the target loss weight of every weighting scheme (none, fixed, inverse, "
        "dynamic). An interaction counts once in each domain of its item.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help="ingest output dir (items.parquet, interactions.parquet, "
        "manifest.json); local path or gs:// URI",
    )
    add_output_arguments(parser)
    parser.add_argument(
        "--power-threshold",
        type=float,
        nargs="+",
        dest="power_thresholds",
        default=list(default_of("power_thresholds")),
        metavar="θ",
        help="a power user of d has >= θ of their train interactions in d; one count column per θ",
    )
    fixed = parser.add_argument_group("fixed scheme (PinnerFormerLite)")
    fixed.add_argument(
        "--fixed-domains",
        nargs="+",
        metavar="DOMAIN",
        help="domains weighted --fixed-weight (default: the clearly sparse domains, see below)",
    )
    fixed.add_argument("--fixed-weight", type=float, default=default_of("fixed_weight"))
    inverse = parser.add_argument_group("inverse scheme and bounds")
    inverse.add_argument(
        "--gamma", type=float, default=default_of("gamma"), help="power of (p̄ / p_d)"
    )
    inverse.add_argument(
        "--w-min", type=float, default=default_of("w_min"), help="lower clip bound"
    )
    inverse.add_argument(
        "--w-max", type=float, default=default_of("w_max"), help="upper clip bound"
    )
    dynamic = parser.add_argument_group("dynamic scheme (DWL)")
    dynamic.add_argument(
        "--beta", type=float, default=default_of("beta"), help="EMA factor (recorded for train)"
    )
    dynamic.add_argument(
        "--target",
        choices=W.TARGETS,
        default=default_of("target"),
        help="what dynamic moves toward",
    )
    dynamic.add_argument(
        "--lambdas",
        type=float,
        nargs=3,
        default=list(default_of("lambdas")),
        metavar=("L_IDF", "L_USER", "L_ENTROPY"),
        help="composite score weights",
    )
    dynamic.add_argument(
        "--alpha",
        type=float,
        default=default_of("alpha"),
        help="composite: w = 1 + alpha * zscore(S)",
    )
    dynamic.add_argument(
        "--agg",
        choices=W.AGGS,
        default=default_of("agg"),
        help="per-example weight over an item's domains (recorded for train)",
    )
    beyond = parser.add_argument_group("dro and dynamic-user schemes (recorded for train)")
    beyond.add_argument(
        "--eta",
        type=float,
        default=default_of("eta"),
        help="dro: step size of the group weights, q_g <- q_g * exp(eta * EMA loss_g); > 0",
    )
    beyond.add_argument(
        "--user-theta",
        type=float,
        default=default_of("user_theta"),
        help="dynamic-user: the weight applies to targets in domains holding >= this share "
        "of the user's train history; in (0, 1]",
    )
    unlabelled = parser.add_argument_group("unlabelled domains (items without a known domain)")
    unlabelled.add_argument(
        "--unlabelled-domains",
        nargs="+",
        default=list(default_of("unlabelled_domains")),
        metavar="DOMAIN",
        help="domain names meaning 'no domain known': weight 1, out of every target",
    )
    unlabelled.add_argument(
        "--boost-unlabelled",
        action="store_true",
        help="weight the unlabelled domains like any other domain",
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    from components.stats.domain_stats import compute_stats

    # every option's dest is its StatsConfig field name
    options = {name: getattr(args, name) for name in stats_option_names()}
    summary = compute_stats(args.dataset, args.output, overwrite=args.overwrite, **options)
    print(
        f"wrote {summary['output']}: {summary['n_domains']} domains, "
        f"{summary['n_train_interactions']:,} train interactions, "
        f"{summary['n_train_users']:,} users\n"
        f"sparsest: {', '.join(summary['sparsest'])}; densest: {', '.join(summary['densest'])}\n"
        f"fixed domains: {', '.join(summary['fixed_domains']) or '-'}"
        + (
            f"\nno train interactions (weight 1): {', '.join(summary['zero_train_domains'])}"
            if summary["zero_train_domains"]
            else ""
        )
        + (
            f"\nunlabelled (weight 1, not boosted): {', '.join(summary['unlabelled_domains'])}"
            if summary["unlabelled_domains"]
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_run, build_parser(), argv)
