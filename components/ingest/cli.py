"""``python -m components.ingest``: any source → the SPEC §3 Parquet contract."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from components.clitools import HelpFormatter, add_output_arguments, run_cli
from components.ingest.ingest import SOURCES, ingest, summary_counts
from components.ingest.options import ENGINES, SPLIT_METHODS, IngestOptions
from components.ingest.synthetic import SyntheticConfig

EXAMPLES = """examples:
  python -m components.ingest --source synthetic --output out/synthetic
  python -m components.ingest --source movielens --input ml-100k/ --output out/ml100k
  python -m components.ingest --source movielens --input https://files.grouplens.org/datasets/movielens/ml-1m.zip --output out/ml1m
  python -m components.ingest --source sequences --input beauty/sequences.txt --items beauty/items.csv --domain-col category --output out/beauty
  python -m components.ingest --source table --input gs://bucket/events.parquet --user-col uid --item-col sku --time-col ts --output out/events
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.ingest",
        description="Read a dataset source and write items.parquet, interactions.parquet and "
        "manifest.json (SPEC §3): k-core filtered, densely re-indexed, leave-one-out split.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--source",
        required=True,
        choices=SOURCES,
        help="sequences: one line per user, 'user item1 item2 …' in time order (a user on two "
        "lines is an error naming both; a ratings table such as MovieLens u.data is refused)",
    )
    parser.add_argument(
        "--input",
        help="local path, gs://bucket/prefix or https:// URL "
        "(file, directory or official .zip); not used by --source synthetic",
    )
    add_output_arguments(parser)
    parser.add_argument("--sha256", help="expected sha256 of a downloaded --input file")
    parser.add_argument(
        "--cache-dir", help="download cache (default $DWLREC_CACHE or ~/.cache/dwlrec)"
    )

    proc = parser.add_argument_group("processing (all sources)")
    defaults = IngestOptions()
    for name in PROCESSING_FLAGS:  # every IngestOptions field, in its order
        kind, text = PROCESSING_HELP[name]
        proc.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            choices={"split": SPLIT_METHODS, "engine": ENGINES}.get(name),
            default=getattr(defaults, name),
            help=text,
        )

    src = parser.add_argument_group("source options")
    src.add_argument(
        "--items",
        help="items/metadata file (amazon metadata, yelp business.json, "
        "sequences items CSV, table items table) when not found next to --input",
    )
    src.add_argument("--domain-depth", type=int, help="amazon: category depth used as the domain")
    src.add_argument("--top-tags", type=int, help="lastfm: number of top tags kept as domains")
    src.add_argument("--domain-map", help="yelp: JSON file (or JSON text) {category: domain}")
    for column, text in COLUMN_HELP.items():
        src.add_argument(f"--{column}-col", help=text)
    src.add_argument(
        "--domain-sep", help="table/sequences: separator inside the domain column (default |)"
    )
    src.add_argument(
        "--delimiter", help="table/sequences items: CSV delimiter (default , or tab for .tsv)"
    )

    syn = parser.add_argument_group("synthetic source")
    synthetic = SyntheticConfig()
    syn.add_argument("--num-users", "--users", type=int, default=synthetic.num_users)
    syn.add_argument("--num-items", type=int, default=synthetic.num_items)
    syn.add_argument("--num-domains", "--domains", type=int, default=synthetic.num_domains)
    syn.add_argument("--dense-domains", type=int, default=synthetic.dense_domains)
    syn.add_argument("--mean-length", type=float, default=synthetic.mean_length)
    syn.add_argument("--power-user-fraction", type=float, default=synthetic.power_user_fraction)
    syn.add_argument("--seed", type=int, default=synthetic.seed)
    return parser


