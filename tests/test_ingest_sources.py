"""The ingest step's source readers (SPEC §3): every real format, read from tiny generated files.

Each reader must return the interaction log the fixture encoded (``fixtures_formats.PLAN``), in
file order, with the item domains of the format; malformed rows are skipped and reported as
``FILE:LINE: reason``; a missing file or another source's directory gives an error naming the
files the source expects. End-to-end tests run the real ``components.ingest.ingest``.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import fixtures_formats as fx
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.errors import ConfigError, InputError
from components.ingest.raw import string_ids
from components.ingest.sources import READERS
from components.schema import NO_DOMAIN, load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def rows(raw) -> list[tuple[str, str, int]]:
    t = string_ids(raw.interactions)  # canonical integer ids may come as int64: their text
    return list(
        zip(
            t.column("user_id").to_pylist(),
            t.column("item_id").to_pylist(),
            t.column("timestamp").to_pylist(),
            strict=True,
        )
    )


def domains(raw) -> dict[str, list[str]]:
    return dict(
        zip(
            raw.items.column("item_id").to_pylist(),
            raw.items.column("domains").to_pylist(),
            strict=True,
        )
    )


def plan_with(user=str, item=str, time=lambda t: t):
    return [(user(u), item(i), time(t)) for u, i, t, _ in fx.PLAN]


# --------------------------------------------------------------------------- MovieLens

ML_DOMAINS = {str(i): g for i, g in fx.ML_GENRES.items()}


@pytest.mark.parametrize(
    "write",
    [
        fx.write_ml100k,
        fx.write_ml100k_zip,  # the .zip itself as --input
        lambda root: fx.write_ml100k_zip(root).parent,  # a directory holding the zip
        fx.write_ml1m,
        fx.write_ml20m,
        lambda root: fx.write_ml20m(root, gz=True),
    ],
    ids=["100k", "100k-zip", "dir-with-zip", "1m-dat", "20m-csv", "20m-csv-gz"],
)
def test_movielens_layouts(tmp_path, write):
    raw = READERS["movielens"](write(tmp_path), {})
    assert rows(raw) == fx.expected_rows()
    assert raw.rows_read == len(fx.PLAN) and raw.bad_rows == 0
    # genres: multi-label, latin-1 / quoted-comma titles do not shift fields, no genre → []
    assert domains(raw) == ML_DOMAINS
    ratings = raw.interactions.column("rating").to_pylist()
    assert all(0.5 <= r <= 5 for r in ratings)


def test_movielens_genre_names_come_from_u_genre(tmp_path):
    root = fx.write_ml100k(tmp_path)
    renamed = [g.replace("Film-Noir", "Noir") for g in fx.GENRES_100K]
    (root / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(renamed)))
    assert domains(READERS["movielens"](root, {}))["2"] == ["Noir"]
    (root / "u.genre").unlink()  # absent: the standard 19 names
    assert domains(READERS["movielens"](root, {}))["2"] == ["Film-Noir"]


def test_movielens_malformed_lines_are_counted_with_file_and_line(tmp_path):
    root = fx.write_ml100k(
        tmp_path,
        extra_lines="1\t2\t3\n"  # line 26: 3 fields
        "\n"  # line 27: blank, not a row
        "x7\t1\t3\t881250949\n"  # line 28: non-numeric user id
        "7\t1\t3\tyesterday\n"  # line 29: non-numeric timestamp
        "7\t1\tgood\t881250949\n",  # line 30: non-numeric rating
    )
    raw = READERS["movielens"](root, {})
    assert rows(raw) == fx.expected_rows()  # the good rows, untouched
    assert raw.bad_rows == 4 and raw.rows_read == len(fx.PLAN) + 4
    name = str(root / "u.data")
    assert [e.split(": ", 1)[0] for e in raw.bad_examples] == [
        f"{name}:26",
        f"{name}:28",
        f"{name}:29",
        f"{name}:30",
    ]
    assert "expected 4 fields, found 3" in raw.bad_examples[0]
    assert "user_id" in raw.bad_examples[1] and "'x7'" in raw.bad_examples[1]
    assert "timestamp" in raw.bad_examples[2] and "rating" in raw.bad_examples[3]


def test_malformed_line_inside_a_zip_member_keeps_its_line_number(tmp_path):
    files = fx.write_ml100k(tmp_path / "src", extra_lines="\n5\tfive\t3\t881250949\n")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in ("u.data", "u.item", "u.genre"):
            handle.write(files / name, f"ml-100k/{name}")
    raw = READERS["movielens"](archive, {})
    assert rows(raw) == fx.expected_rows()
    assert raw.bad_examples == [f"{archive}/ml-100k/u.data:27: non-numeric item_id id 'five'"]


@pytest.mark.parametrize("member", [False, True], ids=["file", "in-zip"])
def test_truncated_gzip_is_a_clear_error(tmp_path, member):
    root = fx.write_ml20m(tmp_path / "src", gz=True)
    data = (root / "ratings.csv.gz").read_bytes()
    (root / "ratings.csv.gz").write_bytes(data[: len(data) // 2])
    path = root
    if member:
        path = tmp_path / "ml-20m.zip"
        with zipfile.ZipFile(path, "w") as handle:
            for name in ("ratings.csv.gz", "movies.csv"):
                handle.write(root / name, f"ml-20m/{name}")
    with pytest.raises(InputError, match=r"ratings\.csv\.gz: can"):
        READERS["movielens"](path, {})


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kinds=st.lists(st.sampled_from(["good", "good", "short", "blank", "text"]), max_size=40))
def test_line_numbers_stay_exact_whatever_the_mix_of_bad_and_blank_lines(tmp_path_factory, kinds):
    """Every malformed line is reported with its own line number; every good row is kept."""
    from components.ingest.sources.bad_rows import BadRows
    from components.ingest.sources.delimited import read_delimited
    from components.ingest.sources.files import FileRef
    from components.ingest.sources.numeric import to_numeric

    lines, good, bad_lines = [], [], []
    for number, kind in enumerate(kinds, 1):
        if kind == "good":
            lines.append(f"{number}\t7\t3\t{1000 + number}")
            good.append(str(number))
        elif kind == "short":
            lines.append(f"{number}\t7")
            bad_lines.append(number)
        elif kind == "text":
            lines.append(f"{number}\t7\t3\tlater")
            bad_lines.append(number)
        else:
            lines.append("")
    path = tmp_path_factory.mktemp("mix") / "u.data"
    path.write_text("\n".join(lines) + "\n")
    bad = BadRows()
    names = ["user_id", "item_id", "rating", "timestamp"]
    data = read_delimited(FileRef(path), names, bad, delimiter="\t", quoting=False)
    table = to_numeric(data, FileRef(path), bad, {"timestamp": (pa.int64(), True)})
    assert table.column("user_id").to_pylist() == good
    assert bad.count == len(bad_lines) and data.rows_read == len(good) + len(bad_lines)
    assert [int(e.split(":")[1]) for e in bad.examples] == bad_lines[:5]


def test_movielens_csv_with_wrong_header_is_rejected(tmp_path):
    (tmp_path / "ratings.csv").write_text("user,item,score\n1,2,3\n")
    with pytest.raises(InputError, match=r"ratings.csv:1: expected the header userId,movieId"):
        READERS["movielens"](tmp_path, {})


def test_movielens_items_file_is_required(tmp_path):
    root = fx.write_ml100k(tmp_path)
    (root / "u.item").unlink()
    with pytest.raises(InputError, match=r"u.data: no MovieLens items file u.item.*--items"):
        READERS["movielens"](root, {})
    # ...and --items points at it elsewhere
    other = fx.write_ml100k(tmp_path / "elsewhere")
    raw = READERS["movielens"](root, {"items": other / "u.item"})
    assert domains(raw) == ML_DOMAINS


def test_zip_with_corrupt_archive_is_a_clear_error(tmp_path):
    (tmp_path / "ml-1m.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match=r"ml-1m.zip: not a readable zip archive"):
        READERS["movielens"](tmp_path / "ml-1m.zip", {})


# --------------------------------------------------------------------------- LastFM


def lastfm_expected_domains(top_tags: int) -> dict[str, list[str]]:
    """The reader's rule, computed independently: most used tag per artist, top-N tags kept."""
    events = fx.lastfm_events()
    total = {}
    for _, _, tag, _ in events:
        total[tag] = total.get(tag, 0) + 1
    top = sorted(total, key=lambda t: (-total[t], t))[:top_tags]
    expected = {}
    for artist in {a for _, a, _, _ in events}:
        counts = {}
        for _, a, tag, _ in events:
            if a == artist:
                counts[tag] = counts.get(tag, 0) + 1
        best = min(counts, key=lambda t: (-counts[t], -total[t], t))
        expected[str(artist)] = [fx.LASTFM_TAGS[best]] if best in top else ["other"]
    return expected


