"""The cluster engine (``--engine spark``): the arrow engine's processing as a PySpark job.

The raw Arrow table goes in through ``createDataFrame`` (Arrow transfer), the result comes back
through ``toArrow()``; everything between is distributed. How each step matches the arrow
engine (tests/test_ingest_spark.py checks equality):

- rating threshold: ``rating >= t`` and not NaN (Spark, unlike Arrow, orders NaN above every
  number, so ``NaN >= t`` is true there);
- exact repeats: one row per (user, item, timestamp), the first in file order (min pos);
- k-core: a driver-side loop of one-pass filters (counts of the previous round's rows), each
  round checkpointed so the plan stays one round long, until a round removes nothing;
- natural order of ids: integer order when every id left after the threshold matches
  ``-?[0-9]{1,18}`` (equal values, "01" and "1", by first appearance), else byte order;
  dense ids by sorting the kept distinct ids and ``zipWithIndex`` (never an unpartitioned
  window);
- leave-one-out: ``row_number()`` over (user, timestamp desc, pos desc): 1 test, 2 valid;
- global time: the cut timestamps at the positions ``np.quantile(method="higher")`` picks,
  found by a sort and ``zipWithIndex``;
- final order: (user_idx, timestamp, pos), i.e. the stable sort.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from components.ingest.engines.base import (
    Reduced,
    check_kcore_left,
    check_rating_left,
    global_time_cut_positions,
)
from components.ingest.options import IngestOptions

if TYPE_CHECKING:  # pyspark is an optional extra: imported when the engine runs
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger("dwlrec.ingest")

# Java's find() with ^…\z: the arrow engine's RE2 ^-?[0-9]{1,18}$ ($ in Java also matches
# before a final newline, RE2's does not)
INTEGER_ID = r"^-?[0-9]{1,18}\z"
DEFAULT_MASTER = "local[2]"
DEFAULT_SHUFFLE_PARTITIONS = 8  # small: the local and test default; a cluster sets its own
# a local session's JVM holds the input's rows in its heap: pyspark's 1g ran out of memory at
# 1M interactions (measured); a cluster's driver memory is the SparkApplication's
DEFAULT_LOCAL_DRIVER_MEMORY = "4g"


def spark_session(
    master: str | None = None,
    shuffle_partitions: int | None = None,
    conf: dict[str, str] | None = None,
) -> tuple[SparkSession, bool]:
    """The active session, or a new one; and whether it was created here (then the caller
    stops it). ``master`` None: the one spark-submit configured (a Spark Operator or Dataproc
    driver), else ``local[2]``; ``conf``: more settings for a new session."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    # spark-submit starts the Python driver with a gateway to its JVM: its conf holds the master
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName("dwlrec-ingest")
    if master or not submitted:
        builder = builder.master(master or DEFAULT_MASTER)
    if not submitted:  # the JVM starts here: its heap is set now or never
        builder = builder.config("spark.driver.memory", DEFAULT_LOCAL_DRIVER_MEMORY)
    if shuffle_partitions or not submitted:
        partitions = shuffle_partitions or DEFAULT_SHUFFLE_PARTITIONS
        builder = builder.config("spark.sql.shuffle.partitions", str(partitions))
    builder = (
        builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate(), True


def reduce(
    table: pa.Table, options: IngestOptions, min_user: int, scratch: Path | None = None
) -> Reduced:
    """Rating threshold → exact-repeat dedup → iterative k-core → dense re-index → split."""
    # IngestOptions.spark_master when the options have it; else $DWLREC_SPARK_MASTER
    master = getattr(options, "spark_master", None) or os.environ.get("DWLREC_SPARK_MASTER")
    spark, created = spark_session(master)
    cached: list[DataFrame] = []
    try:
        return _run(spark, table, options, min_user, cached)
    finally:
        for frame in cached:  # a reused session (a test's, a notebook's) keeps no leftovers
            frame.unpersist()
        if created:
            spark.stop()


def _run(
    spark: SparkSession,
    table: pa.Table,
    options: IngestOptions,
    min_user: int,
    cached: list[DataFrame],
) -> Reduced:
    from pyspark.sql import functions as F

    def persist(frame: DataFrame) -> DataFrame:
        """Cached: read again by the counts and joins that follow (not recomputed)."""
        cached.append(frame.persist())
        return frame

    counts = {"removed_by_rating_threshold": 0}
    n_parsed = table.num_rows
    # the original row number: the last key of the stable sort (file order)
    raw = table.select(["user_id", "item_id", "timestamp", "rating"]).append_column(
        "pos", pa.array(np.arange(n_parsed, dtype=np.int64))
    )
    rows = spark.createDataFrame(raw)
    if options.rating_threshold is not None:
        rating = F.col("rating")
        rows = rows.filter((rating >= float(options.rating_threshold)) & ~F.isnan(rating))
    rows = persist(rows.select(F.col("user_id").alias("u"), F.col("item_id").alias("i"),
                                F.col("timestamp").alias("t"), "pos"))  # fmt: skip
    # one pass: the rows left, and whether every id left is an integer (the natural order is
    # decided on these, before the k-core, as the arrow engine decides it on its dictionary)
    stats = rows.agg(
        F.count("*"),
        F.bool_and(F.col("u").rlike(INTEGER_ID)),
        F.bool_and(F.col("i").rlike(INTEGER_ID)),
    ).first()
    assert stats is not None  # an aggregate without grouping has one row
    n_kept, integer_users, integer_items = int(stats[0]), bool(stats[1]), bool(stats[2])
    if options.rating_threshold is not None:
        check_rating_left(n_kept, options.rating_threshold)
        counts["removed_by_rating_threshold"] = n_parsed - n_kept

    # each id's first appearance after the threshold: the order of ids of equal integer value
    user_ids = persist(rows.groupBy("u").agg(F.min("pos").alias("first_pos")))
    item_ids = persist(rows.groupBy("i").agg(F.min("pos").alias("first_pos")))

    cur = persist(rows.groupBy("u", "i", "t").agg(F.min("pos").alias("pos")))
    n_before_kcore = cur.count()
    counts["duplicates_removed"] = n_kept - n_before_kcore

    cur = _kcore(cur, n_before_kcore, min_user, options.min_item_interactions)
    n_left = cur.count()
    counts["removed_by_kcore"] = n_before_kcore - n_left
    check_kcore_left(n_left, n_before_kcore, min_user, options)

    kept_users = user_ids.join(cur.select("u").distinct(), "u")
    kept_items = item_ids.join(cur.select("i").distinct(), "i")
    users = persist(_dense(kept_users, "u", integer_users, start=0))
    items = persist(_dense(kept_items, "i", integer_items, start=1))
    item_names = items.orderBy("idx").select("i").toArrow()
    n_users = users.count()

    coded = cur.join(users.withColumnRenamed("idx", "user_idx"), "u").join(
        items.withColumnRenamed("idx", "item_idx"), "i"
    )
    result = (
        coded.select("user_idx", "item_idx", "t", "pos", _label(cur, options, n_left))
        .orderBy("user_idx", "t", "pos")
        .select("user_idx", "item_idx", F.col("t").alias("timestamp"), "label")
        .toArrow()
    )
    return Reduced(
        user_idx=_numpy(result, "user_idx", np.int64),
        item_idx=_numpy(result, "item_idx", np.int64),
        timestamp=_numpy(result, "timestamp", np.int64),
        labels=_numpy(result, "label", np.int8),
        item_ids=item_names.column(0).combine_chunks().cast(pa.string()),
        n_users=n_users,
        counts=counts,
    )


def _kcore(cur: DataFrame, n: int, min_user: int, min_item: int) -> DataFrame:
    """One-pass filters until a pass removes nothing: each keeps the rows whose user and item
    both have enough rows in the previous pass's result (the arrow engine's rounds)."""
    from pyspark.sql import functions as F

    rounds = 0
    while True:
        good_users = cur.groupBy("u").count().filter(F.col("count") >= min_user).select("u")
        good_items = cur.groupBy("i").count().filter(F.col("count") >= min_item).select("i")
        kept = cur.join(good_users, "u", "left_semi").join(good_items, "i", "left_semi")
        kept = _checkpoint(kept)  # cut the lineage: the next round's plan starts here
        n_kept = kept.count()
        rounds += 1
        cur.unpersist()
        if n_kept == n:
            log.info("spark engine: k-core converged after %d pass(es)", rounds)
            return kept
        cur, n = kept, n_kept


def _checkpoint(frame: DataFrame) -> DataFrame:
    """``checkpoint()`` to the configured reliable directory (a cluster's), else a local one."""
    context = frame.sparkSession.sparkContext
    if context.getCheckpointDir():
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def _dense(ids: DataFrame, key: str, integers: bool, start: int) -> DataFrame:
    """``key`` → ``idx`` (``start``, ``start`` + 1, …) in the ids' natural order: the ids sorted
    (a range-partitioned global sort), then ``zipWithIndex`` (partition by partition, in the
    JVM: no Python workers)."""
    from pyspark.sql import functions as F

    order = [F.col(key).cast("bigint"), "first_pos"] if integers else [key]
    ranked = ids.orderBy(*order).select(key).zipWithIndex("idx")
    return ranked.select(key, (F.col("idx") + start).alias("idx"))


def _label(cur: DataFrame, options: IngestOptions, n: int) -> Column:
    """The split label (0 train, 1 valid, 2 test) of a row of ``cur``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if options.split == "leave-one-out":
        # every kept user has >= 3 interactions, so rows 1 and 2 are a test and a valid one
        last = F.row_number().over(
            Window.partitionBy("u").orderBy(F.col("t").desc(), F.col("pos").desc())
        )
        label = F.when(last == 1, 2).when(last == 2, 1).otherwise(0)
    else:
        valid_at, test_at = global_time_cut_positions(n, options)
        wanted = {valid_at, test_at}
        ranked = cur.select("t").orderBy("t").zipWithIndex("at")
        cuts = {row["at"]: row["t"] for row in ranked.filter(F.col("at").isin(*wanted)).collect()}
        t = F.col("t")
        label = F.when(t >= cuts[test_at], 2).when(t >= cuts[valid_at], 1).otherwise(0)
    return label.cast("tinyint").alias("label")


def _numpy(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    column = table.column(name).combine_chunks()
    return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
