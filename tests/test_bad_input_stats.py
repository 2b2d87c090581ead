"""Issue 11, items 11 and 15: option values and unlabelled domains (stats, train, evaluate).

- Every bad option value is a one-line ``error:`` naming the option and what is allowed, exit 2,
  raised before any work, with nothing written (reproduced through each step's CLI ``main``).
- ``(none)`` (and MovieLens' ``unknown`` / ``(no genres listed)``) is not a domain to boost: by
  default weight 1 under every scheme, out of the targets' normalisation and the default fixed
  set, its own cohort in the reports; ``--boost-unlabelled`` / ``--unlabelled-domains`` change it,
  and the train step applies what weights.json recorded.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.core import weighting as W
from components.core.stats_artifact import load_domain_stats
from components.core.weighting import DomainWeighter, load_weights
from components.errors import ConfigError, InputError
from components.evaluate.cli import main as evaluate_main
from components.evaluate.evaluate import EvalConfig
from components.ingest import ingest
from components.schema import NO_DOMAIN, load_dataset
from components.stats import compute_stats
from components.stats.cli import main as stats_main
from components.stats.config import stats_config

SCHEME_COLUMNS = ("weight_fixed", "weight_inverse", "weight_composite", "weight_dynamic_target")

# ---------------------------------------------------------------------------------------------
# data: a `table` ingest with dense A, sparser B and C, and one item of an unlabelled "domain"
# ---------------------------------------------------------------------------------------------


def _write_source(root: Path, unlabelled_label: str) -> tuple[Path, Path]:
    """interactions.csv + items.csv; item i24 has ``unlabelled_label`` ("" = no domain)."""
    rng = random.Random(0)
    domains = {i: "A" for i in range(1, 16)} | {i: "B" for i in range(16, 21)}
    domains |= {i: "C" for i in range(21, 24)} | {24: unlabelled_label}
    rows = []
    for user in range(30):
        sequence = [rng.randint(1, 15) for _ in range(6)]
        sequence += [rng.randint(16, 20), rng.randint(21, 23)]
        if user % 5 == 0:
            sequence.append(24)  # 6 users: the sparsest "domain" by far
        rng.shuffle(sequence)
        rows += [f"u{user},i{item},{t}\n" for t, item in enumerate(sequence)]
    root.mkdir(parents=True, exist_ok=True)
    interactions, items = root / "interactions.csv", root / "items.csv"
    interactions.write_text("user_id,item_id,timestamp\n" + "".join(rows))
    items.write_text("item_id,domains\n" + "".join(f"i{i},{d}\n" for i, d in domains.items()))
    return interactions, items


def _dataset(root: Path, unlabelled_label: str = "") -> Path:
    interactions, items = _write_source(root / "source", unlabelled_label)
    out = root / "dataset"
    ingest(
        "table",
        out,
        str(interactions),
        items=str(items),
        min_user_interactions=3,
        min_item_interactions=1,
    )
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset dir, stats dir with the defaults)."""
    root = tmp_path_factory.mktemp("unlabelled")
    dataset = _dataset(root)
    compute_stats(dataset, root / "stats")
    return dataset, root / "stats"


def _rows(stats_dir: Path) -> dict[str, dict]:
    table = pq.read_table(stats_dir / "domain_stats.parquet")
    return {r["domain"]: r for r in table.to_pylist()}


# ---------------------------------------------------------------------------------------------
# item 15: unlabelled domains
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["", "unknown", "(no genres listed)"])
def test_unlabelled_domain_keeps_weight_one_under_every_scheme(tmp_path, label):
    dataset = _dataset(tmp_path, label)
    name = label or NO_DOMAIN
    summary = compute_stats(dataset, tmp_path / "stats")
    rows = _rows(tmp_path / "stats")
    assert name in rows and rows[name]["n_d"] == min(r["n_d"] for r in rows.values())
    assert rows[name]["unlabelled"] is True
    assert [r["domain"] for r in rows.values() if r["unlabelled"]] == [name]
    for column in SCHEME_COLUMNS:
        assert rows[name][column] == 1.0, column
    weights = load_weights(tmp_path / "stats")
    assert name not in weights["params"]["fixed_domains"]
    assert weights["params"]["unlabelled_domains"] == [name]
    assert weights["params"]["boost_unlabelled"] is False
    assert all(weights["targets"][s][name] == 1.0 for s in weights["targets"])
    assert summary["unlabelled_domains"] == [name] and name not in summary["sparsest"]
    # the labelled domains are still boosted: the sparsest real one gets the largest weight
    assert rows["C"]["weight_inverse"] == max(r["weight_inverse"] for r in rows.values())
    assert rows["C"]["weight_inverse"] > 1 > rows["A"]["weight_inverse"]


