"""``--engine duckdb`` out of core (issue 16, components/ingest/native/): DuckDB reads MovieLens
ratings files and table CSV/Parquet inputs itself and the output is streamed into the files.

- malformed rows are skipped, counted and named ``FILE:LINE: reason`` exactly as the readers do
  (the same manifest, the same errors);
- an input holding something only the in-memory reader knows how to handle falls back to it,
  with a log line saying why, and still gives the same files;
- an input several times larger than ``--duckdb-memory-limit`` spills and gives the arrow
  engine's bytes.

The same-bytes check over every format and option set is in tests/test_ingest_engines.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_ingest_engines import assert_same_files, ingest_both

pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parents[1]
BAD = dict(max_bad_fraction=0.5, min_user_interactions=3, min_item_interactions=2)


def ratings_csv(root: Path, extra: list[str] | None = None, data: bytes = b"") -> Path:
    """An ML-20M-format ratings.csv (+ movies.csv): 40 users, ties, the ``extra`` lines spread
    through it, ``data`` appended as bytes."""
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 41):
        for k in range(3 + user % 7):
            lines.append(f"{user},{(user * 7 + k * 3) % 13 + 1},{(k % 9 + 1) / 2},{100 * (k // 2)}")
    for n, line in enumerate(extra or []):
        lines.insert(2 + 17 * n, line)
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.csv").write_bytes(("\n".join(lines) + "\n").encode() + data)
    movies = ["movieId,title,genres"] + [f'{i},"Movie {i}, The",Drama|Comedy' for i in range(1, 14)]
    (root / "movies.csv").write_text("\n".join(movies) + "\n")
    return root


MALFORMED_ML = [
    "7,3,abc,1000",  # non-numeric rating
    ",3,4.0,1000",  # empty user id
    "8,4,nan,1000",  # non-finite rating
    "9,5,1e400,1000",  # beyond float
    "10,5,4.0,12.5",  # a float timestamp (MovieLens: integer seconds)
    "",  # a blank line: not a row at all
    ",,,",  # empty fields only: dropped unseen, as pyarrow's blank rows
    '11,"3",4.0,1000',  # quoted: fine
    "12,3,,1000",  # empty rating
    "13,tt1,4,5",  # a non-integer item id
    "14,3,Infinity,7",
    '"",3,4,5',
    "15,3,4,99999999999999999999",  # beyond int64
]


def table_csv(root: Path, extra: list[str] | None = None) -> Path:
    lines = ["user,item,ts,rating,cat"]
    times = ["{t}", "2020-01-0{d}", "2020-01-0{d} 10:00:0{d}", "2020-01-01T10:00:0{d}", "{t}.7"]
    for user in range(1, 41):
        for k in range(3 + user % 7):
            when = times[(user + k) % 5].format(t=1_000_000 + 10 * k, d=k % 9 + 1)
            rating = ["4.0", "", "3"][k % 3]
            cat = ["A", "B|C", " A ", "", "B"][(user * k) % 5]
            lines.append(f"u{user},i{(user * 7 + k * 3) % 13 + 1},{when},{rating},{cat}")
    for n, line in enumerate(extra or []):
        lines.insert(2 + 17 * n, line)
    root.mkdir(parents=True, exist_ok=True)
    (root / "events.csv").write_text("\n".join(lines) + "\n")
    return root / "events.csv"


TABLE_OPTIONS = {"user_col": "user", "item_col": "item", "time_col": "ts", "domain_col": "cat"}
MALFORMED_TABLE = [
    "u7,i3,N/A,1,A",  # not a time
    ",i3,1000,1,A",  # empty user id
    "u8,i4,1000,nan,B",  # non-finite rating
    "  ,i5,1000,1,A",  # a blank user id
    ",,,,",  # blank: dropped unseen
    ",,,,X",  # empty ids, a domain: malformed
    "u9,i3,,2,A",  # empty time
    "u10,i4,1e999,2,A",  # a time beyond int64
    "u11,i4,12345678901234567890123,2,A",
]


def events_parquet(root: Path) -> Path:
    rows: list[tuple[str | None, str, str, float]] = []
    for user in range(1, 41):
        for k in range(3 + user % 7):
            rows.append((f"u{user}", f"i{(user * 7 + k) % 13}", str(1_000_000 + 10 * k), 4.0))
    rows[3] = (None, "i1", "1000", 1.0)  # missing user
    rows[7] = ("u3", "  ", "1000", 1.0)  # blank item
    rows[9] = ("u3", "i1", "soon", 1.0)  # not a time
    rows[12] = ("u4", "i1", "2021-03-04", float("nan"))  # NaN rating
    rows[15] = ("", "i2", "1000", 1.0)  # empty user
    rows[20] = ("u5", "i2", "", 2.0)  # empty time
    users, items, times, ratings = zip(*rows, strict=True)
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"user_id": users, "item_id": items, "timestamp": times, "rating": ratings}),
        root / "interactions.parquet",
    )
    return root


@pytest.mark.parametrize("case", ["movielens", "table-csv", "table-parquet"])
def test_malformed_rows_are_counted_and_named_as_by_the_reader(tmp_path, caplog, case):
    if case == "movielens":
        results = ingest_both(
            "movielens", ratings_csv(tmp_path / "in", MALFORMED_ML), tmp_path, caplog, **BAD
        )
    elif case == "table-csv":
        path = table_csv(tmp_path / "in", MALFORMED_TABLE)
        results = ingest_both("table", path, tmp_path, caplog, **TABLE_OPTIONS, **BAD)
    else:
        results = ingest_both("table", events_parquet(tmp_path / "in"), tmp_path, caplog, **BAD)
    assert "(DuckDB)" in results["log"] and "in-memory reader" not in results["log"]
    assert_same_files(results)
    manifest = results["duckdb"]
    assert manifest["counts"]["bad_rows"] >= 4 and len(manifest["bad_examples"]) == 5
    # and past --max-bad-fraction, the same error naming the same lines
    strict = {**BAD, "max_bad_fraction": 0.001}
    if case == "movielens":
        path = ratings_csv(tmp_path / "in", MALFORMED_ML)
        results = ingest_both("movielens", path, tmp_path / "strict", caplog, **strict)
    elif case == "table-csv":
        path = table_csv(tmp_path / "in", MALFORMED_TABLE)
        results = ingest_both("table", path, tmp_path / "strict", caplog,
                              **TABLE_OPTIONS, **strict)  # fmt: skip
    else:
        path = events_parquet(tmp_path / "in")
        results = ingest_both("table", path, tmp_path / "strict", caplog, **strict)
    assert results["duckdb"][0] == "InputError" and ":" in results["duckdb"][1]
    assert_same_files(results)


FALLBACKS = {
    # a row with the wrong number of fields: DuckDB's reader refuses the file
    "field-count": ("movielens", ["5,3,4.0,100,7"], b""),
    # invalid UTF-8 on one line: the reader names that line
    "invalid-utf8": ("movielens", [], b"5,3,4.0,100\xff\n"),
    # an id pyarrow's int64 cast takes (0x10) when the whole column casts
    "hex-id": ("movielens", ["5,0x10,4.0,100"], b""),
    # a quoted line break: pyarrow does not read it as one field
    "line-break": ("movielens", [], b'5,"3\n",4.0,100\n'),
    # a zoned ISO time and a date pyarrow rolls over (Feb 30th)
    "zoned-time": ("table", ["u5,i3,2020-01-01T10:00:00Z,1,A"], b""),
    "rolled-date": ("table", ["u5,i3,2021-02-30,1,A"], b""),
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_inputs_only_the_reader_handles_fall_back_with_a_log_line(tmp_path, caplog, case):
    source, extra, data = FALLBACKS[case]
    if source == "movielens":
        results = ingest_both(
            source, ratings_csv(tmp_path / "in", extra, data), tmp_path, caplog, **BAD
        )
    else:
        path = table_csv(tmp_path / "in", extra)
        results = ingest_both(source, path, tmp_path, caplog, **TABLE_OPTIONS, **BAD)
    assert "reading it with the in-memory reader instead" in results["log"]
    assert_same_files(results)


def test_an_input_larger_than_the_memory_limit_spills_and_matches_arrow(tmp_path, caplog):
    """1.5M rows of ML-20M-format ratings.csv (33 MB of text; ~70 MB as DuckDB's raw table,
    more for each intermediate) under a 64 MB limit with one thread: DuckDB spills, and the
    files are the arrow engine's bytes."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ingest import generate_ml20m_format

    generate_ml20m_format(tmp_path / "ml", 1_500_000, seed=1)
    limit = dict(duckdb_memory_limit="64MB", duckdb_threads=1, train_shards=4)
    results = ingest_both("movielens", tmp_path / "ml", tmp_path, caplog, **limit)
    assert "(DuckDB)" in results["log"] and "in-memory reader" not in results["log"]
    assert_same_files(results)
    spilled = [
        r.args[0]
        for r in caplog.records
        if r.name == "dwlrec.ingest" and "spilled to disk" in r.getMessage()
    ]
    assert spilled and spilled[-1] > 16  # MB of DuckDB's temporary files at their most
    assert results["duckdb"]["counts"]["rows_read"] == 1_500_000
    # the scratch (spill) directory next to the output is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow", "duckdb", "ml"]


def test_a_zip_member_is_extracted_to_the_scratch_dir_and_removed(tmp_path, caplog):
    import zipfile

    source = ratings_csv(tmp_path / "plain", MALFORMED_ML[:3])
    archive = tmp_path / "ml-20m.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in ("ratings.csv", "movies.csv"):
            handle.write(source / name, f"ml-20m/{name}")
    results = ingest_both("movielens", archive, tmp_path, caplog, **BAD)
    assert "(DuckDB)" in results["log"]
    assert_same_files(results)
    assert results["duckdb"]["bad_examples"][0].startswith(f"{archive}/ml-20m/ratings.csv:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow", "duckdb", "ml-20m.zip", "plain"]


def test_the_scratch_dir_lies_next_to_the_output_and_is_removed(tmp_path):
    """The spill directory is a staging-like name next to the output (cleaned by the next
    write if the run is killed)."""
    from components.ingest.engines import duckdb_engine
    from components.ingest.options import IngestOptions

    with duckdb_engine.connect(IngestOptions(engine="duckdb"), tmp_path / "out") as con:
        scratch = duckdb_engine.scratch_path(con)
        assert scratch.parent == tmp_path and scratch.name.startswith(".out.tmp-")
    assert not scratch.exists()
