"""The ingest engines (issue 16): ``--engine arrow`` and ``--engine duckdb`` give identical
``items`` / ``interactions`` tables (schema and values) and identical manifest counts for the
same input and options — for every source format, with timestamp ties, exact repeats, ids that
sort numerically or as strings, and every processing option — and the same errors."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import fixtures_formats as fx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.errors import ConfigError, InputError
from components.ingest import engines, ingest, synthetic
from components.ingest.cli import build_parser
from components.ingest.core import IngestOptions, process
from components.ingest.engines.base import global_time_cut_positions
from components.ingest.options import ENGINES
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA, RawData
from components.ingest.sources import READERS

pytest.importorskip("duckdb")

OPTION_SETS = {
    "defaults": {},
    "loose-3": dict(min_user_interactions=1, min_item_interactions=1),  # raised to 3 (LOO)
    "kcore-4-6": dict(min_user_interactions=4, min_item_interactions=6),
    "global-time": dict(
        split="global-time", min_user_interactions=2, min_item_interactions=2,
        valid_fraction=0.2, test_fraction=0.15,
    ),
    "rating-3": dict(rating_threshold=3.0, min_user_interactions=3, min_item_interactions=2),
    "domains": dict(top_domains=2, min_domain_items=2, min_user_interactions=3),
}  # fmt: skip


def run_both(raw: RawData, **options) -> dict:
    """Each engine's Processed, or the (type, message) of the error it raised."""
    results: dict = {}
    for engine in ("arrow", "duckdb"):
        try:
            results[engine] = process(raw, IngestOptions(engine=engine, **options))
        except (ConfigError, InputError) as exc:
            results[engine] = (type(exc).__name__, str(exc))
    return results


def assert_same(raw: RawData, **options) -> None:
    arrow, duck = run_both(raw, **options).values()
    if isinstance(arrow, tuple) or isinstance(duck, tuple):
        assert arrow == duck  # the same error, word for word
        return
    assert duck.interactions.schema == arrow.interactions.schema
    assert duck.items.schema == arrow.items.schema
    assert duck.interactions.equals(arrow.interactions)
    assert duck.items.equals(arrow.items)
    assert duck.counts == arrow.counts
    assert list(duck.counts) == list(arrow.counts)  # the manifest's bytes too
    assert duck.notes == arrow.notes
    assert {**duck.options, "engine": "arrow"} == arrow.options


# --------------------------------------------------------------------------- every source format


def tied_plan(seed: int = 0, n_users: int = 40) -> list[tuple[int, int, int, float]]:
    """A log for fixtures_formats' writers (items 1..6): 2–12 events per user (users interleaved
    in file order), timestamps on a coarse grid (ties), exact repeats and rare items, so that
    dedup, the k-core's iterations and the stable sort all matter."""
    rng = random.Random(seed)
    plan = []
    for user in range(1, n_users + 1):
        for _ in range(rng.randint(2, 12)):
            item = rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6]) if user % 7 else rng.choice([5, 6])
            time = 1_000_000_000 + 86_400 * user + 3600 * rng.randint(0, 4)
            plan.append((user, item, time, float(rng.randint(1, 5))))
    plan += [plan[k] for k in rng.sample(range(len(plan)), 25)]  # exact repeats
    rng.shuffle(plan)
    return plan


FORMATS = {
    "movielens-100k": ("movielens", fx.write_ml100k),
    "movielens-1m": ("movielens", fx.write_ml1m),
    "movielens-20m": ("movielens", fx.write_ml20m),
    "amazon-2014": ("amazon", fx.write_amazon_2014),
    "amazon-2018-csv": ("amazon", fx.write_amazon_2018_csv),
    "amazon-2023": ("amazon", fx.write_amazon_2023),
    "yelp": ("yelp", fx.write_yelp),
    "lastfm": ("lastfm", fx.write_lastfm),
    "sequences": ("sequences", fx.write_sequences),
    "table-csv": ("table", fx.write_table_csv),
    "table-parquet": ("table", fx.write_table_parquet),
}
TABLE_CSV_OPTIONS = {"user_col": "uid", "item_col": "sku", "time_col": "ts", "rating_col": "stars"}


