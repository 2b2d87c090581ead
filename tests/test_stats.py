"""The stats step (SPEC §4): hand-computed statistics, outputs, bad input, synthetic and real data."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core.weighting import DomainWeighter, load_weights
from components.errors import ConfigError, InputError
from components.schema import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, load_dataset
from components.stats import compute_stats

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Items: 1 A, 2 A+B (multi-label), 3 B, 4 C, 5 D (D only appears in valid/test).
ITEMS = {1: ["A"], 2: ["A", "B"], 3: ["B"], 4: ["C"], 5: ["D"]}
TRAIN = {0: [1, 2, 3], 1: [2, 4, 1, 1], 2: [4, 4, 3]}
HELD_OUT = {0: [4, 1], 1: [3, 5], 2: [5, 2]}  # valid, test: must not count


def write_dataset(root: Path, items=ITEMS, train=TRAIN, held_out=HELD_OUT) -> Path:
    """A tiny ingest output written with the contract's schemas."""
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "item_idx": list(items),
                "item_id": [f"i{i}" for i in items],
                "domains": list(items.values()),
            },
            schema=ITEMS_SCHEMA,
        ),
        root / "items.parquet",
    )
    rows = []
    for user in sorted(train):
        sequence = [(i, "train") for i in train[user]]
        sequence += list(zip(held_out[user], ("valid", "test"), strict=True))
        rows += [(user, item, t, split) for t, (item, split) in enumerate(sequence)]
    users, item_idx, ts, split = zip(*rows, strict=True)
    pq.write_table(
        pa.table(
            {"user_idx": users, "item_idx": item_idx, "timestamp": ts, "split": split},
            schema=INTERACTIONS_SCHEMA,
        ),
        root / "interactions.parquet",
    )
    manifest = {
        "counts": {"users": len(train), "items": len(items), "interactions": len(rows)},
        "files": {
            name: {"sha256": hashlib.sha256((root / name).read_bytes()).hexdigest()}
            for name in ("items.parquet", "interactions.parquet")
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("tiny")
    dataset = write_dataset(root / "dataset")
    summary = compute_stats(dataset, root / "stats", power_thresholds=(0.5, 0.3))
    return dataset, root / "stats", summary


def rows_by_domain(stats_dir: Path) -> dict[str, dict]:
    return {r["domain"]: r for r in pq.read_table(stats_dir / "domain_stats.parquet").to_pylist()}


def test_statistics_equal_hand_computed_numbers(tiny):
    _, out, _ = tiny
    rows = rows_by_domain(out)
    # (interaction, domain) rows: u0 A2 B2, u1 A3 B1 C1, u2 B1 C2 → A 5, B 4, C 3, D 0; Σ 12
    assert {d: r["n_d"] for d, r in rows.items()} == {"A": 5, "B": 4, "C": 3, "D": 0}
    assert {d: r["u_d"] for d, r in rows.items()} == {"A": 2, "B": 3, "C": 2, "D": 0}
    assert {d: r["i_d"] for d, r in rows.items()} == {"A": 2, "B": 2, "C": 1, "D": 0}
    for d, n in (("A", 5), ("B", 4), ("C", 3)):
        assert rows[d]["p_d"] == pytest.approx(n / 12)
        assert rows[d]["idf_d"] == pytest.approx(math.log(12 / n))
    assert rows["A"]["user_ratio"] == pytest.approx(2 / 3) and rows["B"]["user_ratio"] == 1.0
    # A's interactions over its items: item 1 ×3, item 2 ×2 → H(0.6, 0.4) / log 2
    assert rows["A"]["entropy"] == pytest.approx(
        -(0.6 * math.log(0.6) + 0.4 * math.log(0.4)) / math.log(2)
    )
    assert rows["B"]["entropy"] == pytest.approx(1.0) and rows["C"]["entropy"] == 0.0
    # user shares: u0 A 2/3 B 2/3; u1 A 3/4 B 1/4 C 1/4; u2 B 1/3 C 2/3
    assert {d: r["power_users_0.5"] for d, r in rows.items()} == {"A": 2, "B": 1, "C": 1, "D": 0}
    assert {d: r["power_users_0.3"] for d, r in rows.items()} == {"A": 2, "B": 2, "C": 1, "D": 0}


def test_inverse_and_fixed_weights_equal_hand_computed_numbers(tiny):
    _, out, _ = tiny
    rows = rows_by_domain(out)
    raw = {"A": (1 / 3 / (5 / 12)) ** 0.5, "B": 1.0, "C": (1 / 3 / (3 / 12)) ** 0.5}
    mean = (5 * raw["A"] + 4 * raw["B"] + 3 * raw["C"]) / 12
    for d in "ABC":
        assert rows[d]["weight_inverse"] == pytest.approx(raw[d] / mean, rel=1e-12)
    assert rows["C"]["weight_inverse"] > rows["B"]["weight_inverse"] > rows["A"]["weight_inverse"]
    # balanced shares: no domain below 0.5/|D|, so fixed defaults to the sparsest one, C
    assert {d: r["weight_fixed"] for d, r in rows.items()} == {"A": 1, "B": 1, "C": 2, "D": 1}
    assert all(r["weight_dynamic_target"] == r["weight_inverse"] for r in rows.values())


def test_zero_train_domain_is_kept_with_weight_one_and_reported(tiny):
    _, out, summary = tiny
    rows = rows_by_domain(out)
    d = rows["D"]
    assert d["no_train_interactions"] and not rows["A"]["no_train_interactions"]
    assert d["idf_d"] is None and d["entropy"] is None and d["p_d"] == 0.0
    assert d["weight_inverse"] == d["weight_composite"] == d["weight_fixed"] == 1.0
    assert summary["zero_train_domains"] == ["D"]
    weights = load_weights(out / "weights.json")
    assert weights["zero_train_domains"] == ["D"] and weights["targets"]["inverse"]["D"] == 1.0
    assert "D (no train data)" in (out / "report.md").read_text()
    assert "without train interactions" in (out / "report.html").read_text()


def test_outputs_are_sorted_sparsest_to_densest_and_power_users_listed(tiny):
    _, out, _ = tiny
    table = pq.read_table(out / "domain_stats.parquet")
    assert table.column("domain").to_pylist() == ["D", "C", "B", "A"]
    assert load_weights(out)["domains"] == ["D", "C", "B", "A"]
    power = pq.read_table(out / "power_users.parquet")
    assert power.schema.field("user_idx").type == pa.int32()
    got = {(r["user_idx"], r["domain"]): r["share"] for r in power.to_pylist()}
    # every (user, domain) share >= min(θ) = 0.3; u1's B and C (1/4) are below it
    assert got == pytest.approx(
        {(0, "A"): 2 / 3, (0, "B"): 2 / 3, (1, "A"): 3 / 4, (2, "B"): 1 / 3, (2, "C"): 2 / 3}
    )


def test_report_renders_table_and_chart(tiny):
    _, out, _ = tiny
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert md.index("| D (no train data) |") < md.index("| C |") < md.index("| A |")
    assert "\n| --- | ---: | ---: |" in md  # domain names left, numbers right-aligned
    assert "<title>Domain sparsity statistics</title>" in html and "</html>" in html
    assert (
        "<svg" in html and "<table>" in html and html.index("<td>C</td>") < html.index("<td>A</td>")
    )
    assert (out / "domain_weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weights_json_feeds_the_weighter_and_matches_the_table(tiny):
    dataset_dir, out, _ = tiny
    weights = load_weights(out / "weights.json")
    dataset = load_dataset(dataset_dir)
    assert weights["dataset"]["n_items"] == 5 and weights["params"]["fixed_domains"] == ["C"]
    rows = rows_by_domain(out)
    for scheme, column in (("inverse", "weight_inverse"), ("fixed", "weight_fixed")):
        weighter = DomainWeighter.from_weights(weights, dataset.item_domains(), scheme)
        for d, w in weighter.current_weights().items():
            assert w == pytest.approx(rows[d][column], rel=1e-12)
            assert weights["targets"][scheme][d] == pytest.approx(w, rel=1e-12)
    composite = DomainWeighter.from_weights(
        weights, dataset.item_domains(), "dynamic", target="composite"
    )
    assert composite.target_weights().tolist() == pytest.approx(
        [rows[d]["weight_composite"] for d in composite.domains]
    )


def test_item_without_domain_counts_in_none_domain(tmp_path):
    items = {**ITEMS, 5: []}
    out = tmp_path / "stats"
    compute_stats(write_dataset(tmp_path / "ds", items=items, train={**TRAIN, 2: [4, 5, 3]}), out)
    rows = rows_by_domain(out)
    assert rows["(none)"]["n_d"] == 1 and "D" not in rows


def test_fixed_domains_given_and_unknown_fixed_domain_lists_existing_ones(tiny, tmp_path):
    dataset_dir, _, _ = tiny
    compute_stats(dataset_dir, tmp_path / "ok", fixed_domains=["A", "B"], fixed_weight=3.0)
    rows = rows_by_domain(tmp_path / "ok")
    assert {d: r["weight_fixed"] for d, r in rows.items()} == {"A": 3, "B": 3, "C": 1, "D": 1}
    with pytest.raises(
        ConfigError,
        match=r"\['Film-Noir'\]; existing domains: \['A', 'B', "
        r"'C', 'D'\]",
    ):
        compute_stats(dataset_dir, tmp_path / "bad", fixed_domains=["Film-Noir"])
    assert not (tmp_path / "bad").exists()  # no partial output


def test_not_an_ingest_dir_and_bad_parameters_are_clear_errors(tiny, tmp_path):
    dataset_dir, _, _ = tiny
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an ingest output, missing"):
        compute_stats(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(InputError, match="no such file or directory"):
        compute_stats(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="--w-min/--w-max"):
        compute_stats(dataset_dir, tmp_path / "out", w_min=3.0, w_max=2.0)
    with pytest.raises(ConfigError, match="--power-threshold"):
        compute_stats(dataset_dir, tmp_path / "out", power_thresholds=(1.5,))
    assert not (tmp_path / "out").exists()


def test_dataset_without_train_interactions_is_an_input_error(tmp_path):
    dataset = write_dataset(tmp_path / "ds", train={0: [], 1: [], 2: []})
    with pytest.raises(InputError, match="no train-split interactions"):
        compute_stats(dataset, tmp_path / "out")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "components.stats", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=Path(__file__).parents[1],
    )


def test_cli_writes_outputs_and_reports_errors_with_exit_2(tiny, tmp_path):
    dataset_dir, _, _ = tiny
    ok = _cli(
        "--dataset",
        str(dataset_dir),
        "--output",
        str(tmp_path / "out"),
        "--fixed-domains",
        "A",
        "--power-threshold",
        "0.5",
    )
    assert ok.returncode == 0, ok.stderr
    assert "sparsest: D, C, B" in ok.stdout and "fixed domains: A" in ok.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".dwlrec-output.json",  # the marker: a re-run may replace this directory
        "domain_stats.parquet",
        "domain_weights.png",
        "power_users.parquet",
        "report.html",
        "report.md",
        "weights.json",
    ]
    bad = _cli(
        "--dataset", str(dataset_dir), "--output", str(tmp_path / "bad"), "--fixed-domains", "Nope"
    )
    assert bad.returncode == 2 and "error: fixed_domains: unknown domain(s) ['Nope']" in bad.stderr
    assert "Traceback" not in bad.stderr
    help_text = _cli("--help").stdout
    assert "--fixed-domains" in help_text and "clearly sparse" in help_text


def test_synthetic_planted_sparse_domains_rank_sparsest(tmp_path):
    ingest = pytest.importorskip("components.ingest").ingest
    manifest = ingest(
        "synthetic",
        tmp_path / "syn",
        num_users=400,
        num_items=200,
        num_domains=6,
        dense_domains=2,
        mean_length=15,
        seed=3,
    )
    planted = manifest["synthetic"]["sparse"]
    compute_stats(tmp_path / "syn", tmp_path / "stats")
    weights = load_weights(tmp_path / "stats")
    assert sorted(weights["domains"][: len(planted)]) == sorted(planted)
    inverse = weights["targets"]["inverse"]
    assert min(inverse[d] for d in planted) > max(
        inverse[d] for d in manifest["synthetic"]["dense"]
    )
    assert weights["params"]["fixed_domains"] and set(weights["params"]["fixed_domains"]) <= set(
        planted
    )  # the default fixed target set is (clearly) sparse


def _real(tmp_path, source: str, name: str) -> dict:
    if not (SHARED / name).is_dir():
        pytest.skip(f"{SHARED / name} not present")
    ingest = pytest.importorskip("components.ingest").ingest
    try:
        ingest(source, tmp_path / name, str(SHARED / name))
    except ImportError as exc:  # the reader is not there yet
        pytest.skip(f"ingest --source {source} unavailable: {exc}")
    compute_stats(tmp_path / name, tmp_path / f"{name}-stats")
    return load_weights(tmp_path / f"{name}-stats")


def _ranked_by_inverse(weights: dict) -> list[str]:
    inverse = weights["targets"]["inverse"]
    return sorted(inverse, key=lambda d: -inverse[d])


@pytest.mark.slow
def test_movielens_100k_sparse_genres_get_the_largest_weights(tmp_path):
    weights = _real(tmp_path, "movielens", "ml-100k")
    active = [d for d in weights["domains"] if weights["domain_counts"][d] > 0]
    assert {"Documentary", "Film-Noir"} <= set(active[:5])  # among the sparsest
    ranked = [d for d in _ranked_by_inverse(weights) if d in active]
    assert {"Documentary", "Film-Noir"} <= set(ranked[:5])
    assert set(ranked[-2:]) == {"Drama", "Comedy"}
    assert np.isclose(
        weights["targets"]["inverse"]["Drama"], min(weights["targets"]["inverse"].values())
    )


@pytest.mark.slow
def test_amazon_beauty_fragrance_and_bath_get_the_largest_weights(tmp_path):
    weights = _real(tmp_path, "sequences", "amazon-beauty")
    assert set(_ranked_by_inverse(weights)[:2]) == {"Fragrance", "Bath & Body"}
