"""Reference implementations of ingest's default processing, for side-by-side timing (issue 16).

Each one does exactly what ``python -m components.ingest --source movielens`` does to an ML-20M
format ``ratings.csv`` with the default options — read; stable sort by (user, time) keeping the
file's order on ties; drop exact (user, item, timestamp) repeats; iterative 5-core on users and
items; dense ids in the ids' numeric order (users 0.., items 1..); leave-one-out (a user's last
interaction is test, the one before valid); Parquet of (user_idx, item_idx, timestamp, split) —
in a few lines of the library's own idiom. ``check`` compares a result with dwlrec's
``interactions.parquet``.

    python benchmarks/ingest_references.py pandas|polars|duckdb RATINGS_CSV OUT.parquet
    (prints {"seconds", "peak_rss_mb", "rows"}; benchmarks/ingest.py runs each in its own process)
"""

from __future__ import annotations

import json
import resource
import sys
import time

MIN_USER = MIN_ITEM = 5


def run_pandas(csv: str, out: str) -> int:
    """pandas as a practised user writes it: factorised ids, bincount k-core, one stable sort."""
    import numpy as np
    import pandas as pd

    df = pd.read_csv(csv, usecols=["userId", "movieId", "timestamp"], engine="pyarrow")
    df = df.sort_values(["userId", "timestamp"], kind="stable", ignore_index=True)
    df = df.drop_duplicates(["userId", "movieId", "timestamp"], ignore_index=True)
    user_codes, _ = pd.factorize(df["userId"])
    item_codes, _ = pd.factorize(df["movieId"])
    keep = np.ones(len(df), dtype=bool)
    while True:  # iterative k-core on the codes of the rows still kept
        users = np.bincount(user_codes[keep], minlength=user_codes.max() + 1)
        items = np.bincount(item_codes[keep], minlength=item_codes.max() + 1)
        drop = keep & ((users[user_codes] < MIN_USER) | (items[item_codes] < MIN_ITEM))
        if not drop.any():
            break
        keep &= ~drop
    df = df[keep].reset_index(drop=True)
    user_idx = pd.factorize(df["userId"], sort=True)[0].astype("int32")
    item_idx = pd.factorize(df["movieId"], sort=True)[0].astype("int32") + 1
    last = df["userId"].ne(df["userId"].shift(-1)).to_numpy()
    split = np.full(len(df), "train", dtype=object)
    split[last] = "test"
    split[np.flatnonzero(last) - 1] = "valid"
    result = pd.DataFrame(
        {"user_idx": user_idx, "item_idx": item_idx, "timestamp": df["timestamp"], "split": split}
    )
    result.to_parquet(out, index=False)
    return len(result)


def run_polars(csv: str, out: str) -> int:
    import polars as pl

    df = pl.read_csv(csv, columns=["userId", "movieId", "timestamp"])
    df = df.with_row_index("row").sort(["userId", "timestamp", "row"])
    df = df.unique(["userId", "movieId", "timestamp"], keep="first", maintain_order=True)
    while True:
        counted = df.with_columns(
            pl.len().over("userId").alias("u"), pl.len().over("movieId").alias("i")
        )
        kept = counted.filter((pl.col("u") >= MIN_USER) & (pl.col("i") >= MIN_ITEM))
        if kept.height == df.height:
            break
        df = kept.drop("u", "i")
    last = pl.col("userId") != pl.col("userId").shift(-1).fill_null(-1)
    df = df.with_columns(
        (pl.col("userId").rank("dense") - 1).cast(pl.Int32).alias("user_idx"),
        pl.col("movieId").rank("dense").cast(pl.Int32).alias("item_idx"),
        pl.when(last)
        .then(pl.lit("test"))
        .when(last.shift(-1).fill_null(False))
        .then(pl.lit("valid"))
        .otherwise(pl.lit("train"))
        .alias("split"),
    )
    df.select("user_idx", "item_idx", "timestamp", "split").write_parquet(out)
    return df.height


def run_duckdb(csv: str, out: str) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute(
        f"""CREATE TEMP TABLE t AS
        SELECT userId, movieId, timestamp, row_number() OVER () AS row
        FROM read_csv('{csv}', header = true)"""
    )
    con.execute(
        """CREATE TEMP TABLE d AS SELECT * FROM t QUALIFY row_number() OVER
        (PARTITION BY userId, movieId, timestamp ORDER BY row) = 1"""
    )
    while True:
        before = con.execute("SELECT count(*) FROM d").fetchone()[0]
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE d AS SELECT * FROM d
            WHERE userId IN (SELECT userId FROM d GROUP BY 1 HAVING count(*) >= {MIN_USER})
              AND movieId IN (SELECT movieId FROM d GROUP BY 1 HAVING count(*) >= {MIN_ITEM})"""
        )
        if con.execute("SELECT count(*) FROM d").fetchone()[0] == before:
            break
    con.execute(
        f"""COPY (
          SELECT (dense_rank() OVER (ORDER BY userId) - 1)::INT AS user_idx,
                 (dense_rank() OVER (ORDER BY movieId))::INT AS item_idx, timestamp,
                 CASE row_number() OVER w WHEN 1 THEN 'test' WHEN 2 THEN 'valid' ELSE 'train' END
                   AS split
          FROM d WINDOW w AS (PARTITION BY userId ORDER BY timestamp DESC, row DESC)
          ORDER BY userId, timestamp, row
        ) TO '{out}' (FORMAT parquet)"""
    )
    return con.execute("SELECT count(*) FROM d").fetchone()[0]


RUNNERS = {"pandas": run_pandas, "polars": run_polars, "duckdb": run_duckdb}


def check(reference: str, dwlrec_interactions: str) -> bool:
    """Whether a reference output holds exactly dwlrec's rows, in dwlrec's order."""
    import pyarrow.parquet as pq

    names = ["user_idx", "item_idx", "timestamp", "split"]
    ours = pq.read_table(dwlrec_interactions, columns=names)
    theirs = pq.read_table(reference, columns=names)
    return all(
        ours.column(n).to_numpy(zero_copy_only=False).astype(str).tolist()
        == theirs.column(n).to_numpy(zero_copy_only=False).astype(str).tolist()
        for n in names
    )


def main(argv: list[str]) -> int:
    engine, csv, out = argv
    started = time.perf_counter()
    rows = RUNNERS[engine](csv, out)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
