"""Pipeline parameters given on the command line: ``--param name=value`` and ``--params-file``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from components.errors import ConfigError


def pipeline_parameters() -> dict:
    """Every run-time parameter of the pipeline with its default."""
    from pipelines.pipeline import build_pipeline

    signature = inspect.signature(build_pipeline().pipeline_func)
    return {name: p.default for name, p in signature.parameters.items()}


def parse_params(pairs: list[str] | None = None, params_file: str | None = None) -> dict:
    """``name=value`` strings (value parsed as JSON when it is JSON, else kept as a string) over
    the JSON object in ``params_file``; unknown names are an error that lists the known ones."""
    params: dict = {}
    if params_file:
        try:
            loaded = json.loads(Path(params_file).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--params-file {params_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"--params-file {params_file}: expected a JSON object of parameters, "
                f"got a {type(loaded).__name__}"
            )
        params.update(loaded)
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            params[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[name.strip()] = raw
    return check_params(params)


def check_params(params: dict) -> dict:
    """Fail on unknown names and on values whose type differs from the default's."""
    known = pipeline_parameters()
    for name, value in params.items():
        if name not in known:
            raise ConfigError(
                f"--param {name}: unknown pipeline parameter; expected one of {sorted(known)}"
            )
        default = known[name]
        if isinstance(default, bool) or default is None:
            continue
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            params[name] = value = int(value)
        expected = float if isinstance(default, float) else type(default)
        if expected is float and isinstance(value, int):
            continue
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(
                f"--param {name}={json.dumps(value)}: expected a "
                f"{expected.__name__} like {json.dumps(default)}"
            )
    return params
