"""The report step: paired comparison of eval dirs, its files and its errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from eval_fixtures import (
    FakeModel,
    chain_sequences,
    oracle_model,
    write_dataset,
    write_model_dir,
    write_stats,
)

from components.core.stats_artifact import load_domain_stats
from components.errors import ConfigError
from components.evaluate.evaluate import EvalConfig, evaluate, evaluate_model, write_eval_dir
from components.report.cli import main as report_cli
from components.report.cli import parse_evals
from components.report.report import report
from components.schema import load_dataset

torch.set_num_threads(1)
N_ITEMS = 60


def noisy_oracle(n_items: int, noise: float, seed: int) -> FakeModel:
    """The oracle's one-hot scores plus noise: finds the target for some users only."""
    oracle = oracle_model(n_items)
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(n_items + 1, n_items + 1, generator=generator) * noise

    def state(prefix):
        return oracle.state_fn(prefix) + table[prefix[:, -1]]

    return FakeModel(n_items, state, torch.eye(n_items + 1))


@pytest.fixture
def setup(tmp_path):
    dataset_dir = write_dataset(tmp_path / "data", chain_sequences(150, N_ITEMS, 9), N_ITEMS)
    stats_dir = write_stats(tmp_path / "stats", dataset_dir)
    dataset = load_dataset(dataset_dir)
    stats = load_domain_stats(stats_dir, dataset)

    def eval_dir(name: str, model, scheme: str = "none", exclude_seen: bool = False):
        config = EvalConfig(bootstrap=50, exclude_seen=exclude_seen)
        per_user, rows, info = evaluate_model(dataset, stats, model, 8, config, "cpu")
        model_config = {"scheme": scheme, "loss": "ce", "model": {"max_len": 8}}
        write_eval_dir(tmp_path / name, dataset, stats, config, per_user, rows, info, model_config)
        return str(tmp_path / name)

    return tmp_path, dataset_dir, stats_dir, eval_dir


def test_variant_against_itself_has_zero_lift_everywhere(setup):
    tmp_path, _, _, eval_dir = setup
    base = eval_dir("e_base", noisy_oracle(N_ITEMS, 0.8, seed=1))
    summary = report({"none": base, "copy": base}, tmp_path / "rep", bootstrap=200)
    rows = pq.read_table(tmp_path / "rep" / "comparison.parquet").to_pylist()
    copy_rows = [r for r in rows if r["variant"] == "copy" and r["n"] > 0]
    assert copy_rows
    for r in copy_rows:
        assert r["delta"] == 0.0 and r["delta_low"] == 0.0 and r["delta_high"] == 0.0
        assert r["significant"] is False
        if r["baseline_value"] > 0:
            assert r["lift_low"] == r["lift_high"] == 0.0
    assert summary["significant"]["copy"]["ndcg@10"]["sparse_gains"] == 0


def test_better_variant_is_flagged_with_a_paired_ci(setup):
    tmp_path, _, _, eval_dir = setup
    base = eval_dir("e_base", noisy_oracle(N_ITEMS, 1.0, seed=1))
    better = eval_dir("e_better", noisy_oracle(N_ITEMS, 0.3, seed=1), scheme="dynamic")
    summary = report({"dynamic": better, "none": base}, tmp_path / "rep", bootstrap=300)
    table = pq.read_table(tmp_path / "rep" / "comparison.parquet")
    rows = table.to_pylist()
    overall = {(r["variant"], r["metric"]): r for r in rows if r["cohort"] == "overall"}
    gain = overall[("dynamic", "ndcg@10")]
    assert gain["value"] > gain["baseline_value"] > 0
    assert gain["significant"] and gain["delta_low"] > 0
    assert gain["lift"] == pytest.approx(gain["value"] / gain["baseline_value"] - 1)
    assert gain["lift_low"] <= gain["lift"] <= gain["lift_high"]
    assert gain["value_low"] <= gain["value"] <= gain["value_high"]
    # the baseline row compares the baseline with itself
    assert overall[("none", "ndcg@10")]["delta_high"] == 0.0
    # every cohort × variant × metric is there: overall + 3 domains + 2 θ × 3 domains
    assert table.num_rows == (1 + 3 + 6) * 2 * 2
    assert summary["variants"] == ["none", "dynamic"]
    assert "dynamic vs none (ndcg@10)" in summary["findings"][0]
    assert "overall" in summary["findings"][0] and "(significant)" in summary["findings"][0]
    html = (tmp_path / "rep" / "report.html").read_text()
    # the frontier and the domain chart (these eval dirs carry no training logs)
    assert html.count("<svg") == 2
    assert "▲" in html and "rare (sparse)" in html
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| overall | 150 |" in md
    # a cohort smaller than --min-users is never flagged, whatever its CI says
    report({"dynamic": better, "none": base}, tmp_path / "rep2", bootstrap=300, min_users=151)
    strict = pq.read_table(tmp_path / "rep2" / "comparison.parquet").to_pylist()
    assert not any(r["significant"] for r in strict)

    # same seeds, same CIs (--min-users 151 also pools the now too small domains: extra rows)
    def keyed(table):
        return {(r["cohort"], r["domain"], r["theta"], r["variant"], r["metric"]): r for r in table}

    strict_by_key = keyed(strict)
    np.testing.assert_array_equal(
        [strict_by_key[key]["delta_low"] for key in keyed(rows)],
        [r["delta_low"] for r in keyed(rows).values()],
    )