def test_unlabelled_domain_is_out_of_every_targets_normalisation(data):
    """The labelled domains' targets are exactly those of the dataset without the unlabelled
    one: p̄ = 1/|labelled|, shares, mean-one rescale, min-max and z-scores over them only."""
    _, stats_dir = data
    weights = load_weights(stats_dir)
    labelled = [d for d in weights["domains"] if d != NO_DOMAIN]
    stats = weights["domain_stats"]
    n = np.array([stats[d]["n"] for d in labelled], dtype=float)
    expected_inverse = W.inverse_weights(n / n.sum(), 0.5, 0.5, 5.0)
    np.testing.assert_allclose(
        [weights["targets"]["inverse"][d] for d in labelled], expected_inverse, rtol=1e-12
    )
    expected_composite = W.composite_weights(
        W.idf_from_counts(n),
        np.array([stats[d]["user_ratio"] for d in labelled]),
        np.array([stats[d]["entropy"] for d in labelled]),
    )
    np.testing.assert_allclose(
        [weights["targets"]["composite"][d] for d in labelled], expected_composite, rtol=1e-12
    )
    assert weights["params"]["fixed_domains"] == W.default_fixed_domains(labelled, n)


def test_boost_unlabelled_treats_it_as_an_ordinary_domain(data, tmp_path):
    dataset, _ = data
    summary = compute_stats(dataset, tmp_path / "stats", boost_unlabelled=True)
    rows = _rows(tmp_path / "stats")
    assert not any(r["unlabelled"] for r in rows.values())
    assert rows[NO_DOMAIN]["weight_inverse"] == max(r["weight_inverse"] for r in rows.values())
    assert rows[NO_DOMAIN]["weight_inverse"] > 1 and rows[NO_DOMAIN]["weight_fixed"] == 2.0
    assert NO_DOMAIN in summary["fixed_domains"] and summary["sparsest"][0] == NO_DOMAIN
    weights = load_weights(tmp_path / "stats")
    assert weights["params"]["unlabelled_domains"] == []
    assert weights["params"]["boost_unlabelled"] is True


def test_unlabelled_domains_option_names_other_domains(data, tmp_path):
    dataset, _ = data
    compute_stats(dataset, tmp_path / "stats", unlabelled_domains=["C"])
    rows = _rows(tmp_path / "stats")
    assert rows["C"]["unlabelled"] and rows["C"]["weight_inverse"] == 1.0
    assert not rows[NO_DOMAIN]["unlabelled"] and rows[NO_DOMAIN]["weight_inverse"] > 1
    # an explicitly named fixed domain is honoured, even an unlabelled one
    compute_stats(dataset, tmp_path / "named", fixed_domains=[NO_DOMAIN])
    assert _rows(tmp_path / "named")[NO_DOMAIN]["weight_fixed"] == 2.0


def test_train_weighter_applies_what_stats_recorded(data):
    torch = pytest.importorskip("torch")
    dataset_dir, stats_dir = data
    dataset = load_dataset(dataset_dir)
    weights = load_weights(stats_dir)
    item_domains = dataset.item_domains()
    none_item = next(i for i, ds in enumerate(item_domains) if ds == [NO_DOMAIN])
    train = dataset.interactions.filter(
        np.asarray(dataset.interactions.column("split").to_pylist()) == "train"
    )
    targets = torch.from_numpy(train.column("item_idx").to_numpy().astype(np.int64))
    for scheme, target in [("fixed", None), ("inverse", None), ("dynamic", "composite")]:
        weighter = DomainWeighter.from_weights(weights, item_domains, scheme, target=target)
        assert weighter.unlabelled == [NO_DOMAIN]
        recorded = weights["targets"][target or scheme]
        for d, w in zip(weighter.domains, weighter.target_weights(), strict=True):
            assert w == pytest.approx(recorded[d], rel=1e-12)
        weighter.observe(targets)
        weighter.epoch_end(1, 1)  # dynamic: one EMA step from the running counts
        assert weighter.current_weights()[NO_DOMAIN] == 1.0
        assert float(weighter.example_weights(torch.tensor([none_item]))[0]) == 1.0
    # a weights.json written before this option existed: nothing is held at 1
    old = json.loads(json.dumps(weights))
    del old["params"]["unlabelled_domains"]
    weighter = DomainWeighter.from_weights(old, item_domains, "inverse")
    assert weighter.unlabelled == [] and weighter.current_weights()[NO_DOMAIN] > 1
    old["params"]["unlabelled_domains"] = "(none)"
    with pytest.raises(InputError, match="unlabelled_domains"):
        DomainWeighter.from_weights(old, item_domains, "inverse")