def test_lastfm_first_tagging_time_in_ms_and_top_tag_domains(tmp_path):
    raw = READERS["lastfm"](fx.write_lastfm(tmp_path), {})
    # one interaction per user-artist: the FIRST tagging by time, although later re-tags come
    # earlier in the file; milliseconds → seconds
    assert rows(raw) == fx.expected_rows()
    assert raw.rows_read == len(fx.lastfm_events())
    assert raw.interactions.column("rating").null_count == len(fx.PLAN)
    assert domains(raw) == lastfm_expected_domains(20)
    assert domains(raw)["3"] == ["électro"]  # tags.dat decoded (latin-1)


def test_lastfm_official_zip_with_files_at_its_root(tmp_path):
    files = fx.write_lastfm(tmp_path / "src")
    archive = tmp_path / "hetrec2011-lastfm-2k.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in files.iterdir():
            handle.write(path, path.name)
    raw = READERS["lastfm"](archive, {})
    assert raw.source_files == [
        f"{archive}/user_taggedartists-timestamps.dat",
        f"{archive}/tags.dat",
    ]
    assert rows(raw) == fx.expected_rows() and domains(raw) == lastfm_expected_domains(20)


def test_lastfm_top_tags_option_sends_the_rest_to_other(tmp_path):
    raw = READERS["lastfm"](fx.write_lastfm(tmp_path), {"top_tags": 2})
    assert domains(raw) == lastfm_expected_domains(2)
    assert "other" in {d[0] for d in domains(raw).values()}
    with pytest.raises(ConfigError, match="--top-tags"):
        READERS["lastfm"](tmp_path, {"top_tags": -1})


