"""Check every pipeline parameter's VALUE before a cluster or a local run is touched (SPEC §9).

``check_run_params(params)`` takes what the user gave (``--param``/``--params-file``), fills the
pipeline's defaults, and raises one ConfigError naming the parameter and what is allowed when a
value is wrong: variant names, the baseline, the loss, epochs, and every key (and, where the step
can check it without data, every value) of ``*_options`` against that step's real options.

The embedded demo's settings (``DEMO_*``) apply only to ``source=synthetic``: real data gets the
steps' own defaults (max-len 200, 50 epochs with early stopping), never the demo's.
"""

import json

from components.errors import ConfigError

# The embedded demo: a synthetic dataset with planted sparse domains, sized so that the whole
# pipeline (3 variants) runs in a few minutes on a 2-core CPU.
DEMO_INGEST_OPTIONS = {"num_users": 800, "num_items": 300, "num_domains": 6, "seed": 0}
DEMO_TRAIN_OPTIONS = {"max_len": 50, "seed": 0}
DEMO_EPOCHS = 8

# Options set by pipeline parameters or by the compiled machine, not by *_options.
RESERVED: dict[str, dict[str, str | None]] = {
    "ingest_options": {"source": "source", "input_uri": "input_uri", "output_dir": None},
    "stats_options": {"fixed_domains": "fixed_domains", "dataset_dir": None, "output_dir": None},
    "train_options": {
        "scheme": "variants",
        "loss": "loss",
        "epochs": "epochs",
        "device": "the compiled target (--no-gpu / --accelerator)",
        "exclude_seen": "exclude_seen (one protocol per run)",
    },
    "eval_options": {
        "device": "the compiled target (--no-gpu / --accelerator)",
        "exclude_seen": "exclude_seen (one protocol per run)",
    },
    "report_options": {"baseline": "baseline", "evals": None, "output_dir": None},
}


def with_demo_defaults(params: dict) -> dict:
    """The demo's dataset size and short training for ``source=synthetic`` (unless given)."""
    params = dict(params)
    if params.get("source", "synthetic") == "synthetic":
        params.setdefault("ingest_options", DEMO_INGEST_OPTIONS)
        params.setdefault("train_options", DEMO_TRAIN_OPTIONS)
        params.setdefault("epochs", DEMO_EPOCHS)
    return params


def _fail(name: str, value, allowed: str) -> None:
    raise ConfigError(f"--param {name}={json.dumps(value, default=str)}: {allowed}")


def _check_keys(name: str, options: dict, known: set[str]) -> None:
    if not isinstance(options, dict):
        _fail(name, options, "expected a JSON object of the step's options")
    for key in options:
        reserved = RESERVED.get(name, {})
        if key in reserved:
            where = reserved[key]
            _fail(
                name,
                options,
                f"{key!r} is not an option here"
                + (f"; it is set by {where}" if where else "; the pipeline sets it"),
            )
    unknown = sorted(set(options) - known)
    if unknown:
        _fail(name, options, f"unknown option(s) {unknown}; expected some of {sorted(known)}")


def _check_ingest(params: dict) -> None:
    from components.ingest.core import IngestOptions
    from components.ingest.ingest import CORE_KEYS, SOURCES, source_option_names

    source, input_uri = params["source"], params["input_uri"]
    if source not in SOURCES:
        _fail("source", source, f"expected one of {list(SOURCES)}")
    if source != "synthetic" and not input_uri:
        _fail("input_uri", input_uri, f"source {source} reads a file: give its path or gs:// URI")
    if source == "synthetic" and input_uri:
        _fail("input_uri", input_uri, "source synthetic is generated and reads no input")
    options = params["ingest_options"]
    _check_keys("ingest_options", options, CORE_KEYS | source_option_names(source) | {"sha256"})
    try:
        IngestOptions(**{k: v for k, v in options.items() if k in CORE_KEYS})
        if source == "synthetic":
            from components.ingest.synthetic import SyntheticConfig

            SyntheticConfig(**{k: v for k, v in options.items() if k not in CORE_KEYS})
    except (ConfigError, TypeError, ValueError) as exc:
        _fail("ingest_options", options, str(exc))


