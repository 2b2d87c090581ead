"""Named variants (components.core.variants): two settings of one scheme in one run, each trained
with what it sets, and every weighting parameter settable on train."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from components.core.variants import Variant, parse_variant, parse_variants
from components.core.weighting import PARAMETER_NAMES
from components.errors import ConfigError
from components.ingest import ingest
from components.stats import compute_stats
from components.train.cli import main as train_cli
from components.train.component import train as train_component
from components.train.config import WEIGHTING_OPTIONS
from tests.kfp_helpers import TINY_INGEST, TINY_TRAIN

COMPOSITE = {"name": "dyn-composite", "scheme": "dynamic", "target": "composite", "beta": 0.8}


def test_a_bare_scheme_is_the_shorthand_of_a_spec_named_after_it():
    assert parse_variant("fixed") == Variant(name="fixed", scheme="fixed")
    assert parse_variant({"scheme": "fixed"}) == Variant(name="fixed", scheme="fixed")
    spec = parse_variant({**COMPOSITE, "lr": 0.003})
    assert spec.weighting == {"target": "composite", "beta": 0.8}
    assert spec.train == {"lr": 0.003}
    assert spec.as_item() == {**COMPOSITE, "lr": 0.003}
    assert parse_variant(spec.as_item()) == spec  # the item the tasks get parses back the same
    assert spec.describe() == 'dynamic (target="composite", beta=0.8, lr=0.003)'


@pytest.mark.parametrize(
    "items, message",
    [
        (["none", {"scheme": "dynamic", "beta": 0.5}], "needs a 'name'"),
        (["none", "dynamic", {"name": "dynamic", "scheme": "dynamic", "beta": 0.5}], "duplicate"),
        ([{"name": "", "scheme": "none"}], "'name' must be"),
        ([{"name": "x" * 64, "scheme": "none"}], "'name' must be"),
        ([{"name": "a", "scheme": "dwl"}], "'scheme' must be one of"),
        ([{"name": "a", "scheme": "inverse", "gamma": -1}], "--gamma: must be >= 0"),
        ([{"name": "a", "scheme": "dynamic", "w_min": 2, "w_max": 1}], "--w-min <= --w-max"),
        ([{"name": "a", "scheme": "dynamic", "device": "cuda"}], "cannot be set per variant"),
        ([3], "expected a scheme name or an object"),
        ([], "at least one variant"),
        ("dynamic", "expected a list of variants"),
    ],
)
def test_bad_variants_are_refused_naming_the_item(items, message):
    with pytest.raises(ConfigError, match="variants") as error:
        parse_variants(items)
    assert message in str(error.value)


def test_train_takes_every_weighting_parameter():
    assert set(WEIGHTING_OPTIONS) == set(PARAMETER_NAMES)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    ingest("synthetic", root / "dataset", **TINY_INGEST)
    compute_stats(root / "dataset", root / "stats", beta=0.5)
    return root


def test_a_named_variant_trains_with_what_it_sets(inputs, tmp_path):
    """What a variant sets wins over the run's loss and options; the rest comes from
    weights.json (beta 0.5 recorded by stats) or the defaults."""
    model = SimpleNamespace(path=str(tmp_path / "model"), metadata={})
    variant = {**COMPOSITE, "lr": 0.003, "loss": "sampled", "negatives": 8}
    train_component(
        dataset=SimpleNamespace(path=str(inputs / "dataset")),
        stats=SimpleNamespace(path=str(inputs / "stats")),
        variant=variant,
        loss="ce",
        epochs=1,
        exclude_seen=False,
        options={**TINY_TRAIN, "lr": 0.001},
        device="cpu",
        nproc=1,
        checkpoint_root="",
        run_id="variants",
        model=model,
    )
    config = json.loads((Path(model.path) / "config.json").read_text())
    assert config["scheme"] == "dynamic" and config["loss"] == "sampled"
    assert config["train"]["lr"] == 0.003 and config["train"]["negatives"] == 8
    weighting, sources = config["weighting"], config["weighting_sources"]
    assert (weighting["target"], weighting["beta"]) == ("composite", 0.8)
    assert sources["target"] == sources["beta"] == "train option"
    assert sources["agg"] == "weights.json"
    assert model.metadata["variant"] == "dyn-composite"
    assert model.metadata["scheme"] == "dynamic" and model.metadata["loss"] == "sampled"


def test_the_train_cli_sets_list_valued_weighting_parameters(inputs, tmp_path, capsys):
    out = tmp_path / "model"
    argv = [
        "--dataset",
        str(inputs / "dataset"),
        "--weights",
        str(inputs / "stats"),
        "--output",
        str(out),
        "--scheme",
        "dynamic",
        "--target",
        "composite",
        "--lambdas",
        "1",
        "0",
        "0",
        "--epochs",
        "1",
        "--max-len",
        "20",
        "--d-model",
        "16",
        "--no-progress",
    ]
    assert train_cli(argv) == 0
    weighting = json.loads((out / "config.json").read_text())["weighting"]
    assert weighting["lambdas"] == [1.0, 0.0, 0.0] and weighting["target"] == "composite"
    assert weighting["beta"] == 0.5  # as the stats step recorded it
    capsys.readouterr()
    bad = [*argv[:4], "--output", str(tmp_path / "bad"), "--lambdas", "1", "0", "-1"]
    assert train_cli(bad) == 2
    assert "--lambdas" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