def test_lastfm_day_month_year_file(tmp_path):
    raw = READERS["lastfm"](fx.write_lastfm(tmp_path, with_ms=False), {})
    assert rows(raw) == plan_with(time=lambda t: t - t % 86400)  # the date's midnight UTC


def test_lastfm_invalid_date_is_a_malformed_row(tmp_path):
    root = fx.write_lastfm(tmp_path, with_ms=False)
    path = root / "user_taggedartists.dat"
    n_lines = len(path.read_text().splitlines())
    path.write_text(path.read_text() + "1\t2\t1\t30\t2\t2009\n")  # 30 February
    raw = READERS["lastfm"](root, {})
    assert raw.bad_rows == 1
    assert raw.bad_examples == [f"{path}:{n_lines + 1}: invalid day/month/year"]


# --------------------------------------------------------------------------- Amazon


def amazon_expected(depth: int, paths=fx.AMAZON_PATHS) -> dict[str, list[str]]:
    found = {}
    for item, item_paths in paths.items():
        at = [p[depth] for p in item_paths if len(p) > depth]
        found[fx.ASINS[item]] = list(dict.fromkeys(at))
    return found


AMAZON_PLAN = plan_with(user=lambda u: fx.REVIEWERS[u], item=lambda i: fx.ASINS[i])


def test_amazon_2014_reviews_json_with_literal_dict_metadata(tmp_path):
    raw = READERS["amazon"](fx.write_amazon_2014(tmp_path), {})
    assert rows(raw) == AMAZON_PLAN
    assert raw.interactions.column("rating").to_pylist() == [r for *_, r in fx.PLAN]
    assert domains(raw) == amazon_expected(1)
    assert domains(raw)[fx.ASINS[2]] == ["Makeup", "Skin Care"]  # two paths → two domains
    assert domains(raw)[fx.ASINS[5]] == []  # path too short → (none) after the core
    assert domains(READERS["amazon"](tmp_path, {"domain_depth": 0})) == amazon_expected(0)
    assert domains(READERS["amazon"](tmp_path, {"domain_depth": 2})) == amazon_expected(2)
    with pytest.raises(ConfigError, match="--domain-depth"):
        READERS["amazon"](tmp_path, {"domain_depth": -1})


