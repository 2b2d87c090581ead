"""Post-hoc logit adjustment (``--logit-adjust inverse``): the τ-grid ranking against a float64
brute force, τ = 0 against the unadjusted evaluation, the selection rule, the options, the
recorded calibration and the CLI end to end on a tiny trained model."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import fields

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from eval_fixtures import FakeModel, chain_sequences, write_dataset, write_stats
from test_train import TINY
from test_train import write_dataset as write_train_dataset

from components.core.logit_adjust import (
    SELECTED_BY,
    grid_ranks,
    grid_ranks_from_embeddings,
    inverse_item_bias,
    ndcg_curves,
    select_tau,
    tau_grid,
)
from components.core.metrics import ndcg_at_k
from components.core.model_artifact import load_model
from components.core.ranking import ranks_from_embeddings, user_states
from components.core.sequences import UserSequences
from components.core.stats_artifact import load_domain_stats
from components.core.variants import EVALUATE_PER_VARIANT, parse_variant
from components.errors import ConfigError
from components.evaluate.calibrate import adjusted_test_ranks, split_exclude
from components.evaluate.cli import main as evaluate_cli
from components.evaluate.config import EvalConfig
from components.evaluate.evaluate import evaluate_model
from components.io import json_safe
from components.schema import load_dataset
from components.stats import compute_stats
from components.train.trainer import train
from components.train.validation import evaluate_split

torch.set_num_threads(1)
N_ITEMS = 60


def brute_force_ranks(scores, targets, bias, taus, exclude=None):
    """[T, B] pessimistic ranks in float64, one argsort per user and τ (the slow reference)."""
    n = scores.shape[1]
    out = np.zeros((len(taus), len(targets)), dtype=np.int64)
    for j, tau in enumerate(taus):
        for u, target in enumerate(targets):
            keep = [i for i in range(1, n) if i == target or exclude is None or not exclude[u, i]]
            adjusted = np.array([scores[u, i] + tau * bias[i] for i in keep], dtype=np.float64)
            is_target = np.array([i == target for i in keep])
            order = np.lexsort((is_target, -adjusted))  # the target after every tie: pessimistic
            out[j, u] = int(np.flatnonzero(is_target[order])[0])
    return out


def random_case(seed: int, exact: bool, users: int = 23, n: int = 41):
    """Scores [users, n] (column 0 = padding), targets, bias, an exclusion mask. ``exact``: small
    dyadic values, so float32 is exact and ties are many."""
    rng = np.random.default_rng(seed)
    if exact:
        scores = rng.integers(-3, 4, size=(users, n)) * 0.5
        bias = rng.choice([-0.5, -0.25, 0.0, 0.25, 0.5], size=n)
    else:
        scores, bias = rng.normal(size=(users, n)), rng.normal(size=n) * 0.7
    targets = rng.integers(1, n, size=users)
    exclude = rng.random((users, n)) < 0.2
    return scores, targets, bias, exclude


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_grid_ranks_match_a_float64_brute_force(exact, masked):
    scores, targets, bias, exclude = random_case(int(exact) + 2 * int(masked), exact)
    exclude = exclude if masked else None
    taus = tau_grid(2.0, 5)  # 0, 0.5, 1, 1.5, 2: dyadic
    scores_t = torch.as_tensor(scores, dtype=torch.float32)
    mask = None if exclude is None else (lambda rows: torch.as_tensor(exclude[rows]))
    n = scores.shape[1]
    ranks, top = grid_ranks(
        lambda rows: scores_t[rows].clone(), torch.as_tensor(targets), n, bias, taus, mask,
        topk=5, topk_tau=3, max_scores_per_block=4 * n + 1,  # blocks of 4 users
    )  # fmt: skip
    expected = brute_force_ranks(scores.astype(np.float32), targets, bias, taus, exclude)
    np.testing.assert_array_equal(ranks.numpy(), expected)
    assert len({tuple(r) for r in expected}) > 1  # τ changes the ranks: the test can tell
    if not exact:  # no ties: the top items at τ = 1.5 are the 5 best adjusted scores
        adjusted = scores + 1.5 * bias
        adjusted[:, 0] = -np.inf
        if exclude is not None:
            keep = exclude.copy()
            keep[np.arange(len(targets)), targets] = False
            adjusted[keep] = -np.inf
        np.testing.assert_array_equal(top.numpy(), np.argsort(-adjusted, axis=1)[:, :5])


def test_tau_zero_is_the_unadjusted_ranking_bit_for_bit():
    generator = torch.Generator().manual_seed(3)
    states, items = torch.randn(50, 6, generator=generator), torch.randn(N_ITEMS + 1, 6)
    targets = torch.randint(1, N_ITEMS + 1, (50,), generator=generator)
    exclude_np = np.random.default_rng(0).random((50, N_ITEMS + 1)) < 0.3

    def exclude(rows):
        return torch.as_tensor(exclude_np[rows])

    bias = np.random.default_rng(1).normal(size=N_ITEMS + 1)
    for mask in (None, exclude):
        plain, plain_top = ranks_from_embeddings(states, items, targets, mask, topk=10)
        grid, grid_top = grid_ranks_from_embeddings(
            states, items, targets, bias, tau_grid(1.0, 3), mask, topk=10, topk_tau=0
        )
        assert torch.equal(grid[0], plain) and torch.equal(grid_top, plain_top)
        assert not torch.equal(grid[2], plain)


def test_ndcg_curves_match_a_per_domain_reference():
    ranks = np.random.default_rng(0).integers(0, 15, size=(3, 40))
    domains = [["a"], ["b"], ["a", "b"], ["c"]] * 10
    overall, sparse = ndcg_curves(ranks, domains, ["a", "b", "empty"])
    for j in range(3):
        ndcg = [1 / math.log2(r + 2) if r < 10 else 0.0 for r in ranks[j]]
        assert overall[j] == pytest.approx(np.mean(ndcg), abs=1e-12)
        per_domain = [
            np.mean([v for v, ds in zip(ndcg, domains, strict=True) if d in ds]) for d in "ab"
        ]  # a multi-label target counts in each domain; a domain without targets is left out
        assert sparse[j] == pytest.approx(np.mean(per_domain), abs=1e-12)
    assert np.isnan(ndcg_curves(ranks, domains, ["empty"])[1]).all()


def test_selection_rule_against_a_brute_force_over_random_curves():
    rng = np.random.default_rng(0)
    for trial in range(300):
        steps = int(rng.integers(1, 9))
        overall = rng.choice([0.2, 0.21, 0.22, 0.25], size=steps)
        sparse = rng.choice([0.05, 0.1, 0.15, np.nan], size=steps)
        drop = float(rng.choice([0.0, 0.05, 0.2]))
        chosen = select_tau(overall, sparse, drop)
        allowed = [j for j in range(steps) if overall[j] >= (1 - drop) * overall[0]]
        assert 0 in allowed and chosen in allowed
        assert overall[chosen] >= (1 - drop) * overall[0]  # never below τ = 0 beyond the drop
        ranked = [j for j in allowed if not np.isnan(sparse[j])]
        if ranked:  # the best sparse mean, the smallest τ among ties
            best = max(sparse[j] for j in ranked)
            assert chosen == min(j for j in ranked if sparse[j] == best), trial
        else:
            assert chosen == 0


def test_bad_options_are_one_line_errors_naming_the_option(tmp_path, capsys):
    for options, name in (
        ({"logit_adjust": "foo"}, "--logit-adjust"),
        ({"tau_steps": 0}, "--tau-steps"),
        ({"tau_steps": 2.5}, "--tau-steps"),
        ({"tau_max": -0.1}, "--tau-max"),
        ({"tau_max": float("nan")}, "--tau-max"),
        ({"la_max_overall_drop": 1.0}, "--la-max-overall-drop"),
        ({"la_max_overall_drop": -0.01}, "--la-max-overall-drop"),
    ):
        with pytest.raises(ConfigError, match=f"^{name}: ") as error:
            EvalConfig(**options)
        assert "\n" not in str(error.value)
    assert EvalConfig(tau_steps=3.0, tau_max=1).tau_steps == 3  # JSON/KFP numbers accepted
    args = ["--dataset", "d", "--stats", "s", "--model", "m", "--output", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_cli([*args, "--logit-adjust", "foo"])
    assert exit_info.value.code == 2 and "--logit-adjust: invalid choice" in capsys.readouterr().err
    for flag, value in (("--tau-steps", "0"), ("--tau-max", "-1"), ("--la-max-overall-drop", "1")):
        assert evaluate_cli([*args, flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: {flag}: ") and not any(
            line.startswith("error") for line in err[:-1]
        )
    assert not (tmp_path / "o").exists()


def test_a_logit_adjust_variant_is_evaluated_adjusted():
    def options(item, run):
        return parse_variant(item).evaluate_options(run)

    assert options("logit-adjust", {"bootstrap": 5}) == {"bootstrap": 5, "logit_adjust": "inverse"}
    assert options("logit-adjust", {"logit_adjust": "off"})["logit_adjust"] == "inverse"
    assert options("none", {"bootstrap": 5}) == {"bootstrap": 5}
    own = options({"name": "la", "scheme": "logit-adjust", "tau_max": 1.0}, {"tau_max": 3.0})
    assert own["tau_max"] == 1.0
    # any variant may be adjusted; it trains with its weighting scheme, logit-adjust as none
    dyn = parse_variant({"name": "dyn-la", "scheme": "dynamic", "logit_adjust": "inverse"})
    assert dyn.weighting_scheme == "dynamic" and dyn.train == {}
    assert dyn.evaluate_options({})["logit_adjust"] == "inverse"
    assert parse_variant("logit-adjust").weighting_scheme == "none"
    # the keys a variant may set are evaluate options
    assert set(EVALUATE_PER_VARIANT) <= {f.name for f in fields(EvalConfig)}


@pytest.fixture
def chain_data(tmp_path):
    dataset_dir = write_dataset(tmp_path / "data", chain_sequences(90, N_ITEMS, 9), N_ITEMS)
    dataset = load_dataset(dataset_dir)
    return dataset, load_domain_stats(write_stats(tmp_path / "stats", dataset_dir), dataset)


def random_model(seed: int) -> FakeModel:
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(N_ITEMS + 1, 5, generator=generator)
    items = torch.randn(N_ITEMS + 1, 5, generator=generator)
    return FakeModel(N_ITEMS, lambda prefix: states[prefix[:, -1]], items)


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_tau_zero_only_or_a_zero_bias_is_the_unadjusted_evaluation(chain_data, exclude_seen):
    dataset, stats = chain_data
    base = EvalConfig(bootstrap=30, exclude_seen=exclude_seen)
    plain = evaluate_model(dataset, stats, random_model(0), 8, base, "cpu")
    bias = np.random.default_rng(0).normal(size=N_ITEMS + 1)
    for tau_max, item_bias in ((0.0, bias), (2.0, np.zeros(N_ITEMS + 1))):
        config = EvalConfig(**{**vars(base), "logit_adjust": "inverse", "tau_max": tau_max})
        adjusted = evaluate_model(dataset, stats, random_model(0), 8, config, "cpu", item_bias)
        assert adjusted[0].equals(plain[0]) and json_safe(adjusted[1]) == json_safe(plain[1])
        record = adjusted[2]["logit_adjust"]
        assert plain[2]["logit_adjust"] is None
        assert {**adjusted[2], "logit_adjust": None} == plain[2]  # coverage, top-K shares
        assert record["tau"] == 0.0 and len(record["curve"]) == (1 if tau_max == 0 else 21)
        assert record["curve"][0]["test_ndcg@10"] == pytest.approx(plain[1][0]["ndcg@10"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("logit-adjust")
    dataset = write_train_dataset(root / "dataset", n_users=80)
    compute_stats(dataset, root / "stats")
    options = dict(scheme="none", loss="ce", epochs=3, lr=0.01, **TINY)
    summary = train(dataset, None, root / "model", **options)
    return root, dataset, summary


def test_cli_end_to_end_on_a_tiny_trained_model(trained, caplog):
    root, dataset, summary = trained
    caplog.set_level(logging.INFO, logger="dwlrec.evaluate")
    args = ["--dataset", str(dataset), "--stats", str(root / "stats"), "--model"]
    args += [str(root / "model"), "--bootstrap", "20", "--device", "cpu", "--overwrite"]
    assert evaluate_cli([*args, "--output", str(root / "plain")]) == 0
    plain = json.loads((root / "plain" / "metrics.json").read_text())
    assert plain["logit_adjust"] is None and not (root / "plain" / "calibration.json").exists()
    plain_ranks = pq.read_table(root / "plain" / "per_user.parquet")["rank"].to_numpy()
    for drop in (0.0, 0.2):
        out = root / f"la-{drop}"
        adjusted = ["--logit-adjust", "inverse", "--tau-max", "3", "--tau-steps", "7"]
        caplog.clear()
        assert (
            evaluate_cli(
                [*args, "--output", str(out), *adjusted, "--la-max-overall-drop", str(drop)]
            )
            == 0
        )
        logged = [r.getMessage() for r in caplog.records if r.name == "dwlrec.evaluate"]
        assert sum(m.startswith("logit adjustment: tau = ") for m in logged) == 1
        metrics = json.loads((out / "metrics.json").read_text())
        record = metrics["logit_adjust"]
        assert json.loads((out / "calibration.json").read_text()) == record
        assert record["bias"] == "log inverse weight" and record["selected_by"] == SELECTED_BY
        assert record["max_overall_drop"] == drop and metrics["config"]["logit_adjust"] == "inverse"
        curve = record["curve"]
        assert [p["tau"] for p in curve] == pytest.approx(list(np.linspace(0, 3, 7)))
        # τ = 0 of the curve: the run's own validation (train's protocol) and the plain test
        assert curve[0]["val_ndcg@10"] == pytest.approx(summary["best_val"]["ndcg@10"], abs=1e-12)
        assert curve[0]["test_ndcg@10"] == pytest.approx(plain["overall"]["ndcg@10"], abs=1e-12)
        chosen = [p["tau"] for p in curve].index(record["tau"])
        floor = (1 - drop) * curve[0]["val_ndcg@10"]
        allowed = [p for p in curve if p["val_ndcg@10"] >= floor]
        assert curve[chosen] in allowed
        assert curve[chosen]["val_sparse_ndcg@10"] == max(p["val_sparse_ndcg@10"] for p in allowed)
        # every test metric is of the chosen τ: per-user ranks, overall and per-domain cohorts
        ranks = pq.read_table(out / "per_user.parquet")["rank"].to_numpy()
        test_ndcg = metrics["overall"]["ndcg@10"]
        assert test_ndcg == pytest.approx(ndcg_at_k(ranks, 10).mean(), abs=1e-12)
        assert test_ndcg == pytest.approx(curve[chosen]["test_ndcg@10"], abs=1e-12)
        sparse = [d["domain"] for d in metrics["domains"] if d["sparse"]]
        per_domain = [
            c["ndcg@10"] for c in metrics["cohorts"]
            if c["cohort"] == "domain" and c["domain"] in sparse and c["n"]
        ]  # fmt: skip
        assert np.mean(per_domain) == pytest.approx(curve[chosen]["test_sparse_ndcg@10"])
        assert (record["tau"] == 0) == np.array_equal(ranks, plain_ranks)
        assert "Logit-adjusted scores" in (out / "metrics.md").read_text()
    assert record["tau"] > 0  # with a 20% allowance this model's sparse domains gain


def test_item_bias_is_the_log_of_the_inverse_weights_json_targets(trained):
    root, dataset, _ = trained
    weights = json.loads((root / "stats" / "weights.json").read_text())
    item_domains = load_dataset(dataset).item_domains()
    bias = inverse_item_bias(weights, item_domains)
    inverse = weights["targets"]["inverse"]
    assert bias[0] == 0.0 and len(bias) == len(item_domains)
    for item in range(1, len(item_domains)):  # agg = mean over the item's domains (the default)
        expected = math.log(np.mean([inverse[d] for d in item_domains[item]]))
        assert bias[item] == pytest.approx(expected, abs=1e-6)  # ω is float32, as in train
    assert inverse["rare"] > inverse["dense"] and bias[10] > bias[1]  # item 10: rare; 1: dense


def test_validation_ranking_follows_trains_protocol(trained):
    """τ = 0's validation NDCG@10 is train's validation score, history kept or masked."""
    root, dataset_dir, _ = trained
    model, _ = load_model(root / "model")
    dataset = load_dataset(dataset_dir)
    stats = load_domain_stats(root / "stats", dataset)
    sequences = UserSequences.from_interactions(dataset.interactions, dataset.n_items)
    _, prefix, targets = sequences.prefixes("test", model.cfg.max_len)
    states = user_states(model, prefix, "cpu", 256)
    items = model.item_embeddings().detach()
    for exclude_seen in (False, True):
        config = EvalConfig(exclude_seen=exclude_seen, tau_steps=1)
        test = (states, targets, split_exclude(sequences, "test", config, len(items), "cpu"))
        _, _, record = adjusted_test_ranks(
            model, sequences, model.cfg.max_len, items, test, np.zeros(len(items)),
            dataset.item_domains(), stats, config, "cpu",
        )  # fmt: skip
        expected = evaluate_split(model, sequences, "valid", torch.device("cpu"), 256, exclude_seen)
        assert record["curve"][0]["val_ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)


def test_the_kfp_component_takes_the_options_and_records_the_calibration(trained):
    from kfp.dsl import Dataset, Markdown, Metrics, Model

    from components.evaluate.component import evaluate as component

    root, dataset, _ = trained
    evaluation = Dataset(uri=str(root / "component-eval"))
    component(
        dataset=Dataset(uri=str(dataset)),
        stats=Dataset(uri=str(root / "stats")),
        model=Model(uri=str(root / "model")),
        variant={"name": "none", "scheme": "none"},
        exclude_seen=False,
        options={"bootstrap": 10.0, "logit_adjust": "inverse", "tau_steps": 3.0},  # KFP floats
        device="cpu",
        metrics=Metrics(uri=str(root / "component-metrics")),
        summary=Markdown(uri=str(root / "component-summary.md")),
        evaluation=evaluation,
    )
    metrics = json.loads((root / "component-eval" / "metrics.json").read_text())
    assert [p["tau"] for p in metrics["logit_adjust"]["curve"]] == [0.0, 1.0, 2.0]
    assert (root / "component-eval" / "calibration.json").exists()
