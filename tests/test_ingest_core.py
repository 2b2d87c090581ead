"""The source-independent half of ingest (SPEC §3): filters, re-indexing, split, atomic output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.core.sequences import UserSequences
from components.errors import ConfigError, InputError
from components.ingest import ingest
from components.ingest.core import IngestOptions, process
from components.ingest.raw import RAW_INTERACTIONS_SCHEMA, RAW_ITEMS_SCHEMA, RawData
from components.schema import load_dataset

TINY = dict(num_users=120, num_items=60, num_domains=5, dense_domains=2, mean_length=12, seed=3)


def raw_from_rows(rows, items=None, bad_rows=0, bad_examples=()):
    """rows: (user_id, item_id, timestamp[, rating])."""
    users, item_ids, times, ratings = [], [], [], []
    for row in rows:
        users.append(str(row[0]))
        item_ids.append(str(row[1]))
        times.append(int(row[2]))
        ratings.append(float(row[3]) if len(row) > 3 else None)
    table = pa.table([users, item_ids, times, ratings], schema=RAW_INTERACTIONS_SCHEMA)
    items_table = None
    if items is not None:
        items_table = pa.table([list(items), [items[i] for i in items]], schema=RAW_ITEMS_SCHEMA)
    return RawData(
        interactions=table,
        items=items_table,
        rows_read=len(rows) + bad_rows,
        bad_rows=bad_rows,
        bad_examples=list(bad_examples),
    )


def loose(**kwargs) -> IngestOptions:
    return IngestOptions(min_user_interactions=1, min_item_interactions=1, **kwargs)


def test_leave_one_out_split_and_dense_reindex():
    rows = [
        ("u2", "b", 5),
        ("u2", "a", 1),
        ("u2", "c", 9),
        ("u1", "a", 3),
        ("u1", "c", 4),
        ("u1", "b", 7),
        ("u1", "d", 8),
    ]
    out = process(raw_from_rows(rows), loose())
    inter = out.interactions.to_pylist()
    # users in natural id order, items 1..n in natural id order, sorted by (user, time)
    assert out.items.column("item_id").to_pylist() == ["a", "b", "c", "d"]
    assert out.items.column("item_idx").to_pylist() == [1, 2, 3, 4]
    assert [(r["user_idx"], r["item_idx"], r["split"]) for r in inter] == [
        (0, 1, "train"),
        (0, 3, "train"),
        (0, 2, "valid"),
        (0, 4, "test"),
        (1, 1, "train"),
        (1, 2, "valid"),
        (1, 3, "test"),
    ]
    assert out.counts["users"] == 2 and out.counts["test_interactions"] == 2


def test_equal_timestamps_keep_file_order_and_exact_repeats_are_dropped():
    rows = [("u", "x", 5), ("u", "y", 5), ("u", "x", 5), ("u", "z", 5), ("u", "w", 1)]
    out = process(raw_from_rows(rows), loose())
    ids = out.items.column("item_id").to_pylist()
    order = [ids[i - 1] for i in out.interactions.column("item_idx").to_pylist()]
    assert order == ["w", "x", "y", "z"]
    assert out.counts["duplicates_removed"] == 1


def test_items_without_domain_get_none_and_domains_are_deduplicated():
    rows = [("u", i, t) for t, i in enumerate("abc")]
    out = process(raw_from_rows(rows, items={"a": ["X", "X", "Y"], "b": []}), loose())
    assert out.items.column("domains").to_pylist() == [["X", "Y"], ["(none)"], ["(none)"]]


def test_rating_threshold_and_the_filter_that_empties_the_result_is_named():
    rows = [("u", i, t, 2.0) for t, i in enumerate("abcd")] + [("v", "a", 1, 5.0)]
    with pytest.raises(InputError, match="rating-threshold 4"):
        process(raw_from_rows([r for r in rows if r[0] == "u"]), loose(rating_threshold=4))
    with pytest.raises(InputError, match="k-core"):
        process(raw_from_rows(rows), IngestOptions(rating_threshold=4))
    no_ratings = raw_from_rows([("u", "a", 1)])
    with pytest.raises(ConfigError, match="no ratings"):
        process(no_ratings, loose(rating_threshold=1))


def test_kcore_is_iterative():
    # item "rare" has 1 interaction; removing it drops user v below 3, which drops item "b" to 2
    rows = [
        ("u", "a", 1),
        ("u", "b", 2),
        ("u", "c", 3),
        ("w", "a", 1),
        ("w", "b", 2),
        ("w", "c", 3),
        ("v", "a", 1),
        ("v", "b", 2),
        ("v", "rare", 3),
    ]
    with pytest.raises(InputError, match="k-core"):  # the cascade removes everything
        process(
            raw_from_rows(rows), IngestOptions(min_user_interactions=3, min_item_interactions=3)
        )
    # with items >= 2: rare goes, v drops below 3, a/b/c keep 2 each
    out = process(
        raw_from_rows(rows), IngestOptions(min_user_interactions=3, min_item_interactions=2)
    )
    assert out.items.column("item_id").to_pylist() == ["a", "b", "c"]
    assert out.counts["users"] == 2


def test_too_many_malformed_rows_fail_naming_file_and_line():
    raw = raw_from_rows(
        [("u", "a", 1), ("u", "b", 2), ("u", "c", 3)],
        bad_rows=1,
        bad_examples=["ratings.csv:7: expected 4 fields, got 2"],
    )
    with pytest.raises(InputError, match="ratings.csv:7"):
        process(raw, loose())
    assert process(raw, loose(max_bad_fraction=0.5)).counts["bad_rows"] == 1


def test_global_time_split():
    rows = [("u", f"i{t}", t) for t in range(10)] + [("v", f"i{t}", t) for t in range(10)]
    out = process(
        raw_from_rows(rows), loose(split="global-time", valid_fraction=0.2, test_fraction=0.2)
    )
    table = out.interactions
    for name, lo, hi in (("train", 0, 5), ("valid", 6, 7), ("test", 8, 9)):
        times = table.filter(pc.equal(table.column("split"), name)).column("timestamp")
        assert pc.min(times).as_py() >= lo and pc.max(times).as_py() <= hi


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 5)), min_size=1, max_size=80
    )
)
def test_split_properties(rows):
    raw = raw_from_rows(rows)
    try:
        out = process(raw, loose())
    except InputError:  # only when no user has 3 distinct interactions
        assert all(len({(i, t) for u2, i, t in rows if u2 == u}) < 3 for u, _, _ in rows)
        return
    seqs = UserSequences.from_interactions(out.interactions, out.counts["items"])
    split = out.interactions.column("split").to_pylist()
    times = out.interactions.column("timestamp").to_numpy()
    for user in range(seqs.n_users):
        lo, hi = seqs.offsets[user], seqs.offsets[user + 1]
        labels = split[lo:hi]
        assert labels.count("test") == 1 and labels.count("valid") == 1
        assert labels[-2:] == ["valid", "test"]  # every train interaction precedes them
        assert np.all(np.diff(times[lo:hi]) >= 0)
    # re-running gives identical tables
    again = process(raw_from_rows(rows), loose())
    assert again.interactions.equals(out.interactions) and again.items.equals(out.items)


def test_synthetic_is_deterministic_to_the_byte_and_valid(tmp_path):
    first = ingest("synthetic", tmp_path / "a", **TINY)
    second = ingest("synthetic", tmp_path / "b", **TINY)
    assert first["files"] == second["files"]
    for name in ("items.parquet", "interactions.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    dataset = load_dataset(tmp_path / "a")
    assert dataset.n_users == first["counts"]["users"] > 50
    assert set(dataset.domain_names()) == {"dense-1", "dense-2", "sparse-1", "sparse-2", "sparse-3"}


def test_synthetic_plants_sparse_domains_and_their_power_users(tmp_path):
    ingest("synthetic", tmp_path / "d", num_users=600, num_items=300, seed=1)
    dataset = load_dataset(tmp_path / "d")
    domains = dataset.item_domains()
    per_domain: dict[str, int] = {}
    user_domain: dict[tuple[int, str], int] = {}
    user_total: dict[int, int] = {}
    for user, item in zip(
        dataset.interactions.column("user_idx").to_pylist(),
        dataset.interactions.column("item_idx").to_pylist(),
        strict=True,
    ):
        user_total[user] = user_total.get(user, 0) + 1
        for domain in domains[item]:
            per_domain[domain] = per_domain.get(domain, 0) + 1
            user_domain[(user, domain)] = user_domain.get((user, domain), 0) + 1
    dense = min(per_domain[d] for d in per_domain if d.startswith("dense"))
    sparse = max(per_domain[d] for d in per_domain if d.startswith("sparse"))
    assert sparse * 2 < dense
    power = [
        u
        for (u, d), n in user_domain.items()
        if d.startswith("sparse") and n >= 0.5 * user_total[u]
    ]
    assert len(power) >= 20


def test_output_is_replaced_atomically_and_failures_leave_it_untouched(tmp_path):
    out = tmp_path / "out"
    ingest("synthetic", out, **TINY)
    before = (out / "manifest.json").read_text()
    with pytest.raises(InputError, match="k-core"):
        ingest("synthetic", out, min_user_interactions=10_000, **TINY)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging leftovers
    ingest("synthetic", out, **{**TINY, "seed": 4})
    assert json.loads((out / "manifest.json").read_text())["options"]["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_parameters_are_named():
    with pytest.raises(ConfigError, match="--source"):
        ingest("nope", "/tmp/x")
    with pytest.raises(ConfigError, match="--split"):
        ingest("synthetic", "/tmp/x", split="random")
    with pytest.raises(ConfigError, match="--input is required"):
        ingest("movielens", "/tmp/x")


def test_cli_help_summary_and_error_exit(tmp_path):
    run = [sys.executable, "-m", "components.ingest"]
    help_text = subprocess.run(run + ["--help"], capture_output=True, text=True, check=True).stdout
    assert "--source" in help_text and "leave-one-out" in help_text
    ok = subprocess.run(
        run
        + [
            "--source",
            "synthetic",
            "--output",
            str(tmp_path / "s"),
            "--num-users",
            "100",
            "--num-items",
            "50",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "users" in ok.stdout
    bad = subprocess.run(
        run
        + [
            "--source",
            "movielens",
            "--input",
            str(tmp_path / "missing"),
            "--output",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "missing" in bad.stderr and not (tmp_path / "m").exists()


def test_importing_the_packages_does_not_import_torch():
    code = (
        "import sys, components, components.ingest, components.stats, components.evaluate, "
        "components.train, components.report, pipelines; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