@pytest.mark.parametrize("item_first", [True, False], ids=["2018-item-user", "2014-user-item"])
def test_amazon_ratings_csv_either_column_order(tmp_path, item_first):
    raw = READERS["amazon"](fx.write_amazon_2018_csv(tmp_path, item_first=item_first), {})
    assert rows(raw) == AMAZON_PLAN
    first_paths = {i: [p[0]] for i, p in fx.AMAZON_PATHS.items()}
    assert domains(raw) == amazon_expected(1, first_paths)


@pytest.mark.parametrize("csv", [False, True], ids=["jsonl-gz", "csv"])
def test_amazon_2023_milliseconds_and_categories(tmp_path, csv):
    raw = READERS["amazon"](fx.write_amazon_2023(tmp_path, csv=csv), {})
    assert rows(raw) == AMAZON_PLAN  # parent_asin is the item, ms → s
    got = domains(raw)
    assert got[fx.ASINS[1]] == ["Skin Care"] and got[fx.ASINS[6]] == []
    assert domains(READERS["amazon"](tmp_path, {"domain_depth": 0}))[fx.ASINS[6]] == ["All Beauty"]


def test_amazon_2014_metadata_recognised_past_an_item_without_categories(tmp_path):
    root = fx.write_amazon_2014(tmp_path)
    meta = root / "meta_Beauty.json.gz"
    first = repr({"asin": "B0NOREVIEW", "categories": []}) + "\n"
    meta.write_bytes(gzip.compress(first.encode() + gzip.decompress(meta.read_bytes())))
    assert domains(READERS["amazon"](root, {})) == amazon_expected(1)


def test_amazon_file_input_with_separate_metadata(tmp_path):
    fx.write_amazon_2014(tmp_path / "a")
    raw = READERS["amazon"](
        tmp_path / "a" / "reviews_Beauty_5.json.gz",
        {"items": tmp_path / "a" / "meta_Beauty.json.gz"},
    )
    assert rows(raw) == AMAZON_PLAN and domains(raw) == amazon_expected(1)


def test_amazon_bad_json_line_is_counted_with_its_line(tmp_path):
    root = fx.write_amazon_2014(tmp_path)
    path = root / "reviews_Beauty_5.json.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines.insert(3, '{"reviewerID": "A1", "asin": ')  # line 4: truncated JSON
    lines.insert(5, '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": "soon"}')
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    raw = READERS["amazon"](root, {})
    assert rows(raw) == AMAZON_PLAN
    assert raw.bad_rows == 2 and raw.rows_read == len(fx.PLAN) + 2
    assert raw.bad_examples[0].startswith(f"{path}:4: not a JSON object")
    assert raw.bad_examples[1].startswith(f"{path}:6: bad 'unixReviewTime'")


def test_amazon_several_review_files_is_ambiguous(tmp_path):
    fx.write_amazon_2014(tmp_path)
    fx.write_amazon_2018_csv(tmp_path)
    (tmp_path / "meta_Beauty.json").unlink()
    with pytest.raises(InputError, match="several Amazon reviews files"):
        READERS["amazon"](tmp_path, {})


# --------------------------------------------------------------------------- Yelp

YELP_PLAN = plan_with(user=lambda u: f"user-{u}", item=lambda i: fx.BUSINESSES[i])


@pytest.mark.parametrize("academic", [False, True], ids=["review.json", "yelp_academic_dataset"])
def test_yelp_reviews_dates_and_first_category(tmp_path, academic):
    raw = READERS["yelp"](fx.write_yelp(tmp_path, academic_names=academic), {})
    assert rows(raw) == YELP_PLAN  # "YYYY-MM-DD HH:MM:SS" → epoch seconds (UTC)
    assert raw.interactions.column("rating").to_pylist() == [r for *_, r in fx.PLAN]
    got = domains(raw)
    assert got[fx.BUSINESSES[1]] == ["Restaurants"] and got[fx.BUSINESSES[3]] == ["Pizza"]
    assert got[fx.BUSINESSES[5]] == []  # categories null → (none)


