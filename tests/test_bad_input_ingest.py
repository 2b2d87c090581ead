"""Issue 11, the ingest data-correctness class: bad or surprising inputs that used to be accepted
silently, turned into mojibake, or crashed with a traceback (items 7, 9, 11, 13, 14 and 16).

Every case is the exact reproduction on a small generated file: the refused ones exit 2 with one
``error:`` line naming the file/line/option and leave nothing on disk (no output, no staging
directory, the inputs byte-identical); the accepted ones give the corrected dataset. The last
tests check that the real MovieLens 100K and Amazon Beauty outputs are unchanged (skipped when
../shared/data is absent).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import fixtures_formats as fx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.errors import ConfigError, InputError
from components.ingest import ingest
from components.ingest.cli import main
from components.ingest.core import IngestOptions
from components.ingest.sources import READERS

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOOSE = ["--min-user-interactions", "3", "--min-item-interactions", "1"]


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def events_csv(path: Path, extra: str | bytes = b"", header: str = "user_id,item_id,timestamp"):
    """4 users × 4 items (u1..u4, i1..i4) with integer times, then ``extra`` lines."""
    body = (
        header
        + "\n"
        + "".join(f"u{u},i{i},{100 * u + i}\n" for u in range(1, 5) for i in range(1, 5))
    )
    extra = extra.encode() if isinstance(extra, str) else extra
    return write(path, body.encode() + extra)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def read_out(out: Path) -> tuple[dict, pa.Table, pa.Table]:
    manifest = json.loads((out / "manifest.json").read_text())
    return (
        manifest,
        pq.read_table(out / "items.parquet"),
        pq.read_table(out / "interactions.parquet"),
    )


def item_domains(out: Path) -> dict[str, list[str]]:
    items = pq.read_table(out / "items.parquet")
    return dict(zip(items["item_id"].to_pylist(), items["domains"].to_pylist(), strict=True))


# --------------------------------------------------------------------------- refused inputs
# Each builder writes its input under ``root`` and returns (argv, substrings of the error line).


def seq_repeated_user(root: Path):  # item 7: the same user on two lines
    write(root / "seq" / "sequences.txt", "1 10 11 12\n2 20 21 22\n1 13 14 15\n")
    name = root / "seq" / "sequences.txt"
    return ["--source", "sequences", "--input", root / "seq"], [
        f"{name}:3: user '1' already has a line ({name}:1)",
        "one line per user",
    ]


def seq_on_movielens_udata(root: Path):  # item 7: a ratings table is not sequences
    fx.write_ml100k(root / "ml")
    return ["--source", "sequences", "--input", root / "ml" / "u.data"], [
        "u.data:1: looks like a ratings table",
        "--source movielens",
        "--source table",
    ]


def stray_byte_over_threshold(root: Path):  # item 9: one bad byte, counted, over 1%
    rows = "".join(f"ü{u},é{i},{100 * u + i}\n" for u in range(1, 5) for i in range(1, 5))
    write(
        root / "t" / "events.csv", f"user_id,item_id,timestamp\n{rows}".encode() + b"u9,i\xff,5\n"
    )
    return ["--source", "table", "--input", root / "t" / "events.csv"], [
        "1 of 17 rows malformed",
        f"{root / 't' / 'events.csv'}:18: not valid UTF-8",
    ]


def items_match_no_id(root: Path):  # item 9: every item would be (none)
    events_csv(root / "t" / "events.csv")
    write(root / "t" / "items.csv", "item_id,domains\n" + "".join(f"x{i},A\n" for i in range(1, 5)))
    return ["--source", "table", "--input", root / "t" / "events.csv"], [
        "4 of 4 items (100.0%) have no row in",
        "items.csv",
        "--item-id-col",
    ]


def all_ratings_nan(root: Path):  # item 9: NaN ratings are malformed
    lines = "".join(f"u{u},i{i},{i},nan\n" for u in range(1, 5) for i in range(1, 5))
    write(root / "t" / "events.csv", "user_id,item_id,timestamp,rating\n" + lines)
    return ["--source", "table", "--input", root / "t" / "events.csv"], [
        "16 of 16 rows malformed",
        f"{root / 't' / 'events.csv'}:2: non-finite rating value 'nan'",
    ]


def timestamps_beyond_int64(root: Path):  # item 11: was an ArrowInvalid traceback
    lines = "u5,i1,1e30\nu5,i2,99999999999999999999\nu5,i3,-1e19\n"
    events_csv(root / "t" / "events.csv", lines)
    name = root / "t" / "events.csv"
    return ["--source", "table", "--input", name], [
        "3 of 19 rows malformed",
        f"{name}:18: timestamp value '1e30' out of range",
        f"{name}:19:",
    ]


def parquet_timestamps_beyond_int64(root: Path):  # item 11: float seconds 1e30 / NaN in Parquet
    (root / "p").mkdir(parents=True)
    times = [float(t) for t in range(12)] + [1e30, float("nan")]
    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{k % 3}" for k in range(14)],
                "item_id": [f"i{k % 4}" for k in range(14)],
                "timestamp": pa.array(times, pa.float64()),
            }
        ),
        root / "p" / "interactions.parquet",
    )
    return ["--source", "table", "--input", root / "p"], [
        "2 of 14 rows malformed",
        "interactions.parquet:13: missing, unparsable or beyond int64 timestamp",
    ]


def amazon_json_time_beyond_int64(root: Path):  # item 11: was an OverflowError traceback
    fx.write_amazon_2014(root / "a")
    path = root / "a" / "reviews_Beauty_5.json.gz"
    import gzip

    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines[3] = lines[3].replace('"unixReviewTime": ', '"unixReviewTime": 1e30, "x": ')
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return ["--source", "amazon", "--input", root / "a"], [
        "1 of 25 rows malformed",
        f"{path}:4: bad 'unixReviewTime' value 1e+30",
    ]


def domain_map_missing(root: Path):  # item 11: was a FileNotFoundError traceback
    fx.write_yelp(root / "y")
    missing = root / "nope.json"
    return ["--source", "yelp", "--input", root / "y", "--domain-map", missing], [
        f"--domain-map {missing}: cannot read (No such file or directory)"
    ]


def domain_map_invalid_json(root: Path):  # item 11: was argparse's "invalid _json_file value"
    fx.write_yelp(root / "y")
    bad = write(root / "map.json", "{nope")
    return ["--source", "yelp", "--input", root / "y", "--domain-map", bad], [
        f"--domain-map {bad}: not valid JSON"
    ]


def synthetic_mean_length_nan(root: Path):  # item 11: was numpy's "p contains NaNs"
    return ["--source", "synthetic", "--mean-length", "nan"], [
        "--mean-length nan: expected a finite number"
    ]


def synthetic_absurd_size(root: Path):  # item 11: was a 7 TiB allocation error
    return ["--source", "synthetic", "--num-users", 10**12], [
        "--num-users 1,000,000,000,000",
        "beyond the generator's limit",
    ]


def nested_list_domain_column(root: Path):  # item 11: a list of lists was an Arrow traceback
    (root / "p").mkdir(parents=True)
    pq.write_table(
        pa.table({"user_id": ["u1"] * 3, "item_id": ["a", "b", "c"], "timestamp": [1, 2, 3]}),
        root / "p" / "interactions.parquet",
    )
    nested = pa.array([[["A"], None], None, [None]], pa.list_(pa.list_(pa.string())))
    pq.write_table(
        pa.table({"item_id": ["a", "b", "c"], "domains": nested}), root / "p" / "items.parquet"
    )
    return ["--source", "table", "--input", root / "p"], [
        "items.parquet: column 'domains' (--domain-col): a list of list<element: string> values"
    ]


def domain_col_nowhere(root: Path):  # item 13: an explicit --domain-col neither table has
    events_csv(root / "t" / "events.csv")
    return ["--source", "table", "--input", root / "t" / "events.csv", "--domain-col", "genre"], [
        "events.csv: no column 'genre' (--domain-col) and no items table"
    ]


def top_domains_zero(root: Path):  # item 14: the new options are validated
    return ["--source", "synthetic", "--top-domains", "0"], [
        "--top-domains 0: expected an integer >= 1"
    ]


REFUSED: dict[str, Callable] = {
    "7-seq-repeated-user": seq_repeated_user,
    "7-seq-on-u.data": seq_on_movielens_udata,
    "9-stray-byte": stray_byte_over_threshold,
    "9-items-match-nothing": items_match_no_id,
    "9-nan-ratings": all_ratings_nan,
    "11-time-beyond-int64-csv": timestamps_beyond_int64,
    "11-time-beyond-int64-parquet": parquet_timestamps_beyond_int64,
    "11-time-beyond-int64-json": amazon_json_time_beyond_int64,
    "11-domain-map-missing": domain_map_missing,
    "11-domain-map-invalid": domain_map_invalid_json,
    "11-synthetic-nan": synthetic_mean_length_nan,
    "11-synthetic-absurd": synthetic_absurd_size,
    "11-nested-domain-list": nested_list_domain_column,
    "13-domain-col-nowhere": domain_col_nowhere,
    "14-top-domains-0": top_domains_zero,
}


@pytest.mark.parametrize("build", list(REFUSED.values()), ids=list(REFUSED))
def test_refused_with_one_error_line_and_nothing_written(tmp_path, capsys, build):
    inputs = tmp_path / "in"
    inputs.mkdir()
    argv, expected = build(inputs)
    before = snapshot(inputs)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli([*argv, "--output", out, *LOOSE], capsys)
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert snapshot(inputs) == before  # the inputs are untouched


# --------------------------------------------------------------------------- corrected inputs
# Each case runs the CLI on its input and checks the output it now gives.


def case_stray_byte_is_one_malformed_line(tmp_path, capsys, caplog):  # item 9
    rows = "".join(f"ü{u},é{i},{100 * u + i}\n" for u in range(1, 5) for i in range(1, 5))
    path = write(
        tmp_path / "t.csv", b"user_id,item_id,timestamp\n" + rows.encode() + b"u9,\xff,5\n"
    )
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        [
            "--source",
            "table",
            "--input",
            path,
            "--output",
            out,
            *LOOSE,
            "--max-bad-fraction",
            "0.1",
        ],
        capsys,
    )
    assert code == 0
    manifest, items, inter = read_out(out)
    assert sorted(items["item_id"].to_pylist()) == ["é1", "é2", "é3", "é4"]  # UTF-8, no mojibake
    assert manifest["counts"]["bad_rows"] == 1
    assert manifest["bad_examples"] == [f"{path}:18: not valid UTF-8 (undecodable byte)"]
    assert f"{path}:18" in caplog.text  # the decoder names the line too
    assert "malformed 1" in stdout


def case_latin1_file_is_still_latin1(tmp_path, capsys, caplog):  # item 9: the legacy rule holds
    root = fx.write_ml100k(tmp_path / "ml")  # u.item is latin-1 ("Café")
    raw = READERS["movielens"](root, {})
    assert raw.bad_rows == 0 and "decoding as latin-1" in caplog.text
    assert len(raw.items) == len(fx.ML_GENRES)
    # an ASCII file with one byte >= 0x80 and no UTF-8 sequence is latin-1 too: nothing to mangle
    path = events_csv(tmp_path / "t.csv", b"u9,i\xe9,5\n")
    raw = READERS["table"](path, {})
    assert raw.bad_rows == 0 and "i\u00e9" in raw.interactions["item_id"].to_pylist()


def case_empty_ids_are_malformed(tmp_path, capsys, caplog):  # item 9
    path = events_csv(tmp_path / "t.csv", ",i1,5\nu1,,6\n  ,i2,7\n")
    out = tmp_path / "out"
    code, _, _ = run_cli(
        [
            "--source",
            "table",
            "--input",
            path,
            "--output",
            out,
            *LOOSE,
            "--max-bad-fraction",
            "0.2",
        ],
        capsys,
    )
    assert code == 0
    manifest, items, inter = read_out(out)
    assert manifest["counts"]["bad_rows"] == 3 and manifest["counts"]["users"] == 4
    assert "" not in items["item_id"].to_pylist()
    assert manifest["bad_examples"] == [
        f"{path}:18: empty user_id",
        f"{path}:19: empty item_id",
        f"{path}:20: empty user_id",
    ]


def case_empty_ids_in_json(tmp_path, capsys, caplog):  # item 9, JSON sources (Yelp)
    root = fx.write_yelp(tmp_path / "y")
    review = root / "review.json"
    lines = review.read_text().splitlines()
    lines[2] = lines[2].replace('"user_id": "user-1"', '"user_id": ""')
    review.write_text("\n".join(lines) + "\n")
    raw = READERS["yelp"](root, {})
    assert raw.bad_rows == 1 and raw.bad_examples == [f"{review}:3: empty 'user_id'"]
    assert "" not in raw.interactions["user_id"].to_pylist()


def case_nan_rating_counted(tmp_path, capsys, caplog):  # item 9
    path = tmp_path / "t.csv"
    body = "".join(
        f"u{u},i{i},{i},{3 if (u, i) != (2, 2) else 'NaN'}\n"
        for u in range(1, 5)
        for i in range(1, 5)
    )
    write(path, "user_id,item_id,timestamp,rating\n" + body)
    raw = READERS["table"](path, {})
    assert raw.bad_rows == 1 and raw.bad_examples == [f"{path}:7: non-finite rating value 'NaN'"]
    assert not any(r != r for r in raw.interactions["rating"].to_pylist())


def case_rating_threshold_in_summary(tmp_path, capsys, caplog):  # item 9 / 16
    path = tmp_path / "t.csv"
    body = "".join(f"u{u},i{i},{i},{i}\n" for u in range(1, 5) for i in range(1, 5))
    write(path, "user_id,item_id,timestamp,rating\n" + body)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["--source", "table", "--input", path, "--output", out, *LOOSE, "--rating-threshold", "2"],
        capsys,
    )
    assert code == 0
    manifest, _, _ = read_out(out)
    assert manifest["counts"]["removed_by_rating_threshold"] == 4
    assert "rating threshold 4" in stdout and "kept 12" in stdout


def case_min_user_raised_is_recorded(tmp_path, capsys, caplog):  # item 9
    out = tmp_path / "out"
    argv = ["--source", "synthetic", "--num-users", "60", "--num-items", "40", "--output", out]
    code, stdout, _ = run_cli([*argv, "--min-user-interactions", "1"], capsys)
    assert code == 0
    manifest, _, _ = read_out(out)
    assert manifest["options"]["min_user_interactions"] == 3  # the value in effect
    assert manifest["adjusted_options"]["min_user_interactions"]["requested"] == 1
    assert "--min-user-interactions 1 raised to 3" in stdout
    assert "raised to 3" in caplog.text


def case_bom_header(tmp_path, capsys, caplog):  # item 9
    path = events_csv(tmp_path / "t.csv", header="\ufeffuser_id,item_id,timestamp")
    raw = READERS["table"](path, {})
    assert raw.bad_rows == 0 and raw.interactions.num_rows == 16
    seq = write(tmp_path / "s" / "sequences.txt", "\ufeff1 1 2 3\n2 2 3 4\n")
    assert READERS["sequences"](seq, {}).interactions["user_id"].to_pylist()[0] == "1"


def case_iso_z_timestamps(tmp_path, capsys, caplog):  # item 9
    stamps = ["2020-01-01T00:00:00Z", "2020-01-01T01:00:01+01:00", "2020-01-01T00:00:02.750Z",
              "2020-01-01 00:00:03-0130"]  # fmt: skip
    body = "".join(f"u{u},i{k},{s}\n" for u in range(1, 4) for k, s in enumerate(stamps))
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\n" + body)
    raw = READERS["table"](path, {})
    assert raw.bad_rows == 0
    base = 1577836800  # 2020-01-01T00:00:00Z
    assert raw.interactions["timestamp"].to_pylist()[:4] == [base, base + 1, base + 2, base + 5403]


def case_partial_items_match_warns(tmp_path, capsys, caplog):  # item 9: warn above a share
    path = write(tmp_path / "e.csv", "user_id,item_id,timestamp\n"
                 + "".join(f"u{u},i{i},{i}\n" for u in range(1, 5) for i in range(1, 11)))  # fmt: skip
    write(
        tmp_path / "items.csv",
        "item_id,domains\n" + "".join(f"i{i},D{i % 3}\n" for i in range(1, 9)),
    )
    out = tmp_path / "out"
    assert run_cli(["--source", "table", "--input", path, "--output", out, *LOOSE], capsys)[0] == 0
    assert "2 of 10 items (20.0%) have no row in" in caplog.text and "'i10', 'i9'" in caplog.text
    manifest, _, _ = read_out(out)
    assert manifest["counts"]["items_unmatched_in_items_table"] == 2


def case_domain_from_interactions_table(tmp_path, capsys, caplog):  # item 13
    body = "".join(
        f"u{u},i{i},{i},{'Jazz' if i % 2 else 'Rock'}\n" for u in range(1, 5) for i in range(1, 5)
    )
    body += "u5,i2,1,Jazz\nu5,i3,2,Jazz\nu5,i4,3,Rock\n"  # i2 disagrees once (Rock ×4, Jazz ×1)
    path = write(tmp_path / "ratings.csv", "user_id,item_id,timestamp,category\n" + body)
    out = tmp_path / "out"
    argv = [
        "--source",
        "table",
        "--input",
        path,
        "--output",
        out,
        *LOOSE,
        "--domain-col",
        "category",
    ]
    assert run_cli(argv, capsys)[0] == 0
    assert item_domains(out) == {"i1": ["Jazz"], "i2": ["Rock"], "i3": ["Jazz"], "i4": ["Rock"]}
    manifest, _, _ = read_out(out)
    assert manifest["counts"]["items_with_conflicting_domains"] == 1
    assert "1 of 4 items have conflicting 'category' values" in caplog.text
    assert "item 'i2': 'Rock' ×4, 'Jazz' ×1" in caplog.text


def case_all_none_warns_loudly(tmp_path, capsys, caplog):  # item 13
    path = events_csv(tmp_path / "e.csv")
    out = tmp_path / "out"
    assert run_cli(["--source", "table", "--input", path, "--output", out, *LOOSE], capsys)[0] == 0
    warning = [r for r in caplog.records if "every one of the 4 items" in r.getMessage()]
    assert warning and warning[0].levelno == logging.WARNING
    assert item_domains(out) == {f"i{i}": ["(none)"] for i in range(1, 5)}


def case_null_inside_domain_lists(tmp_path, capsys, caplog):  # item 11: no "None" domain
    root = fx.write_amazon_2014(tmp_path / "a")
    meta = root / "meta_Beauty.json.gz"
    import gzip

    records = [repr({"asin": fx.ASINS[i], "categories": [["Beauty", None], ["Beauty", "Makeup", None]]})
               for i in fx.ASINS]  # fmt: skip
    meta.write_bytes(gzip.compress(("\n".join(records) + "\n").encode(), mtime=0))
    raw = READERS["amazon"](root, {})
    assert set(map(tuple, raw.items["domains"].to_pylist())) == {("Makeup",)}
    path = write(tmp_path / "meta_x.json", json.dumps({"asin": "B1", "category": ["Beauty", None, "X"]})
                 + "\n" + json.dumps({"asin": "B2", "category": ["Beauty", "Y"], "x": 1}) + "\n")  # fmt: skip
    from components.ingest.sources.amazon import _read_meta
    from components.ingest.sources.files import FileRef

    assert _read_meta(FileRef(path), 1)["domains"].to_pylist() == [[], ["Y"]]


def case_top_and_min_domains_every_source(tmp_path, capsys, caplog):  # item 14
    root = fx.write_ml100k(tmp_path / "ml")  # genres: Drama 2 items, Comedy 2, Film-Noir 2, …
    out = tmp_path / "out"
    argv = ["--source", "movielens", "--input", root, "--output", out, *LOOSE]
    assert run_cli([*argv, "--top-domains", "2"], capsys)[0] == 0
    manifest, _, _ = read_out(out)
    kept = set(manifest["domains"]) - {"other", "(none)"}
    assert len(kept) == 2 and "other" in manifest["domains"]
    assert manifest["counts"]["domains_folded_into_other"] == len(manifest["folded_domains"]) == 2
    assert run_cli([*argv, "--min-domain-items", "2", "--overwrite"], capsys)[0] == 0
    manifest, _, _ = read_out(out)
    assert set(manifest["folded_domains"]) == {"Animation"}  # the one genre with a single item
    assert all(v["items"] < 2 for v in manifest["folded_domains"].values())
    seq = fx.write_sequences(tmp_path / "seq")
    argv = ["--source", "sequences", "--input", seq, "--output", tmp_path / "o2", *LOOSE]
    assert run_cli([*argv, "--top-domains", "1"], capsys)[0] == 0
    assert set(read_out(tmp_path / "o2")[0]["domains"]) <= {
        "Skin Care",
        "Makeup",
        "other",
        "(none)",
    }
    for source, extra in (("synthetic", ["--num-users", "80", "--num-items", "40"]),):
        assert (
            run_cli(
                ["--source", source, *extra, "--output", tmp_path / "o3", "--top-domains", "3"],
                capsys,
            )[0]
            == 0
        )
        assert len(set(read_out(tmp_path / "o3")[0]["domains"]) - {"other"}) == 3


def case_lastfm_summary_adds_up(tmp_path, capsys, caplog):  # item 16: first-tag collapse
    root = fx.write_lastfm(tmp_path / "fm")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(
        ["--source", "lastfm", "--input", root, "--output", out, *LOOSE], capsys
    )
    assert code == 0
    counts = read_out(out)[0]["counts"]
    assert (
        counts["rows_read"] - counts["bad_rows"] - counts["removed_by_first_tag"]
        == counts["rows_parsed"]
    )
    assert counts["removed_by_first_tag"] == len(fx.lastfm_events()) - len(fx.PLAN)
    assert_summary_matches(stdout, counts)


CORRECTED: dict[str, Callable] = {
    "9-stray-byte-one-line": case_stray_byte_is_one_malformed_line,
    "9-latin1-still-latin1": case_latin1_file_is_still_latin1,
    "9-empty-ids": case_empty_ids_are_malformed,
    "9-empty-ids-json": case_empty_ids_in_json,
    "9-nan-rating": case_nan_rating_counted,
    "9-rating-threshold-summary": case_rating_threshold_in_summary,
    "9-min-user-recorded": case_min_user_raised_is_recorded,
    "9-bom": case_bom_header,
    "9-iso-z": case_iso_z_timestamps,
    "9-items-partly-matched": case_partial_items_match_warns,
    "13-domain-col-in-events": case_domain_from_interactions_table,
    "13-all-none-loud": case_all_none_warns_loudly,
    "11-null-in-domain-list": case_null_inside_domain_lists,
    "14-top-min-domains": case_top_and_min_domains_every_source,
    "16-lastfm-adds-up": case_lastfm_summary_adds_up,
}


@pytest.mark.parametrize("case", list(CORRECTED.values()), ids=list(CORRECTED))
def test_corrected(tmp_path, capsys, caplog, case):
    caplog.set_level(logging.INFO, logger="dwlrec.ingest")
    case(tmp_path, capsys, caplog)


# --------------------------------------------------------------------------- item 16, help, pipeline


def assert_summary_matches(stdout: str, counts: dict) -> None:
    """The summary's arithmetic line holds the manifest's numbers, and it adds up."""
    line = next(line for line in stdout.splitlines() if "= kept" in line)
    numbers = [int(n.replace(",", "")) for n in re.findall(r"(?<![\w-])\d[\d,]*", line)]
    removals = [counts.get("removed_by_rating_threshold", 0), counts["duplicates_removed"],
                counts["removed_by_kcore"]]  # fmt: skip
    assert numbers[-4:] == [*removals, counts["interactions"]], line
    assert counts["rows_parsed"] - sum(removals) == counts["interactions"]
    assert counts["rows_parsed"] in numbers and counts["rows_read"] == numbers[0]


def test_summary_adds_up_with_every_filter(tmp_path, capsys):
    """Malformed rows, a rating threshold, an exact repeat and k-core removals in one file."""
    root = fx.write_ml100k(
        tmp_path / "ml",
        extra_lines="1\t2\t3\n"  # malformed: 3 fields
        f"{fx.PLAN[1][0]}\t{fx.PLAN[1][1]}\t5\t{fx.PLAN[1][2]}\n"  # an exact repeat
        "9\t1\t5\t5\n9\t2\t5\t6\n",  # user 9: 2 interactions → k-core
    )
    out = tmp_path / "out"
    argv = ["--source", "movielens", "--input", root, "--output", out, "--max-bad-fraction", "0.1"]
    code, stdout, _ = run_cli([*argv, "--min-user-interactions", "3", "--min-item-interactions", "1",
                               "--rating-threshold", "2"], capsys)  # fmt: skip
    assert code == 0
    counts = read_out(out)[0]["counts"]
    assert counts["bad_rows"] == 1 and counts["duplicates_removed"] == 1
    assert counts["removed_by_rating_threshold"] == 5 and counts["removed_by_kcore"] == 2
    assert counts["rows_read"] - counts["bad_rows"] == counts["rows_parsed"]
    assert_summary_matches(stdout, counts)


def test_help_states_real_defaults_and_the_sequences_rule(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert "table: default 'domains'" in text and "sequences: default 'category'" in text
    assert "--top-domains" in text and "--min-domain-items" in text
    assert "a user on two lines is an error" in text


def test_new_options_are_known_to_the_pipeline():
    from components.ingest.ingest import CORE_KEYS
    from pipelines.validate import check_run_params

    assert {"top_domains", "min_domain_items"} <= CORE_KEYS
    full = check_run_params(
        {"source": "synthetic", "ingest_options": {"top_domains": 3, "min_domain_items": 2}}
    )
    assert full["ingest_options"]["top_domains"] == 3
    with pytest.raises(ConfigError, match="top-domains"):
        check_run_params({"source": "synthetic", "ingest_options": {"top_domains": 0}})
    with pytest.raises(ConfigError, match="mean-length"):
        check_run_params({"source": "synthetic", "ingest_options": {"mean_length": float("nan")}})


def test_python_api_raises_the_same_errors(tmp_path):
    write(tmp_path / "s" / "sequences.txt", "a 1 2 3\nb 1 2 3\na 4 5 6\n")
    with pytest.raises(InputError, match=r"sequences.txt:3: user 'a' already has a line"):
        ingest("sequences", tmp_path / "out", str(tmp_path / "s"))
    with pytest.raises(ConfigError, match="--min-domain-items"):
        IngestOptions(min_domain_items=0).validate()
    assert not (tmp_path / "out").exists()
    # the core drops empty/null ids of any raw producer as malformed (readers name the line)
    from components.ingest.core import process
    from components.ingest.raw import RAW_INTERACTIONS_SCHEMA, RawData

    rows = [(u, i, k, None) for u in ("a", "b", "", None) for k, i in enumerate("xyz")]
    table = pa.table(list(map(list, zip(*rows, strict=True))), schema=RAW_INTERACTIONS_SCHEMA)
    raw = RawData(interactions=table, items=None, rows_read=len(rows), source_files=["f.csv"])
    out = process(raw, IngestOptions(3, 1, max_bad_fraction=0.5))
    assert out.counts["bad_rows"] == 6 and out.counts["users"] == 2


# --------------------------------------------------------------------------- real data unchanged

# Recorded with the code before these changes (same counts, same tables, same domains).
REAL = {
    "ml-100k": (
        "movielens",
        {"users": 943, "items": 1349, "interactions": 99287, "rows_read": 100000, "bad_rows": 0,
         "duplicates_removed": 0, "removed_by_kcore": 713, "train_interactions": 97401},
        19,
        "1e0eae6004328d25",
    ),
    "amazon-beauty": (
        "sequences",
        {"users": 22363, "items": 12101, "interactions": 198502, "rows_read": 22363,
         "bad_rows": 0, "duplicates_removed": 0, "removed_by_kcore": 0,
         "train_interactions": 153776},
        6,
        "a244af0345284d30",
    ),
}  # fmt: skip


def content_fingerprint(out: Path) -> str:
    """The tables' values (not the Parquet bytes, which depend on the pyarrow version)."""
    digest = hashlib.sha256()
    inter = pq.read_table(out / "interactions.parquet")
    for name in ("user_idx", "item_idx", "timestamp"):
        digest.update(inter[name].to_numpy().astype(np.int64).tobytes())
    digest.update("\n".join(inter["split"].to_pylist()).encode())
    items = pq.read_table(out / "items.parquet")
    digest.update(json.dumps([items["item_id"].to_pylist(), items["domains"].to_pylist()]).encode())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("name", list(REAL))
def test_real_data_outputs_unchanged(tmp_path, name):
    if not (DATA / name).is_dir():
        pytest.skip(f"{DATA / name} absent")
    source, counts, n_domains, fingerprint = REAL[name]
    manifest = ingest(source, tmp_path / "out", str(DATA / name))
    assert {k: manifest["counts"][k] for k in counts} == counts
    assert (
        manifest["counts"]["rows_parsed"] - manifest["counts"]["removed_by_kcore"]
        == counts["interactions"]
    )
    assert manifest["counts"]["items_without_domain"] == 0
    assert len(manifest["domains"]) == n_domains and "adjusted_options" not in manifest
    assert content_fingerprint(tmp_path / "out") == fingerprint
