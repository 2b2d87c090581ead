"""The evaluate step end to end on tiny hand-built datasets with fake and real (tiny) models."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from eval_fixtures import (
    DOMAINS,
    FakeModel,
    chain_sequences,
    constant_model,
    copy_model,
    item_domains_for,
    oracle_model,
    write_dataset,
    write_model_dir,
    write_stats,
)

from components.core.stats_artifact import load_domain_stats
from components.errors import ConfigError, InputError
from components.evaluate.cli import main as evaluate_cli
from components.evaluate.evaluate import EvalConfig, evaluate, evaluate_model
from components.evaluate.tables import domain_slot_shares
from components.schema import load_dataset

torch.set_num_threads(1)
N_ITEMS = 60


@pytest.fixture
def chain_data(tmp_path):
    dataset_dir = write_dataset(tmp_path / "data", chain_sequences(120, N_ITEMS, 9), N_ITEMS)
    stats_dir = write_stats(tmp_path / "stats", dataset_dir)
    dataset = load_dataset(dataset_dir)
    return dataset_dir, stats_dir, dataset, load_domain_stats(stats_dir, dataset)


def run_fake(chain_data, model, **config):
    _, _, dataset, stats = chain_data
    return evaluate_model(dataset, stats, model, 8, EvalConfig(bootstrap=100, **config), "cpu")


def overall(rows):
    assert rows[0]["cohort"] == "overall"
    return rows[0]


def test_oracle_model_is_perfect_in_every_cohort(chain_data):
    per_user, rows, info = run_fake(chain_data, oracle_model(N_ITEMS))
    assert per_user["rank"].to_numpy().max() == 0
    for row in rows:
        if row["n"]:
            assert row["recall@10"] == row["ndcg@10"] == row["recall@20"] == 1.0
            assert row["recall@10_low"] == row["recall@10_high"] == 1.0
    # the oracle's top-1 is the target, so the top-1 slot shares are the target shares
    assert info["top_share"]["10"].keys() == set(DOMAINS)


def test_constant_model_scores_zero(chain_data):
    _, rows, info = run_fake(chain_data, constant_model(N_ITEMS))
    assert overall(rows)["recall@10"] == 0.0
    assert overall(rows)["ndcg@20"] == 0.0
    assert info["coverage"]["coverage@10"] <= 1.0


def test_no_leakage_when_the_last_item_is_unique_per_user(tmp_path):
    # user u's test item is item 30 + u: it appears nowhere else in the data
    n_users, shared = 20, 30
    rng = np.random.default_rng(0)
    sequences = [
        [int(i) for i in rng.choice(np.arange(1, shared + 1), size=8 + u % 7, replace=False)]
        + [shared + 1 + u]
        for u in range(n_users)
    ]
    n_items = shared + n_users
    dataset_dir = write_dataset(tmp_path / "data", sequences, n_items)
    dataset = load_dataset(dataset_dir)
    stats = load_domain_stats(write_stats(tmp_path / "stats", dataset_dir), dataset)
    model = copy_model(n_items)
    per_user, rows, _ = evaluate_model(
        dataset, stats, model, 20, EvalConfig(bootstrap=0, batch_size=6), "cpu"
    )
    # the model saw exactly each user's train + valid items in order (left-padded), never a target
    seen = sorted(tuple(row[row > 0].tolist()) for batch in model.prefixes for row in batch)
    assert seen == sorted(tuple(s[:-1]) for s in sequences)
    targets = {s[-1] for s in sequences}
    assert not any(item in targets for row in seen for item in row)
    # a model that copies its input cannot find the unseen target: it ties with all the
    # other unseen items and ranks below all of them
    assert per_user["target_item_idx"].to_pylist() == [s[-1] for s in sequences]
    assert per_user["rank"].to_pylist() == [n_items - 1] * n_users
    assert overall(rows)["recall@10"] == 0.0


def test_exclude_seen_masks_history_but_not_the_target(tmp_path):
    sequences = [[1, 2, 3, 4, 5, 2], [6, 7, 8, 9, 10, 11]]  # user 0's target was seen before
    n_items = 12
    dataset_dir = write_dataset(tmp_path / "data", sequences, n_items)
    dataset = load_dataset(dataset_dir)
    stats = load_domain_stats(write_stats(tmp_path / "stats", dataset_dir), dataset)
    kept, _, _ = evaluate_model(
        dataset, stats, copy_model(n_items), 8, EvalConfig(bootstrap=0), "cpu"
    )
    excluded, _, _ = evaluate_model(
        dataset, stats, copy_model(n_items), 8, EvalConfig(bootstrap=0, exclude_seen=True), "cpu"
    )
    # user 0: target 2 is in the prefix (score 1) tied with 4 other prefix items → rank 4;
    # excluding the history leaves only the target among the score-1 items → rank 0.
    # user 1: target unseen (score 0) ties with every unseen item: 12-5-1 = 6 others, and the
    # history (5 items, scored 1) counts only while it is kept.
    assert kept["rank"].to_pylist() == [4, 11]
    assert excluded["rank"].to_pylist() == [0, 6]


def test_cohorts_follow_target_domains_and_power_users(chain_data):
    _, stats_dir, dataset, stats = chain_data
    per_user, rows, info = run_fake(chain_data, oracle_model(N_ITEMS))
    domains = item_domains_for(N_ITEMS)
    targets = per_user["target_item_idx"].to_numpy()
    assert per_user["target_domains"].to_pylist() == [domains[t - 1] for t in targets]
    by_key = {(r["cohort"], r["domain"], r["theta"]): r for r in rows}
    for domain in DOMAINS:
        n_expected = sum(domain in domains[t - 1] for t in targets)  # multi-label: in each
        assert by_key[("domain", domain, None)]["n"] == n_expected
    power = pq.read_table(stats_dir / "power_users.parquet").to_pylist()
    for theta in (0.5, 0.2):
        members = {(p["user_idx"], p["domain"]) for p in power if p["share"] >= theta}
        column = per_user[f"power_domains_{theta:g}"].to_pylist()
        users = per_user["user_idx"].to_pylist()
        assert {(u, d) for u, ds in zip(users, column, strict=True) for d in ds} == members
        for domain in DOMAINS:
            assert by_key[("power", domain, theta)]["n"] == sum(d == domain for _, d in members)
    # the cohorts come sparsest → densest, as in domain_stats.parquet
    assert [r["domain"] for r in rows if r["cohort"] == "domain"] == stats.domains
    assert info["target_share"] == domain_slot_shares(targets, dataset.item_domains(), DOMAINS)


def test_domain_slot_shares_count_multi_label_items_in_each_domain():
    item_domains = [[], ["a"], ["a", "b"], ["c"]]
    shares = domain_slot_shares(np.array([[1, 2], [2, 3]]), item_domains, ["a", "b", "c"])
    assert shares == {"a": 0.75, "b": 0.5, "c": 0.25}


def test_metrics_match_a_per_user_reference_for_a_random_model(chain_data):
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(N_ITEMS + 1, 5, generator=generator)
    items = torch.randn(N_ITEMS + 1, 5, generator=generator)
    model = FakeModel(N_ITEMS, lambda prefix: states[prefix[:, -1]], items)
    per_user, rows, _ = run_fake(chain_data, model, ks=(5, 10))
    # chain sequences: the last prefix item is the target - 1 (wrapping)
    targets = per_user["target_item_idx"].to_numpy()
    last_items = torch.as_tensor((targets - 2) % N_ITEMS + 1)
    scores = (states[last_items] @ items.T).numpy()
    ranks = [
        sum(1 for i in range(1, N_ITEMS + 1) if i != t and s[i] >= s[t])
        for s, t in zip(scores, targets, strict=True)
    ]
    assert per_user["rank"].to_pylist() == ranks
    expected = np.mean([1 / math.log2(r + 2) if r < 10 else 0.0 for r in ranks])
    assert overall(rows)["ndcg@10"] == pytest.approx(expected, abs=1e-12)
    assert overall(rows)["ndcg@10_low"] <= expected <= overall(rows)["ndcg@10_high"]


def test_evaluate_writes_the_eval_dir_and_the_cli_works(chain_data, tmp_path, capsys):
    dataset_dir, stats_dir, _, _ = chain_data
    model_dir = write_model_dir(tmp_path / "model", dataset_dir, scheme="dynamic")
    out = tmp_path / "eval"
    code = evaluate_cli(
        [
            "--dataset", str(dataset_dir), "--stats", str(stats_dir), "--model", str(model_dir),
            "--output", str(out), "--bootstrap", "50", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scheme"] == "dynamic" and summary["n_users"] == 120
    for name in (
        "per_user.parquet", "metrics.json", "per_domain.parquet", "metrics.md",
        "train_log.jsonl", "weights_history.json", "model_config.json",
    ):  # fmt: skip
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["exclude_seen"] is False and metrics["ks"] == [10, 20]
    assert metrics["model"]["scheme"] == "dynamic" and metrics["model"]["loss"] == "ce"
    assert metrics["summary"]["recall@10"] == summary["recall@10"]
    assert 0 <= metrics["overall"]["recall@10_low"] <= metrics["overall"]["recall@10"]
    assert [d["domain"] for d in metrics["domains"]] == ["rare", "mid", "dense"]
    per_domain = pq.read_table(out / "per_domain.parquet").to_pylist()
    assert [r["cohort"] for r in per_domain[:4]] == ["overall", "domain", "domain", "domain"]
    assert "| domain | rare |" in (out / "metrics.md").read_text()
    # same seed → same numbers; a second run replaces the dir
    again = evaluate(dataset_dir, stats_dir, model_dir, out, bootstrap=50, device="cpu")
    assert again["ndcg@10"] == summary["ndcg@10"]
    assert json.loads((out / "metrics.json").read_text())["overall"] == metrics["overall"]


def test_stats_of_another_dataset_is_a_clear_error_and_writes_nothing(chain_data, tmp_path, capsys):
    dataset_dir, _, _, _ = chain_data
    other = write_dataset(tmp_path / "other", chain_sequences(30, N_ITEMS, 6, seed=9), N_ITEMS)
    other_stats = write_stats(tmp_path / "other_stats", other)
    model_dir = write_model_dir(tmp_path / "model", dataset_dir)
    out = tmp_path / "eval"
    args = ["--dataset", str(dataset_dir), "--model", str(model_dir), "--output", str(out)]
    assert evaluate_cli([*args, "--stats", str(other_stats)]) == 2
    assert "another dataset" in capsys.readouterr().err
    assert evaluate_cli([*args, "--stats", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert evaluate_cli([*args, "--stats", str(dataset_dir)]) == 2
    assert "not a stats step output" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.glob(".eval.tmp-*"))


def test_bad_parameters_are_config_errors(chain_data, tmp_path):
    dataset_dir, stats_dir, dataset, _ = chain_data
    with pytest.raises(ConfigError, match="--k"):
        EvalConfig(ks=(0, 10))
    with pytest.raises(ConfigError, match="--bootstrap"):
        EvalConfig(bootstrap=-1)
    with pytest.raises(ConfigError, match=r"evaluate: unknown option\(s\) \['k'\]"):
        evaluate(dataset_dir, stats_dir, tmp_path / "model", tmp_path / "eval", k=5)
    assert not (tmp_path / "eval").exists()
    if not torch.cuda.is_available():
        model_dir = write_model_dir(tmp_path / "model", dataset_dir)
        with pytest.raises(ConfigError, match="CUDA"):
            evaluate(dataset_dir, stats_dir, model_dir, tmp_path / "eval", device="cuda")
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(InputError, match="not a train step output"):
        evaluate(dataset_dir, stats_dir, tmp_path / "not_a_model", tmp_path / "eval", device="cpu")


def test_model_of_another_catalogue_is_rejected(chain_data, tmp_path):
    dataset_dir, stats_dir, _, _ = chain_data
    other = write_dataset(tmp_path / "other", chain_sequences(30, 40, 6), 40)
    model_dir = write_model_dir(tmp_path / "model", other)
    with pytest.raises(ConfigError, match="another dataset"):
        evaluate(dataset_dir, stats_dir, model_dir, tmp_path / "eval", device="cpu")


def test_nan_model_is_refused(chain_data):
    model = FakeModel(
        N_ITEMS, lambda p: torch.full((len(p), 3), float("nan")), torch.ones(N_ITEMS + 1, 3)
    )
    with pytest.raises(InputError, match="NaN"):
        run_fake(chain_data, model)


def test_batched_encoding_equals_encoding_each_full_prefix():
    from components.core.model import ModelConfig, SeqRecModel
    from components.core.ranking import user_states

    torch.manual_seed(0)
    model = SeqRecModel(ModelConfig(n_items=30, max_len=12, d_model=8, n_blocks=2, n_heads=2))
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 13, size=23)
    prefix = np.zeros((23, 12), dtype=np.int64)
    for row, length in enumerate(lengths):
        prefix[row, 12 - length :] = rng.integers(1, 31, size=length)
    got = user_states(model, prefix, "cpu", batch_size=5)
    with torch.no_grad():
        expected = model.eval().last_state(torch.as_tensor(prefix))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_cli_defaults_are_the_eval_config_defaults():
    """The CLI writes no default of its own: each one is EvalConfig's (changed there, shown here)."""
    import dataclasses

    from components.evaluate import cli

    changed = dataclasses.replace(EvalConfig(), ks=(5,), bootstrap=7, seed=3, batch_size=9)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "EvalConfig", lambda: changed)
        args = cli.build_parser().parse_args(
            ["--dataset", "d", "--stats", "s", "--model", "m", "--output", "o"]
        )
    assert (tuple(args.k), args.bootstrap, args.seed, args.batch_size) == ((5,), 7, 3, 9)
    assert (args.device, args.exclude_seen) == (changed.device, changed.exclude_seen)