def test_reports_and_evaluate_label_the_unlabelled_cohort(data):
    dataset_dir, stats_dir = data
    markdown = (stats_dir / "report.md").read_text()
    assert "Unlabelled cohort" in markdown and f"| {NO_DOMAIN} (unlabelled) |" in markdown
    assert "reported as their own cohort" in markdown
    table_before, cohort = markdown.split("Unlabelled cohort")
    assert f"{NO_DOMAIN} (unlabelled)" not in table_before.split("Domains sorted")[1]
    assert f"{NO_DOMAIN} (unlabelled)" in (stats_dir / "report.html").read_text()
    stats = load_domain_stats(stats_dir, load_dataset(dataset_dir))
    assert stats.unlabelled == [NO_DOMAIN]
    assert NO_DOMAIN not in stats.sparse_domains() and "C" in stats.sparse_domains()


def test_stats_cli_unlabelled_flags(data, tmp_path, capsys):
    dataset, _ = data
    assert stats_main(["--dataset", str(dataset), "--output", str(tmp_path / "a")]) == 0
    assert f"unlabelled (weight 1, not boosted): {NO_DOMAIN}" in capsys.readouterr().out
    argv = ["--dataset", str(dataset), "--output", str(tmp_path / "b"), "--boost-unlabelled"]
    assert stats_main(argv) == 0
    assert "not boosted" not in capsys.readouterr().out
    assert _rows(tmp_path / "b")[NO_DOMAIN]["weight_inverse"] > 1
    argv = ["--dataset", str(dataset), "--output", str(tmp_path / "c")]
    assert stats_main([*argv, "--unlabelled-domains", "B", NO_DOMAIN]) == 0
    assert load_weights(tmp_path / "c")["params"]["unlabelled_domains"] == [NO_DOMAIN, "B"]


# ---------------------------------------------------------------------------------------------
# item 11: bad option values → one `error:` line naming the option, exit 2, nothing written
# ---------------------------------------------------------------------------------------------


def _assert_refused(code: int, capsys, option: str, output: Path) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert "Traceback" not in captured.err
    assert option in errors[0], errors[0]
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}.tmp-*"))  # no staging left either
    return errors[0]


def _case_id(value) -> str:
    return " ".join(value) if isinstance(value, list) else ""


STATS_CASES = [
    (["--gamma", "nan"], "--gamma"),
    (["--gamma", "inf"], "--gamma"),
    (["--gamma", "-1"], "--gamma"),
    (["--alpha", "nan"], "--alpha"),
    (["--alpha=-inf"], "--alpha"),
    (["--alpha", "-0.5"], "--alpha"),
    (["--w-min", "nan"], "--w-min"),
    (["--w-min", "0"], "--w-min"),
    (["--w-max", "inf"], "--w-max"),
    (["--w-min", "3", "--w-max", "2"], "--w-min/--w-max"),
    (["--fixed-weight", "inf"], "--fixed-weight"),
    (["--fixed-weight", "0"], "--fixed-weight"),
    (["--beta", "nan"], "--beta"),
    (["--beta", "1"], "--beta"),
    (["--lambdas", "nan", "0.3", "0.1"], "--lambdas"),
    (["--lambdas", "inf", "1", "1"], "--lambdas"),
    (["--lambdas", "-1", "1", "1"], "--lambdas"),
    (["--lambdas", "0", "0", "0"], "--lambdas"),
    (["--power-threshold", "nan"], "--power-threshold"),
    (["--power-threshold", "0"], "--power-threshold"),
    (["--power-threshold", "0.5", "1.5"], "--power-threshold"),
]


@pytest.mark.parametrize(("args", "option"), STATS_CASES, ids=_case_id)
def test_stats_bad_values_are_one_line_errors(data, tmp_path, capsys, args, option):
    dataset, _ = data
    out = tmp_path / "out"
    code = stats_main(["--dataset", str(dataset), "--output", str(out), *args])
    _assert_refused(code, capsys, option, out)