def test_yelp_domain_map(tmp_path):
    root = fx.write_yelp(tmp_path)
    mapping = {"Restaurants": "Food", "Pizza": "Food", "Nightlife": "Night", "Bars": "Night"}
    got = domains(READERS["yelp"](root, {"domain_map": mapping}))
    assert got[fx.BUSINESSES[1]] == ["Food"] and got[fx.BUSINESSES[2]] == ["Night"]
    assert got[fx.BUSINESSES[4]] == []  # nothing mapped
    (tmp_path / "map.json").write_text(json.dumps(mapping))
    assert domains(READERS["yelp"](root, {"domain_map": str(tmp_path / "map.json")})) == got
    with pytest.raises(ConfigError, match="--domain-map"):
        READERS["yelp"](root, {"domain_map": "[1, 2]"})


def test_yelp_unparsable_date_and_bad_json_lines(tmp_path):
    root = fx.write_yelp(tmp_path)
    path = root / "review.json"
    lines = path.read_text().splitlines()
    lines.insert(1, "")  # line 2: blank (not a row, but it still counts for line numbers)
    lines.insert(2, '{"user_id": "u", "business_id": "b", "stars": 1, "date": "last week"}')
    lines.append('{"user_id": "u", "business_id": "b", "stars": 1')
    path.write_text("\n".join(lines) + "\n")
    raw = READERS["yelp"](root, {})
    assert rows(raw) == YELP_PLAN
    assert raw.bad_rows == 2 and raw.rows_read == len(fx.PLAN) + 2
    assert raw.bad_examples == [
        f"{path}:3: unparsable date 'last week'",
        f"{path}:{len(lines)}: not a JSON object: " + repr(lines[-1][:60]),
    ]


# --------------------------------------------------------------------------- sequences, table


def test_sequences_positions_and_items_csv(tmp_path):
    raw = READERS["sequences"](fx.write_sequences(tmp_path), {})
    assert rows(raw) == fx.sequence_rows()  # timestamp = position in the user's line
    assert raw.rows_read == fx.N_USERS  # one row per line
    assert domains(raw) == {
        "1": ["Makeup"],
        "2": ["Skin Care"],
        "3": ["Makeup", "Tools"],  # '|'-separated list
        "4": [],
        "5": ["Fragrance"],
        "6": ["Skin Care"],
    }
    raw = READERS["sequences"](tmp_path, {"domain_col": "asin", "domain_sep": ""})
    assert domains(raw)["3"] == [fx.ASINS[3]]
    with pytest.raises(ConfigError, match=r"items.csv:1: no column 'genre' \(--domain-col\)"):
        READERS["sequences"](tmp_path, {"domain_col": "genre"})


def test_sequences_line_without_items_is_malformed(tmp_path):
    root = fx.write_sequences(tmp_path)
    path = root / "sequences.txt"
    path.write_text(path.read_text() + "\n99\n")  # line 6 blank, line 7 a user with no items
    raw = READERS["sequences"](root, {})
    assert raw.bad_examples == [f"{path}:7: no items after the user id"]
    assert rows(raw) == fx.sequence_rows()


def test_table_csv_named_columns_and_items(tmp_path):
    path = fx.write_table_csv(tmp_path)
    options = {"user_col": "uid", "item_col": "sku", "time_col": "ts", "rating_col": "stars"}
    raw = READERS["table"](path, options)
    assert rows(raw) == plan_with(user=lambda u: f"u{u}", item=lambda i: f"sku{i}")
    assert raw.interactions.column("rating").to_pylist() == [r for *_, r in fx.PLAN]
    assert domains(raw)["sku3"] == ["Makeup", "Tools"] and domains(raw)["sku4"] == []
    with pytest.raises(ConfigError, match=r"no column 'user_id' \(--user-col\).*'uid'"):
        READERS["table"](path, {})


def test_table_csv_iso_times_and_bad_rows(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "a,x,2020-01-01T00:00:10\n"
        "a,y,2020-01-01 00:00:20\n"
        "a,z,1577836830.7\n"
        "b,x,not a time\n"  # line 5
        "b,y\n"  # line 6
    )
    raw = READERS["table"](tmp_path, {})
    assert rows(raw) == [("a", "x", 1577836810), ("a", "y", 1577836820), ("a", "z", 1577836830)]
    assert raw.interactions.column("rating").null_count == 3  # no rating column: implicit
    assert [e.split(": ")[0] for e in raw.bad_examples] == [f"{path}:5", f"{path}:6"]


def test_table_parquet_with_timestamp_type_and_list_domains(tmp_path):
    raw = READERS["table"](fx.write_table_parquet(tmp_path), {})
    assert rows(raw) == plan_with(item=lambda i: f"sku{i}")
    assert domains(raw)["sku3"] == ["Makeup", "Tools"] and domains(raw)["sku4"] == []


