"""One WeightingSpec (issue 12): the stats step records it, train uses it, an explicit train option
wins, config.json says what was used and where each value came from; defaults written once."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from components.core.weighting import (
    DEFAULTS,
    PARAMETER_NAMES,
    WeightingParams,
    WeightingSpec,
    load_weights,
    resolve_spec,
)
from components.errors import ConfigError
from components.ingest import ingest
from components.stats import StatsConfig, compute_stats, stats_option_names
from components.stats.cli import build_parser as stats_parser
from components.stats.cli import main as stats_main
from components.stats.config import default_of, stats_config

TRAIN_ARGS = ["--scheme", "dynamic", "--epochs", "1", "--max-len", "10", "--d-model", "8"]
TRAIN_ARGS += ["--n-blocks", "1", "--n-heads", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory):
    """A tiny synthetic dataset and its stats, computed with --beta 0.5 --agg max."""
    root = tmp_path_factory.mktemp("spec")
    ingest("synthetic", root / "data", num_users=60, num_items=40, num_domains=4, seed=0)
    argv = ["--dataset", str(root / "data"), "--output", str(root / "stats")]
    assert stats_main([*argv, "--beta", "0.5", "--agg", "max"]) == 0
    return root


def _train(root, name: str, *extra: str) -> dict:
    pytest.importorskip("torch")
    from components.train.cli import main as train_main

    out = root / name
    argv = ["--dataset", str(root / "data"), "--weights", str(root / "stats"), "--output", str(out)]
    assert train_main([*argv, *TRAIN_ARGS, *extra]) == 0
    return json.loads((out / "config.json").read_text())


def test_stats_records_the_values_it_was_given(stats_dir):
    params = load_weights(stats_dir / "stats")["params"]
    assert (params["beta"], params["agg"]) == (0.5, "max")
    assert params["gamma"] == DEFAULTS.gamma and params["lambdas"] == list(DEFAULTS.lambdas)


def test_train_uses_what_stats_recorded(stats_dir, capsys):
    config = _train(stats_dir, "model")
    capsys.readouterr()
    assert (config["weighting"]["beta"], config["weighting"]["agg"]) == (0.5, "max")
    assert (config["train"]["beta"], config["train"]["agg"]) == (0.5, "max")
    sources = config["weighting_sources"]
    assert sources["beta"] == sources["agg"] == "weights.json"
    assert sources["update_every_steps"] == "default" and config["train"]["update_every_steps"] == 0
    # what stats recorded beyond the spec travels too
    assert config["weighting"]["unlabelled_domains"] == []
    assert config["weighting"]["boost_unlabelled"] is False


def test_an_explicit_train_option_wins_and_config_json_says_so(stats_dir, capsys):
    config = _train(stats_dir, "model-beta", "--beta", "0.7", "--update-every-steps", "2")
    capsys.readouterr()
    assert config["weighting"]["beta"] == 0.7 and config["train"]["beta"] == 0.7
    assert config["weighting"]["agg"] == "max"  # not given: still the recorded one
    sources = config["weighting_sources"]
    assert sources["beta"] == sources["update_every_steps"] == "train option"
    assert sources["agg"] == "weights.json"
    assert config["train"]["update_every_steps"] == 2


def test_the_train_library_treats_none_as_recorded(stats_dir):
    pytest.importorskip("torch")
    from components.train.trainer import TrainConfig, train

    assert (TrainConfig().beta, TrainConfig().agg, TrainConfig().update_every_steps) == (None,) * 3
    out = stats_dir / "lib"
    options = dict(scheme="dynamic", epochs=1, max_len=10, d_model=8, n_blocks=1, n_heads=1)
    train(stats_dir / "data", stats_dir / "stats", out, agg="mean", progress=False, **options)
    config = json.loads((out / "config.json").read_text())
    assert (config["weighting"]["beta"], config["weighting"]["agg"]) == (0.5, "mean")
    assert config["weighting_sources"]["agg"] == "train option"


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"beta": 1.0}, "--beta: must be in [0, 1)"),
        ({"beta": float("nan")}, "--beta"),
        ({"agg": "median"}, "--agg: unknown agg 'median'"),
        ({"target": "idf"}, "--target"),
        ({"scheme": "dwl"}, "--scheme: unknown scheme 'dwl'"),
        ({"w_min": 3.0, "w_max": 2.0}, "--w-min/--w-max"),
        ({"w_min": 0.0}, "--w-min"),
        ({"gamma": -1.0}, "--gamma"),
        ({"lambdas": (0, 0, 0)}, "--lambdas"),
        ({"alpha": float("inf")}, "--alpha"),
        ({"fixed_weight": 0.0}, "--fixed-weight"),
        ({"fixed_domains": "A"}, "--fixed-domains"),
        ({"update_every_steps": -1}, "--update-every-steps"),
        ({"update_every_steps": 1.5}, "--update-every-steps"),
    ],
)
def test_spec_validation_names_the_option(values, option):
    with pytest.raises(ConfigError) as exc:
        WeightingSpec(**values).validate()
    assert str(exc.value).startswith(option), str(exc.value)


def test_resolve_spec_blames_the_file_for_a_bad_recorded_value():
    with pytest.raises(ConfigError, match=r"^s/weights.json: recorded params: --agg"):
        resolve_spec("dynamic", {"agg": "median"}, "s/weights.json")
    spec, sources = resolve_spec("none")
    assert spec == WeightingSpec() and set(sources.values()) == {"default"}


def test_defaults_are_written_once():
    # the stats options are the weighting parameters plus the stats step's own
    params = {f.name for f in fields(WeightingParams)}
    assert params <= set(stats_option_names())
    assert set(PARAMETER_NAMES) == params | {"update_every_steps"}
    assert all(default_of(name) == getattr(DEFAULTS, name) for name in params)
    # the stats CLI's defaults are the dataclass's
    args = vars(stats_parser().parse_args(["--dataset", "d", "--output", "o"]))
    for name in stats_option_names():
        expected = default_of(name)
        given = tuple(args[name]) if isinstance(expected, tuple) else args[name]
        assert given == expected, name
    assert stats_config() == StatsConfig(power_thresholds=(0.5, 0.2))


def test_unknown_stats_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"stats: unknown option\(s\) \['betta'\]"):
        compute_stats(tmp_path / "missing", tmp_path / "out", betta=0.5)
    assert not (tmp_path / "out").exists()