@pytest.mark.parametrize("name", FORMATS)
def test_every_source_format_gives_identical_tables(tmp_path, monkeypatch, name):
    source, write = FORMATS[name]
    plan = tied_plan(seed=len(name))
    monkeypatch.setattr(fx, "PLAN", plan)  # the writers read these at call time
    monkeypatch.setattr(fx, "REVIEWERS", {u: f"A{u:013d}" for u, _, _, _ in plan})
    reader_options = TABLE_CSV_OPTIONS if name == "table-csv" else {}
    raw = READERS[source](write(tmp_path), dict(reader_options))
    assert raw.interactions.num_rows > 100
    for options in OPTION_SETS.values():
        assert_same(raw, **options)


def test_the_synthetic_source_gives_identical_tables():
    config = synthetic.SyntheticConfig(num_users=300, num_items=120, mean_length=10, seed=5)
    raw = synthetic.generate(config)
    for options in OPTION_SETS.values():
        assert_same(raw, **{k: v for k, v in options.items() if k != "rating_threshold"})


# --------------------------------------------------------------------------- generated raw tables

ID_KINDS = {
    "integers": lambda k: str(k * 37 % 101),  # numeric order differs from string order
    "equal-integers": lambda k: ("0" if k % 3 == 0 else "") + str(k % 40),  # "07" and "7"
    "negative": lambda k: str(k - 30),
    "strings": lambda k: ["é", "Z", "a", "ab", "A b", "10", "9"][k % 7] + str(k // 7),
    "mixed": lambda k: str(k) if k % 11 else f"x{k}",  # one non-integer: string order
}


def random_raw(seed: int, user_kind: str, item_kind: str, n: int = 600) -> RawData:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 60, n)
    items = np.minimum(rng.zipf(1.6, n), 45)
    times = rng.integers(0, 25, n) * 10  # heavy ties
    ratings = rng.integers(0, 6, n).astype(float)
    ratings[rng.random(n) < 0.05] = np.nan  # NaN never passes a threshold
    rating_list = [None if r == 0 else float(r) for r in ratings]  # and nulls
    repeat = np.flatnonzero(rng.random(n) < 0.08)
    order = np.concatenate([np.arange(n), rng.choice(n, len(repeat))])  # exact repeats
    table = pa.table(
        [
            [ID_KINDS[user_kind](int(users[k])) for k in order],
            [ID_KINDS[item_kind](int(items[k])) for k in order],
            pa.array(times[order], pa.int64()),
            pa.array([rating_list[k] for k in order], pa.float64()),
        ],
        schema=RAW_INTERACTIONS_SCHEMA,
    )
    return RawData(interactions=table, items=None, rows_read=table.num_rows)


@pytest.mark.parametrize("user_kind", list(ID_KINDS))
def test_generated_tables_with_ties_repeats_and_every_id_kind(user_kind):
    kinds = list(ID_KINDS)
    at = kinds.index(user_kind)
    pair = (user_kind, kinds[(at + 1) % len(kinds)])  # every kind is an item kind twice
    for seed, item_kind in enumerate(pair):
        raw = random_raw(seed, user_kind, item_kind)
        for options in OPTION_SETS.values():
            assert_same(raw, **options)
        assert_same(raw, min_user_interactions=8, min_item_interactions=8)  # many k-core rounds


def test_both_engines_raise_the_same_errors():
    raw = random_raw(1, "integers", "strings")
    # the k-core removes everything; the rating threshold removes everything
    assert_same(raw, min_user_interactions=500)
    assert_same(raw, rating_threshold=99.0)
    no_ratings = RawData(
        interactions=raw.interactions.set_column(
            3, "rating", pa.nulls(raw.interactions.num_rows, pa.float64())
        ),
        items=None,
        rows_read=raw.rows_read,
    )
    assert run_both(no_ratings, rating_threshold=3.0)["duckdb"] == (
        "ConfigError",
        "--rating-threshold given but this source has no ratings",
    )
    assert_same(no_ratings, rating_threshold=3.0)


@pytest.mark.parametrize("n", [3, 4, 7, 10, 11, 99, 1000, 12345])
def test_the_global_time_cut_positions_are_numpys(n):
    for valid, test in ((0.1, 0.1), (0.2, 0.15), (0.33, 0.33), (0.05, 0.01)):
        options = IngestOptions(split="global-time", valid_fraction=valid, test_fraction=test)
        values = np.arange(n) * 3
        expected = np.quantile(values, [1 - valid - test, 1 - test], method="higher") // 3
        assert global_time_cut_positions(n, options) == tuple(expected.tolist())


