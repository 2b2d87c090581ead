"""The spark ingest engine (issue 16) in ``local[2]``: its ``reduce`` gives exactly the arrow
engine's result (indices, timestamps, labels, item ids, counts and their order, errors) on
generated raw tables with timestamp ties, exact repeats, ids that sort numerically or as
strings, a k-core that needs several passes, a rating threshold and both split methods.
One Spark session for the module (its start-up is most of the time)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.errors import InputError
from components.ingest import engines, ingest
from components.ingest import options as ingest_options
from components.ingest.engines import arrow
from components.ingest.options import IngestOptions, effective_min_user
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("the spark engine needs Java 17", allow_module_level=True)

from components.ingest.engines import spark_engine  # noqa: E402 (after the skips)

pytestmark = pytest.mark.spark


# tuned for tiny inputs on a busy 2-core machine: fewer, smaller stages (no adaptive re-planning,
# 2 shuffle partitions) and a JVM that compiles less (C1 only): ~40% less start-up and warm-up
TINY = {
    "spark.sql.adaptive.enabled": "false",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    session, created = spark_engine.spark_session("local[2]", shuffle_partitions=2, conf=TINY)
    session.sparkContext.setLogLevel("ERROR")
    # a reliable checkpoint directory, as on a cluster: the k-core rounds use checkpoint()
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    if created:
        session.stop()


ID_KINDS = {
    "integers": lambda k: str(k * 37 % 101),  # numeric order differs from string order
    "equal-integers": lambda k: ("0" if k % 3 == 0 else "") + str(k % 40),  # "07" and "7"
    "negative": lambda k: str(k - 30),
    "strings": lambda k: ["é", "Z", "a", "ab", "A b", "10", "9"][k % 7] + str(k // 7),
    # integers but one with a final newline: Java's $ would call it an integer, RE2's does not
    "newline": lambda k: str(k) + ("\n" if k == 3 else ""),
}


def raw_table(seed: int, user_kind: str, item_kind: str, n: int = 700) -> pa.Table:
    """Users interleaved in file order, heavy timestamp ties, ~8% exact repeats, Zipf items,
    ratings 1–5 with nulls and NaNs."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 60, n)
    items = np.minimum(rng.zipf(1.6, n), 45)
    times = rng.integers(0, 25, n) * 10
    ratings: list[float | None] = [None if r == 0 else float(r) for r in rng.integers(0, 6, n)]
    for k in np.flatnonzero(rng.random(n) < 0.05):
        ratings[k] = float("nan")
    order = np.concatenate([np.arange(n), rng.choice(n, int(n * 0.08))])  # exact repeats
    return pa.table(
        [
            [ID_KINDS[user_kind](int(users[k])) for k in order],
            [ID_KINDS[item_kind](int(items[k])) for k in order],
            pa.array(times[order], pa.int64()),
            pa.array([ratings[k] for k in order], pa.float64()),
        ],
        schema=RAW_INTERACTIONS_SCHEMA,
    )


def assert_same(table: pa.Table, **options) -> dict:
    """The spark engine's Reduced equals the arrow engine's, field by field; its counts."""
    opts = IngestOptions(**options)
    min_user, _ = effective_min_user(opts)
    expected = arrow.reduce(table, opts, min_user)
    got = spark_engine.reduce(table, opts, min_user)
    for name in ("user_idx", "item_idx", "timestamp", "labels"):
        want, have = getattr(expected, name), getattr(got, name)
        assert have.dtype.kind == want.dtype.kind, name
        np.testing.assert_array_equal(have, want, err_msg=name)
    assert got.labels.dtype == np.int8
    assert got.item_ids.type == pa.string() and got.item_ids.equals(expected.item_ids)
    assert got.n_users == expected.n_users
    assert list(got.counts.items()) == list(expected.counts.items())  # values and order
    return expected.counts


def with_rare_string_item(table: pa.Table) -> pa.Table:
    """``table`` plus one row of an item id that is not an integer, seen once: the k-core drops
    it, yet (as in the arrow engine) the integer ids left then sort as strings."""
    rare = pa.table([["7"], ["rare"], pa.array([5], pa.int64()), pa.array([4.0])],
                    schema=RAW_INTERACTIONS_SCHEMA)  # fmt: skip
    return pa.concat_tables([table, rare])