# Each processing flag's type and help (names, order and defaults: IngestOptions' fields).
PROCESSING_HELP: dict[str, tuple[Callable[[str], Any], str | None]] = {
    "min_user_interactions": (
        int,
        "k-core threshold for users (leave-one-out needs at least 3: a lower value is "
        "raised to 3, with a warning, and the manifest records 3)",
    ),
    "min_item_interactions": (int, "k-core threshold for items"),
    "rating_threshold": (float, "keep interactions with rating >= this (default: keep all)"),
    "split": (str, None),  # one of SPLIT_METHODS
    "valid_fraction": (float, "global-time split: share of the time range for validation"),
    "test_fraction": (float, "global-time split: share of the time range for test"),
    "max_bad_fraction": (float, "fail when more than this fraction of rows is malformed"),
    "top_domains": (
        int,
        "keep the N largest domains (by train interactions); the rest become 'other' "
        "(default: keep all)",
    ),
    "min_domain_items": (
        int,
        "fold domains with fewer than K items into 'other' (default: keep all)",
    ),
    "train_shards": (
        int,
        "shards of the streaming training view train_view/ (one row per user, by user hash); "
        "a multiple of world size x data-loader workers of the runs that stream it; 0: none",
    ),
    "engine": (
        str,
        "processing engine: arrow (in memory, fastest when it fits), duckdb (out of core: "
        "reads MovieLens ratings and table CSV/Parquet files itself and spills to disk next to "
        "--output past --duckdb-memory-limit; other inputs through the in-memory reader) or "
        "spark (pyspark; local[2], or the cluster spark-submit gives it: "
        "components/ingest/spark_main.py); identical outputs",
    ),
    "duckdb_memory_limit": (
        str,
        "duckdb engine: memory limit of DuckDB's buffers, e.g. 4GB, 512MiB (the process needs "
        "~0.1 GB more, plus ~0.1 GB of output buffers; an input the in-memory reader reads "
        "is held in memory besides)",
    ),
    "duckdb_threads": (int, "duckdb engine: worker threads (0: one per core)"),
}

COLUMN_HELP = {
    "user": "table: user id column (default: user_id)",
    "item": "table: item id column (default: item_id)",
    "time": "table: time column: seconds, ISO date-time (Z/±HH:MM zones too) or Parquet "
    "timestamp (default: timestamp)",
    "rating": "table: rating column (default: rating, when present)",
    "domain": "domain column: table: default 'domains', in --items (or items.* next to "
    "--input), else in the interactions table itself (one value per item: the most common); "
    "sequences: default 'category' in the items CSV; other sources: not used (movielens: "
    "genres, amazon: --domain-depth, lastfm: top tag, yelp: first category / --domain-map)",
    "item-id": "table/sequences: item id column of the items table (default: item_id)",
}


SYNTHETIC_FLAGS = (
    "num_users",
    "num_items",
    "num_domains",
    "dense_domains",
    "mean_length",
    "power_user_fraction",
    "seed",
)
SOURCE_FLAGS = (
    "items",
    "domain_depth",
    "top_tags",
    "domain_map",
    "user_col",
    "item_col",
    "time_col",
    "rating_col",
    "domain_col",
    "item_id_col",
    "domain_sep",
    "delimiter",
)
PROCESSING_FLAGS = tuple(IngestOptions.__dataclass_fields__)


def _run(args: argparse.Namespace) -> None:
    options = {name: getattr(args, name) for name in PROCESSING_FLAGS}
    flags = SYNTHETIC_FLAGS if args.source == "synthetic" else SOURCE_FLAGS
    options.update({name: getattr(args, name) for name in flags if getattr(args, name) is not None})
    manifest = ingest(
        args.source,
        args.output,
        args.input,
        cache_dir=args.cache_dir,
        sha256=args.sha256,
        overwrite=args.overwrite,
        **options,
    )
    print(summary(manifest, args.output))


def summary(manifest: dict, output: str) -> str:
    counts = manifest["counts"]
    domains = manifest["domains"]
    lines = [
        f"wrote {output}: {counts['users']:,} users, {counts['items']:,} items, "
        f"{counts['interactions']:,} interactions "
        f"(train {counts.get('train_interactions', 0):,} / valid {counts.get('valid_interactions', 0):,}"
        f" / test {counts.get('test_interactions', 0):,})",
        *summary_counts(manifest),
        f"{len(domains)} domains (items): "
        + ", ".join(f"{name} {n:,}" for name, n in sorted(domains.items(), key=lambda kv: kv[1])),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_run, build_parser(), argv)