# --------------------------------------------------------------------------- end to end, options


def test_ingest_writes_the_same_files_and_manifest_counts(tmp_path):
    small = dict(num_users=200, num_items=80, num_domains=5, dense_domains=2, seed=2)
    manifests = {
        engine: ingest("synthetic", tmp_path / engine, engine=engine, **small)
        for engine in ("arrow", "duckdb")
    }
    for name in ("items.parquet", "interactions.parquet"):
        arrow, duck = (pq.read_table(tmp_path / e / name) for e in ("arrow", "duckdb"))
        assert duck.equals(arrow) and duck.schema == arrow.schema
    assert manifests["duckdb"]["counts"] == manifests["arrow"]["counts"]
    assert manifests["duckdb"]["files"] == manifests["arrow"]["files"]  # same bytes written
    assert manifests["duckdb"]["training_view"] == manifests["arrow"]["training_view"]
    recorded = json.loads((tmp_path / "duckdb" / "manifest.json").read_text())["options"]
    assert recorded["engine"] == "duckdb" and recorded["duckdb_memory_limit"] == "4GB"
    # the scratch directory next to the output is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow", "duckdb"]


def test_engine_options_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="--engine 'beam'"):
        IngestOptions(engine="beam")
    for bad in ("lots", "4 G", "", "-1GB"):
        with pytest.raises(ConfigError, match="--duckdb-memory-limit"):
            IngestOptions(duckdb_memory_limit=bad)
    IngestOptions(duckdb_memory_limit="512MiB")
    IngestOptions(duckdb_memory_limit="1.5gb")
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="--duckdb-threads"):
            IngestOptions(duckdb_threads=bad)
    with pytest.raises(ConfigError, match="--engine"):
        engines.get_engine("beam")
    assert set(engines.ENGINE_MODULES) == set(ENGINES)  # every engine named has a module


def test_cli_has_the_engine_flags_from_the_options():
    args = build_parser().parse_args(
        ["--source", "synthetic", "--output", "x", "--engine", "duckdb",
         "--duckdb-memory-limit", "200MB", "--duckdb-threads", "1"]
    )  # fmt: skip
    assert (args.engine, args.duckdb_memory_limit, args.duckdb_threads) == ("duckdb", "200MB", 1)
    defaults = build_parser().parse_args(["--source", "synthetic", "--output", "x"])
    assert defaults.engine == IngestOptions().engine == "arrow"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--source", "synthetic", "--output", "x", "--engine", "x"])


def test_duckdb_spills_under_a_small_limit_with_one_thread(tmp_path, caplog):
    """A 1M-row log (~24 MB of codes in each of DuckDB's interaction tables) under a 64 MB
    limit, one thread: tables go to disk, and the output is the arrow engine's. (Far smaller
    limits, ~16-24 MB, can fail: some of DuckDB's operators need a few MB each.)"""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ingest_duckdb_memory import generate

    raw = RawData(interactions=generate(1_000_000, seed=3), items=None, rows_read=1_000_000)
    small = IngestOptions(engine="duckdb", duckdb_memory_limit="64MB", duckdb_threads=1)
    with caplog.at_level(logging.INFO, logger="dwlrec.ingest"):
        duck = process(raw, small, scratch=Path(tmp_path) / "out")
    spilled = [r.args[0] for r in caplog.records if "spilled to disk" in r.getMessage()]
    assert spilled and spilled[0] > 4  # MB
    arrow = process(raw, IngestOptions())
    assert duck.interactions.equals(arrow.interactions) and duck.items.equals(arrow.items)
    assert duck.counts == arrow.counts and duck.counts["duplicates_removed"] > 0
    assert list(tmp_path.iterdir()) == []  # scratch removed


# --------------------------------------------------------------------------- out of core (native)
# With --engine duckdb, MovieLens ratings files and table CSV/Parquet inputs are read by DuckDB
# itself and the output streamed into the files (components/ingest/native/): the same bytes.