# --------------------------------------------------------------------------- missing / wrong files

EXPECTED_NAMES = {
    "movielens": ["u.data", "ratings.dat", "ratings.csv", "ml-*.zip"],
    "lastfm": ["user_taggedartists-timestamps.dat", "user_taggedartists.dat", "tags.dat"],
    "amazon": ["*.json", "*.jsonl", "*.csv", "meta_*.json"],
    "yelp": ["review.json", "yelp_academic_dataset_review.json", "business.json"],
    "sequences": ["sequences.txt", "items.csv"],
    "table": ["interactions.parquet", "interactions.csv"],
}


@pytest.mark.parametrize("source", sorted(READERS))
def test_empty_directory_names_the_expected_files(tmp_path, source):
    with pytest.raises(InputError) as error:
        READERS[source](tmp_path, {})
    message = str(error.value)
    assert message.startswith(str(tmp_path))
    for name in EXPECTED_NAMES[source]:
        assert name in message


OTHER_SOURCES = {  # a directory of another source's files
    "movielens": [fx.write_amazon_2014, fx.write_lastfm, fx.write_sequences, fx.write_yelp],
    "lastfm": [fx.write_ml100k, fx.write_yelp],
    "amazon": [fx.write_ml100k, fx.write_yelp, fx.write_lastfm],
    "yelp": [fx.write_ml100k, fx.write_amazon_2014],
    "sequences": [fx.write_ml100k, fx.write_amazon_2014],
    "table": [fx.write_ml20m, fx.write_yelp],
}


@pytest.mark.parametrize(
    ("source", "writer"),
    [(s, w) for s, writers in OTHER_SOURCES.items() for w in writers],
    ids=lambda v: v if isinstance(v, str) else v.__name__.replace("write_", "of-"),
)
def test_directory_of_another_source_gives_a_clear_error(tmp_path, source, writer):
    writer(tmp_path)
    with pytest.raises((InputError, ConfigError)) as error:
        READERS[source](tmp_path, {})
    message = str(error.value)
    assert str(tmp_path) in message
    assert any(name in message for name in EXPECTED_NAMES[source]) or "no column" in message


def test_zip_without_the_files(tmp_path):
    archive = tmp_path / "ml-latest.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ml-latest/README.txt", "nothing here")
    with pytest.raises(InputError, match=r"ml-latest.zip: no MovieLens ratings file found"):
        READERS["movielens"](archive, {})


def test_reader_helpers_find_the_input_and_build_raw_data(tmp_path, caplog):
    """The helpers every reader shares: find the data file or raise, --items wins over a sibling,
    RawData carries the BadRows count/examples and the names of the files actually read."""
    from components.ingest.sources.bad_rows import BadRows
    from components.ingest.sources.files import FileRef, find_input, items_file
    from components.ingest.sources.output import raw_data

    data = tmp_path / "sub" / "data.txt"
    data.parent.mkdir()
    data.write_text("x\n")
    (data.parent / "items.csv").write_text("item_id\n")
    assert find_input(data, ["other.txt"], "unused") == FileRef(data)  # a file is the input
    assert find_input(tmp_path, ["data.txt"], "unused") == FileRef(data)  # one folder deep
    with pytest.raises(InputError, match=r"^.*/empty: nothing here; expected a\.txt$"):
        find_input(tmp_path / "empty", ["a.txt"], "nothing here; expected a.txt")
    ref = FileRef(data)
    assert items_file({}, ref, ["items.csv"]) == FileRef(data.parent / "items.csv")
    assert items_file({"items": str(data)}, ref, ["items.csv"]) == ref
    assert items_file({}, ref, ["missing.csv"]) is None

    bad = BadRows()
    bad.add(ref.name, 3, "bad value")
    table = pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": pa.array([1], pa.int64())})
    raw = raw_data(table, None, rows_read=2, bad=bad, files=[ref, None], items_source=ref)
    assert (raw.rows_read, raw.bad_rows, raw.bad_examples) == (2, 1, [f"{data}:3: bad value"])
    assert raw.source_files == [str(data)] and raw.items_source == str(data)
    assert raw.interactions.column("rating").null_count == 1  # no rating column: nulls
    with caplog.at_level("WARNING", logger="dwlrec.ingest"):
        BadRows().log_skipped("f.csv", "item row")  # nothing skipped: no warning
        bad.log_skipped("f.csv", "item row")
    assert caplog.messages == [
        f"f.csv: skipped 1 malformed item row(s); first: {data}:3: bad value"
    ]


