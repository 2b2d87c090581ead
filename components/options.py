"""A step's options are the fields of its config dataclass: their names, their defaults (written
once, in the dataclass) and the config built from keyword options, shared by every step's
library entry point, CLI and the pipeline's pre-run check.

One validation style: a config dataclass derives from ``Checked`` and writes its checks in
``validate()``, which runs when the config is made (and again on ``dataclasses.replace``), so a
config that exists is valid and a bad value fails before any work starts."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, TypeVar

from components.errors import ConfigError

Config = TypeVar("Config")


class Checked:
    """Base of the config dataclasses: ``validate()`` (ConfigError naming the option and what is
    allowed) runs in ``__post_init__``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on a bad value; the subclass's checks."""


def option_names(config: type) -> tuple[str, ...]:
    """Every field of the dataclass ``config``: the options of the step it configures."""
    return tuple(f.name for f in fields(config))


def field_default(config: type, name: str) -> Any:
    """The default written in the dataclass ``config`` for field ``name`` (a factory's value)."""
    field = config.__dataclass_fields__[name]  # type: ignore[attr-defined]
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    raise KeyError(f"{config.__name__}.{name} has no default")


def config_from(config: type[Config], step: str, options: dict[str, Any]) -> Config:
    """``config(**options)``; an unknown option name is a ConfigError listing the known ones."""
    known = option_names(config)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{step}: unknown option(s) {unknown}; expected some of {sorted(known)}")
    return config(**options)