def test_stats_values_are_checked_before_the_dataset_is_read(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--dataset", str(tmp_path / "missing"), "--output", str(out), "--gamma", "nan"]
    line = _assert_refused(stats_main(argv), capsys, "--gamma", out)
    assert "missing" not in line


TRAIN_CASES = [
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--weight-decay", "nan"], "--weight-decay"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--grad-clip", "nan"], "--grad-clip"),
    (["--dropout", "nan"], "dropout"),
    (["--dropout", "1"], "dropout"),
    (["--loss", "sampled", "--negatives", "0"], "--negatives"),
    (["--loss", "sampled", "--negatives", "1000000000000"], "--negatives"),
    (["--loss", "gbce", "--negatives", "25"], "--negatives"),  # the catalogue has 24 items
    (["--loss", "mml", "--negatives", "-3"], "--negatives"),
    (["--loss", "sampled", "--temperature", "0"], "--temperature"),
    (["--loss", "sampled", "--temperature", "nan"], "--temperature"),
    (["--loss", "sampled", "--temperature", "-1"], "--temperature"),
    (["--loss", "gbce", "--gbce-t", "nan"], "--gbce-t"),
    (["--loss", "gbce", "--gbce-t", "1.5"], "--gbce-t"),
    (["--loss", "gbce", "--gbce-t", "-0.1"], "--gbce-t"),
    (["--scheme", "dynamic", "--beta", "nan"], "--beta"),
    (["--scheme", "dynamic", "--beta", "1"], "--beta"),
    (["--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize(("args", "option"), TRAIN_CASES, ids=_case_id)
def test_train_bad_values_are_one_line_errors(data, tmp_path, capsys, args, option):
    pytest.importorskip("torch")
    from components.train.cli import main as train_main

    dataset, stats_dir = data
    out = tmp_path / "model"
    argv = ["--dataset", str(dataset), "--weights", str(stats_dir), "--output", str(out)]
    argv += ["--device", "cpu", "--epochs", "1", "--max-len", "8", "--no-progress", *args]
    line = _assert_refused(train_main(argv), capsys, option, out)
    if "1000000000000" in args or "25" in args:
        assert "24 items" in line  # names the catalogue's size and what is allowed


def test_train_values_are_checked_before_the_dataset_is_read(tmp_path, capsys):
    pytest.importorskip("torch")
    from components.train.cli import main as train_main

    out = tmp_path / "model"
    argv = ["--dataset", str(tmp_path / "missing"), "--output", str(out), "--lr", "nan"]
    line = _assert_refused(train_main([*argv, "--device", "cpu"]), capsys, "--lr", out)
    assert "missing" not in line


EVAL_CASES = [
    (["--k", "0"], "--k"),
    (["--bootstrap", "-1"], "--bootstrap"),
    (["--batch-size", "0"], "--batch-size"),
    (["--seed", "-2"], "--seed"),
    (["--device", "tpu"], "--device"),
]


@pytest.mark.parametrize(("args", "option"), EVAL_CASES, ids=_case_id)
def test_evaluate_bad_values_are_one_line_errors(data, tmp_path, capsys, args, option):
    dataset, stats_dir = data
    out = tmp_path / "eval"
    argv = ["--dataset", str(dataset), "--stats", str(stats_dir), "--output", str(out)]
    argv += ["--model", str(tmp_path / "no-model"), *args]  # checked before the model is read
    _assert_refused(evaluate_main(argv), capsys, option, out)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"confidence": math.nan}, "confidence"),
        ({"confidence": 1.0}, "confidence"),
        ({"ks": (math.nan,)}, "--k"),
        ({"ks": (2.5,)}, "--k"),
        ({"bootstrap": 1.5}, "--bootstrap"),
        ({"exclude_seen": "yes"}, "--exclude-seen"),
    ],
)
def test_eval_config_rejects_values_the_cli_cannot_give(options, option):
    with pytest.raises(ConfigError, match=option):
        EvalConfig(**options)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"stats_options": {"gamma": math.nan}}, "--gamma"),
        ({"stats_options": {"w_min": 2.0, "w_max": 1.0}}, "--w-min/--w-max"),
        ({"stats_options": {"lambdas": [0, 0, 0]}}, "--lambdas"),
        ({"stats_options": {"boost_unlabelled": "no"}}, "--boost-unlabelled"),
        ({"train_options": {"lr": math.inf}}, "--lr"),
        ({"train_options": {"weight_decay": math.nan}}, "--weight-decay"),
        ({"train_options": {"temperature": 0}}, "--temperature"),
        ({"train_options": {"negatives": 0}}, "--negatives"),
        ({"train_options": {"dropout": math.nan}}, "dropout"),
        ({"eval_options": {"confidence": 2}}, "confidence"),
    ],
)
def test_pipeline_pre_run_check_catches_the_same_values(params, named):
    pytest.importorskip("kfp")
    from pipelines.validate import check_run_params

    with pytest.raises(ConfigError, match=named) as exc:
        check_run_params(params)
    assert "\n" not in str(exc.value)
    assert stats_config(boost_unlabelled=True).boost_unlabelled is True  # valid ones pass