# --------------------------------------------------------------------------- end to end (core)

E2E = {  # source → (writer, reader options, expected number of users)
    "movielens": (fx.write_ml100k_zip, {}),
    "lastfm": (fx.write_lastfm, {}),
    "amazon": (fx.write_amazon_2014, {}),
    "yelp": (fx.write_yelp, {}),
    "sequences": (fx.write_sequences, {}),
    "table": (fx.write_table_parquet, {}),
}


@pytest.mark.parametrize("source", sorted(E2E))
def test_ingest_end_to_end(tmp_path, source):
    from components.ingest import ingest

    writer, options = E2E[source]
    out = tmp_path / "out"
    manifest = ingest(
        source,
        out,
        str(writer(tmp_path / "in")),
        min_user_interactions=3,
        min_item_interactions=1,
        **options,
    )
    dataset = load_dataset(out)
    assert dataset.n_users == fx.N_USERS and dataset.n_items == fx.N_ITEMS
    assert dataset.interactions.num_rows == len(fx.PLAN)
    splits = pc.value_counts(dataset.interactions.column("split")).to_pylist()
    assert {s["values"]: s["counts"] for s in splits} == {"train": 15, "valid": 5, "test": 5}
    assert manifest["counts"]["bad_rows"] == 0 and manifest["source_files"]
    names = dataset.domain_names()
    if source in ("movielens", "amazon", "yelp", "sequences", "table"):
        assert NO_DOMAIN in names  # the fixture's item without a category


def test_ingest_fails_above_max_bad_fraction_naming_file_and_line(tmp_path):
    from components.ingest import ingest

    root = fx.write_ml100k(tmp_path / "in", extra_lines="1\t2\n")  # 1 bad of 26 rows ≈ 3.8%
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"u.data:26: expected 4 fields, found 2"):
        ingest("movielens", out, str(root), min_user_interactions=3, min_item_interactions=1)
    assert not out.exists()  # nothing half-written
    manifest = ingest(
        "movielens", out, str(root), min_user_interactions=3, min_item_interactions=1,
        max_bad_fraction=0.05,
    )  # fmt: skip
    assert manifest["counts"]["bad_rows"] == 1
    assert manifest["bad_examples"][0].startswith(f"{root / 'u.data'}:26:")


# --------------------------------------------------------------------------- real data (optional)


@pytest.mark.skipif(not (SHARED / "ml-100k" / "u.data").exists(), reason="no shared ml-100k")
def test_real_ml100k(tmp_path):
    from components.ingest import ingest

    manifest = ingest("movielens", tmp_path / "out", str(SHARED / "ml-100k"))
    assert manifest["counts"]["users"] == 943
    assert len(manifest["domains"]) == 19


@pytest.mark.skipif(not (SHARED / "amazon-beauty").exists(), reason="no shared amazon-beauty")
def test_real_amazon_beauty_sequences(tmp_path):
    from components.ingest import ingest

    manifest = ingest("sequences", tmp_path / "out", str(SHARED / "amazon-beauty"))
    assert manifest["counts"]["users"] == 22363
    assert len(manifest["domains"]) == 6


# --------------------------------------------------------------------------- CLI


def test_cli_passes_source_options_and_reports_errors(tmp_path, capsys):
    from components.ingest.cli import main

    events = fx.write_table_csv(tmp_path / "in")
    argv = ["--source", "table", "--input", str(events), "--output", str(tmp_path / "out"),
            "--user-col", "uid", "--item-col", "sku", "--time-col", "ts", "--rating-col", "stars",
            "--min-user-interactions", "3", "--min-item-interactions", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "5 users, 6 items, 25 interactions" in capsys.readouterr().out
    assert load_dataset(tmp_path / "out").domain_names() == [
        NO_DOMAIN, "Fragrance", "Makeup", "Skin Care", "Tools"
    ]  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--source", "lastfm", "--input", str(empty), "--output", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "user_taggedartists-timestamps.dat" in error
    assert not (tmp_path / "x").exists()