def test_cli_on_real_evaluations_renders_charts_and_curves(setup, capsys):
    tmp_path, dataset_dir, stats_dir, _ = setup
    evals = []
    for scheme, seed in (("none", 0), ("dynamic", 1)):
        model_dir = write_model_dir(tmp_path / f"m_{scheme}", dataset_dir, scheme, seed)
        evaluate(dataset_dir, stats_dir, model_dir, tmp_path / f"e_{scheme}", bootstrap=20)
        evals.append(f"{scheme}={tmp_path / f'e_{scheme}'}")
    out = tmp_path / "rep"
    assert report_cli(["--eval", *evals, "--output", str(out), "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "dynamic vs none (ndcg@10)" in printed
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 4  # frontier, domain bars, training curves, weight trajectories
    assert "Training curves" in html and "Domain weight trajectories" in html
    assert json.loads((out / "summary.json").read_text())["baseline"] == "none"


def test_errors_name_the_problem_and_write_nothing(setup, capsys, tmp_path):
    tmp_path, _, _, eval_dir = setup
    base = eval_dir("e_base", oracle_model(N_ITEMS))
    out = tmp_path / "rep"
    with pytest.raises(ConfigError, match="--baseline 'generic'"):
        report({"none": base}, out, baseline="generic")
    with pytest.raises(ConfigError, match=r"report: unknown option\(s\) \['ks'\]"):
        report({"none": base}, out, ks=[10])
    with pytest.raises(ConfigError, match="--min-users: must be >= 1"):
        report({"none": base}, out, min_users=0)
    with pytest.raises(ConfigError, match="duplicate variant name 'none'"):
        parse_evals([f"none={base}", f"none={base}"])
    with pytest.raises(ConfigError, match="expected NAME=DIR"):
        parse_evals([base])
    assert report_cli(["--eval", f"none={base}", f"none={base}", "--output", str(out)]) == 2
    assert "duplicate" in capsys.readouterr().err
    (tmp_path / "not_an_eval").mkdir()
    assert report_cli(["--eval", f"none={tmp_path / 'not_an_eval'}", "--output", str(out)]) == 2
    assert "not an evaluate step output" in capsys.readouterr().err
    # another dataset
    other_data = write_dataset(tmp_path / "d2", chain_sequences(40, N_ITEMS, 7, seed=5), N_ITEMS)
    other_stats = write_stats(tmp_path / "s2", other_data)
    dataset = load_dataset(other_data)
    stats = load_domain_stats(other_stats, dataset)
    config = EvalConfig(bootstrap=0)
    per_user, rows, info = evaluate_model(dataset, stats, oracle_model(N_ITEMS), 8, config, "cpu")
    write_eval_dir(tmp_path / "e_other", dataset, stats, config, per_user, rows, info, {})
    with pytest.raises(ConfigError, match="another dataset"):
        report({"none": base, "other": str(tmp_path / "e_other")}, out)
    # different candidate sets
    excluded = eval_dir("e_excl", oracle_model(N_ITEMS), exclude_seen=True)
    with pytest.raises(ConfigError, match="exclude-seen"):
        report({"none": base, "excl": excluded}, out)
    assert not out.exists()


def test_several_runs_of_a_variant_are_averaged_per_user(setup):
    tmp_path, _, _, eval_dir = setup
    base = eval_dir("e_base", noisy_oracle(N_ITEMS, 1.0, seed=1))
    seed_a = eval_dir("e_a", noisy_oracle(N_ITEMS, 0.3, seed=2))
    seed_b = eval_dir("e_b", noisy_oracle(N_ITEMS, 0.6, seed=3))
    report({"none": base, "dyn": f"{seed_a},{seed_b}"}, tmp_path / "rep", bootstrap=50)
    rows = pq.read_table(tmp_path / "rep" / "comparison.parquet").to_pylist()
    pooled = next(r for r in rows if r["cohort"] == "overall" and r["variant"] == "dyn")
    report({"a": seed_a, "b": seed_b}, tmp_path / "rep_ab", baseline="a", bootstrap=0)
    single = {
        r["variant"]: r["value"]
        for r in pq.read_table(tmp_path / "rep_ab" / "comparison.parquet").to_pylist()
        if r["cohort"] == "overall" and r["metric"] == pooled["metric"]
    }
    assert pooled["runs"] == 2
    assert pooled["value"] == pytest.approx((single["a"] + single["b"]) / 2, abs=1e-12)
    assert "averaged over its runs" in (tmp_path / "rep" / "report.md").read_text()


def test_cli_defaults_are_the_report_config_defaults():
    """The CLI writes no default of its own: each one is ReportConfig's (changed there, shown here)."""
    import dataclasses

    from components.report import cli
    from components.report.config import ReportConfig

    changed = dataclasses.replace(
        ReportConfig(), baseline="base", bootstrap=7, seed=3, k=5, min_users=2, top_domains=4
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "ReportConfig", lambda: changed)
        args = cli.build_parser().parse_args(["--eval", "base=d", "--output", "o"])
    got = (args.baseline, args.bootstrap, args.seed, args.k, args.min_users, args.top_domains)
    assert got == ("base", 7, 3, 5, 2, 4)