def test_integer_users_and_a_removed_string_item_leave_one_out(spark, monkeypatch):
    # no checkpoint directory (a cluster without one): the rounds use localCheckpoint()
    from pyspark import SparkContext

    monkeypatch.setattr(SparkContext, "getCheckpointDir", lambda self: None)
    table = with_rare_string_item(raw_table(3, "integers", "integers"))
    counts = assert_same(table)
    assert counts["duplicates_removed"] > 0 and counts["removed_by_kcore"] > 0
    ids = arrow.reduce(table, IngestOptions(), 5).item_ids.to_pylist()
    assert "rare" not in ids and ids == sorted(ids) != sorted(ids, key=int)  # "10" < "9"


def test_equal_integer_ids_a_rating_threshold_and_the_global_time_split(spark):
    options = dict(
        rating_threshold=3.0, split="global-time", min_user_interactions=2,
        min_item_interactions=2, valid_fraction=0.2, test_fraction=0.15,
    )  # fmt: skip
    counts = assert_same(raw_table(5, "equal-integers", "negative"), **options)
    assert counts["removed_by_rating_threshold"] > 0 and counts["duplicates_removed"] > 0


def test_string_ids_and_a_kcore_of_several_passes(spark, caplog):
    checkpoints = Path(spark.sparkContext.getCheckpointDir().removeprefix("file:"))
    before = set(checkpoints.glob("rdd-*"))
    table = raw_table(7, "strings", "newline")
    with caplog.at_level(logging.INFO, logger="dwlrec.ingest"):
        assert_same(table, min_user_interactions=8, min_item_interactions=8)
    passes = [r.args[0] for r in caplog.records if "k-core converged" in r.getMessage()]
    assert passes and passes[0] >= 3  # removals in >= 2 passes, then one that removes nothing
    written = set(checkpoints.glob("rdd-*")) - before
    assert len(written) == passes[0]  # one reliable checkpoint a pass


def test_the_same_errors_as_the_arrow_engine(spark):
    table = raw_table(1, "integers", "strings")
    for options in (dict(min_user_interactions=500), dict(rating_threshold=99.0)):
        opts = IngestOptions(**options)
        min_user, _ = effective_min_user(opts)
        with pytest.raises(InputError) as expected:
            arrow.reduce(table, opts, min_user)
        with pytest.raises(InputError) as got:
            spark_engine.reduce(table, opts, min_user)
        assert str(got.value) == str(expected.value)


def test_the_engine_reuses_the_active_session(spark):
    session, created = spark_engine.spark_session()
    assert session is spark and not created  # so reduce() never stops a caller's session
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"


def test_the_job_entry_point_writes_the_arrow_engines_files(spark, tmp_path, monkeypatch, capsys):
    """``spark_main.py --source … --output …`` (what a SparkApplication runs) ingests with the
    spark engine in the session it finds: the same Parquet bytes as an arrow ingest."""
    from components.ingest import spark_main

    assert "spark" in ingest_options.ENGINES and "spark" in engines.ENGINE_MODULES
    small = dict(num_users=120, num_items=60, num_domains=4, dense_domains=2, seed=4)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in small.items()]
    out = tmp_path / "spark"
    assert spark_main.main(["--source", "synthetic", "--output", str(out), *flags]) == 0
    assert "wrote" in capsys.readouterr().out
    manifest = ingest("synthetic", tmp_path / "arrow", **small)
    spark_manifest = json.loads((out / "manifest.json").read_text())
    assert spark_manifest["options"]["engine"] == "spark"
    assert spark_manifest["files"] == manifest["files"]  # the same sha256: the same bytes
    assert spark_manifest["counts"] == manifest["counts"]
    for name in ("items.parquet", "interactions.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(tmp_path / "arrow" / name))
    assert not spark.sparkContext._jsc.sc().isStopped()  # the caller's session lives on