EXAMPLE = '{"name": "dyn-b8", "scheme": "dynamic", "beta": 0.8}'


def _check_variants(params: dict) -> None:
    from components.core.variants import parse_variants

    variants = params["variants"]
    try:
        names = [v.name for v in parse_variants(variants, "variant")]
    except ConfigError as exc:
        _fail("variants", variants, f"{exc} (a variant: a scheme name, or e.g. {EXAMPLE})")
    if params["baseline"] not in names:
        _fail("baseline", params["baseline"], f"must be the name of a variant: {names}")
    fixed = params["fixed_domains"]
    if not isinstance(fixed, list) or not all(isinstance(d, str) for d in fixed):
        _fail("fixed_domains", fixed, "expected a list of domain names")


def _check_train(params: dict) -> None:
    from dataclasses import fields

    from components.core.model_config import DERIVED, ModelConfig
    from components.core.variants import parse_variants
    from components.train.config import LOSSES, TrainConfig, split_options

    if params["loss"] not in LOSSES:
        _fail("loss", params["loss"], f"expected one of {list(LOSSES)}")
    if not isinstance(params["epochs"], int) or params["epochs"] < 1:
        _fail("epochs", params["epochs"], "expected a positive number of epochs")
    if not isinstance(params["exclude_seen"], bool):
        _fail("exclude_seen", params["exclude_seen"], "expected true or false")
    options = params["train_options"]
    known = {f.name for f in fields(TrainConfig)} | {f.name for f in fields(ModelConfig)}
    known -= set(DERIVED)  # set from the dataset, never an option
    _check_keys("train_options", options, known)
    run_options = {**options, "loss": params["loss"], "epochs": params["epochs"]}
    checks = [("train_options", options, run_options)]
    for variant in parse_variants(params["variants"]):
        # what a variant sets wins over the run's options (components.train.launch)
        unknown = sorted(set(variant.train) - known)
        if unknown:
            _fail(
                "variants",
                variant.as_item(),
                f"unknown train option(s) {unknown}; a variant sets weighting parameters or "
                f"some of {sorted(known - {'device', 'scheme'})}",
            )
        merged = {
            **run_options,
            "scheme": variant.weighting_scheme,
            **variant.weighting,
            **variant.train,
        }
        checks.append(("variants", variant.as_item(), merged))
    for name, value, merged in checks:
        try:
            _, model_options = split_options(merged)
            ModelConfig(n_items=1, **model_options)
        except (ConfigError, TypeError, ValueError) as exc:
            _fail(name, value, str(exc).removeprefix("train: "))


def _check_step_options(params: dict, name: str, known, build) -> None:
    """Keys of ``params[name]`` among ``known``; ``build(**options)`` checks the values."""
    options = params[name]
    _check_keys(name, options, set(known))
    try:  # every value the step checks before reading data (NaN, ranges, w_min <= w_max, ...)
        build(**options)
    except (ConfigError, TypeError, ValueError) as exc:
        _fail(name, options, str(exc))


def _check_eval_and_report(params: dict) -> None:
    from components.core.variants import parse_variants
    from components.evaluate.config import EvalConfig, eval_option_names
    from components.report.config import report_config, report_option_names

    _check_step_options(params, "eval_options", eval_option_names(), EvalConfig)
    for variant in parse_variants(params["variants"]):  # its own evaluation (logit-adjust)
        options = variant.evaluate_options(params["eval_options"])
        try:
            EvalConfig(**options)
        except (ConfigError, TypeError, ValueError) as exc:
            _fail("variants", variant.as_item(), str(exc))
    _check_step_options(params, "report_options", report_option_names(), report_config)


def _check_stats(params: dict) -> None:
    from components.stats.config import stats_config, stats_option_names

    _check_step_options(params, "stats_options", stats_option_names(), stats_config)


def check_run_params(params: dict, defaults: dict | None = None) -> dict:
    """``params`` over the pipeline's defaults, checked; returns the complete parameter set."""
    from pipelines.params import pipeline_parameters

    full = {**(defaults if defaults is not None else pipeline_parameters()), **params}
    _check_ingest(full)
    _check_stats(full)
    _check_variants(full)
    _check_train(full)
    _check_eval_and_report(full)
    return full