def write_table_csv_domains(root: Path) -> Path:
    """A table CSV without an items table: the domain column repeated on the events (with
    conflicting and empty values), as fixtures_formats' other writers use PLAN."""
    lines = ["user,item,ts,rating,cat"]
    for k, (u, i, t, r) in enumerate(fx.PLAN):
        cat = fx.SEQ_DOMAINS[i] if k % 5 else ["Other", " Makeup | Tools ", ""][k % 3]
        lines.append(f"u{u},i{i},{t},{r},{cat}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "events.csv").write_text("\n".join(lines) + "\n")
    return root / "events.csv"


def write_table_parquet_domains(root: Path) -> Path:
    """Parquet events with integer ids, float-seconds times, NaN/null ratings and list domains."""
    root.mkdir(parents=True, exist_ok=True)
    rows = fx.PLAN
    pq.write_table(
        pa.table({
            "user_id": pa.array([u for u, _, _, _ in rows], pa.int32()),
            "item_id": [f"sku{i}" for _, i, _, _ in rows],
            "timestamp": pa.array([t + 0.5 for _, _, t, _ in rows], pa.float64()),
            "rating": [None if k % 11 == 0 else r for k, (_, _, _, r) in enumerate(rows)],
            "domains": [fx.SEQ_DOMAINS[i].split("|") if k % 4 else [] for k, (_, i, _, _)
                        in enumerate(rows)],
        }),
        root / "interactions.parquet",
        row_group_size=64,
    )  # fmt: skip
    return root


NATIVE_FORMATS = {
    "movielens-100k": ("movielens", fx.write_ml100k, {}),
    "movielens-100k-zip": ("movielens", fx.write_ml100k_zip, {}),
    "movielens-1m": ("movielens", fx.write_ml1m, {}),
    "movielens-20m": ("movielens", fx.write_ml20m, {}),
    "movielens-20m-gz": ("movielens", lambda root: fx.write_ml20m(root, gz=True), {}),
    "table-csv": ("table", fx.write_table_csv, TABLE_CSV_OPTIONS),
    "table-csv-domains": (
        "table",
        write_table_csv_domains,
        {"user_col": "user", "item_col": "item", "time_col": "ts", "domain_col": "cat"},
    ),
    "table-parquet": ("table", fx.write_table_parquet, {}),
    "table-parquet-domains": ("table", write_table_parquet_domains, {}),
}
SAME_KEYS = ("files", "training_view", "counts", "bad_examples", "domains", "source_files")


def ingest_both(source: str, input_path, out: Path, caplog, **options) -> dict:
    """Each engine's manifest (or its error); the duckdb run must take the out-of-core path."""
    results: dict = {}
    for engine in ("arrow", "duckdb"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dwlrec.ingest"):
            try:
                results[engine] = ingest(
                    source, out / engine, str(input_path), engine=engine, **options
                )
            except (ConfigError, InputError) as exc:
                results[engine] = (type(exc).__name__, str(exc))
        if engine == "duckdb":
            results["log"] = caplog.text
    return results


def assert_same_files(results: dict) -> None:
    arrow, duck = results["arrow"], results["duckdb"]
    if isinstance(arrow, tuple) or isinstance(duck, tuple):
        assert arrow == duck  # the same error, word for word
        return
    for key in SAME_KEYS:
        assert duck.get(key) == arrow.get(key), key  # files: the same sha256, the same bytes
    assert list(duck["counts"]) == list(arrow["counts"])
    assert {**duck["options"], "engine": "arrow"} == arrow["options"]
    assert {k: v for k, v in duck.items() if k not in ("options", "versions")} == {
        k: v for k, v in arrow.items() if k not in ("options", "versions")
    }


@pytest.mark.parametrize("name", NATIVE_FORMATS)
def test_the_out_of_core_path_writes_the_same_files(tmp_path, monkeypatch, caplog, name):
    source, write, reader_options = NATIVE_FORMATS[name]
    monkeypatch.setattr(fx, "PLAN", tied_plan(seed=len(name)))
    input_path = write(tmp_path / "input")
    written = 0
    for label, options in OPTION_SETS.items():
        results = ingest_both(source, input_path, tmp_path / label, caplog,
                              **reader_options, **options)  # fmt: skip
        assert "(DuckDB)" in results["log"] and "in-memory reader" not in results["log"]
        assert_same_files(results)
        written += isinstance(results["arrow"], dict)
    assert written >= len(OPTION_SETS) - 1  # (table-parquet has no ratings to threshold)
