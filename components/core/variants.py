"""Pipeline variants (SPEC §9): named weighting specs that run side by side in one pipeline run.

A variant is a bare scheme name (``"dynamic"``, the shorthand for ``{"name": "dynamic", "scheme":
"dynamic"}``) or a JSON object::

    {"name": "dynamic-composite", "scheme": "dynamic", "target": "composite", "beta": 0.8}

``scheme`` is required: a weighting scheme (``WeightingSpec``) or ``logit-adjust`` (SPEC §5: the
unweighted model, its scores adjusted after training by τ·log w_d, τ chosen on validation — it
trains as ``none`` and its evaluation calibrates). ``name`` defaults to the scheme when nothing
else is set. The other keys are weighting parameters (they win over what weights.json recorded),
evaluate options of this variant only (``EVALUATE_PER_VARIANT``: the logit adjustment's) or train
options of this variant only (``loss``, ``lr``, ``aux_domain``…: they win over the run's ``loss``
and ``train_options``). Names key the checkpoints, the evaluation's metrics and the report, so
they are unique and path-safe.

``parse_variants`` is run by the pipeline's pre-run check and again by the stats task, whose
output (``Variant.as_item()`` per variant) is what the train and evaluate tasks iterate over.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from components.core.weighting.spec import PARAMETER_NAMES, SCHEMES, WeightingSpec
from components.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# set by the pipeline's compiled machine or by the variant's own fields, never per variant
NOT_PER_VARIANT = ("device", "name", "scheme", "exclude_seen")  # one protocol per run
# variant schemes that are not weighting schemes: the weighting scheme they train with
LOGIT_ADJUST = "logit-adjust"
TRAINED_AS: dict[str, str] = {LOGIT_ADJUST: "none"}
VARIANT_SCHEMES = (*SCHEMES, *TRAINED_AS)
# the evaluate options a variant may set for its own evaluation (the logit adjustment's)
EVALUATE_PER_VARIANT = ("logit_adjust", "tau_max", "tau_steps", "la_max_overall_drop")


@dataclass(frozen=True)
class Variant:
    """One variant: its name, its scheme and what it sets beyond the run's options."""

    name: str
    scheme: str
    weighting: dict = field(default_factory=dict)  # WeightingSpec parameters given
    train: dict = field(default_factory=dict)  # train options of this variant only
    evaluate: dict = field(default_factory=dict)  # evaluate options of this variant only

    @property
    def weighting_scheme(self) -> str:
        """The weighting scheme the variant trains with (``logit-adjust`` trains as ``none``)."""
        return TRAINED_AS.get(self.scheme, self.scheme)

    def evaluate_options(self, options: dict) -> dict:
        """The run's evaluate ``options`` for this variant: a ``logit-adjust`` variant is
        evaluated adjusted (``logit_adjust="inverse"`` where the run leaves it off: unadjusted it
        would be ``none``); the variant's own evaluate options win."""
        out = dict(options)
        if self.scheme == LOGIT_ADJUST and out.get("logit_adjust", "off") == "off":
            out["logit_adjust"] = "inverse"
        return {**out, **self.evaluate}

    def as_item(self) -> dict:
        """The flat JSON object the pipeline's train and evaluate tasks receive."""
        return {
            "name": self.name,
            "scheme": self.scheme,
            **self.weighting,
            **self.train,
            **self.evaluate,
        }

    def describe(self) -> str:
        """``scheme`` and what the variant sets, e.g. ``dynamic (target=composite, beta=0.8)``."""
        settings = {**self.weighting, **self.train, **self.evaluate}
        if not settings:
            return self.scheme
        pairs = ", ".join(f"{k}={json.dumps(v)}" for k, v in settings.items())
        return f"{self.scheme} ({pairs})"


def _fail(where: str, item: object, what: str) -> ConfigError:
    return ConfigError(f"{where}: {json.dumps(item, default=str)}: {what}")


def parse_variant(item: object, where: str = "variants") -> Variant:
    """A variant from its shorthand or its object; ConfigError naming ``where`` and the item."""
    if isinstance(item, str):
        item = {"scheme": item}
    if not isinstance(item, dict):
        raise _fail(where, item, "expected a scheme name or an object with 'scheme'")
    scheme = item.get("scheme")
    if not isinstance(scheme, str) or scheme not in VARIANT_SCHEMES:
        raise _fail(where, item, f"'scheme' must be one of {list(VARIANT_SCHEMES)}")
    settings = {k: v for k, v in item.items() if k not in ("name", "scheme")}
    if "name" in item:
        name = item["name"]
    elif settings:
        raise _fail(where, item, "a variant that sets options needs a 'name'")
    else:
        name = scheme
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise _fail(where, item, "'name' must be 1-63 characters of letters, digits, '_', '.', '-'")
    reserved = sorted(k for k in settings if k in NOT_PER_VARIANT)
    if reserved:
        raise _fail(where, item, f"{reserved} cannot be set per variant")
    weighting = {k: v for k, v in settings.items() if k in PARAMETER_NAMES}
    try:
        WeightingSpec(scheme=TRAINED_AS.get(scheme, scheme), **weighting)  # checked when made
    except ConfigError as exc:
        raise _fail(where, item, str(exc)) from exc
    evaluate = {k: v for k, v in settings.items() if k in EVALUATE_PER_VARIANT}
    train = {
        k: v
        for k, v in settings.items()
        if k not in PARAMETER_NAMES and k not in EVALUATE_PER_VARIANT
    }
    return Variant(name, scheme, weighting=weighting, train=train, evaluate=evaluate)


def parse_variants(items: Iterable[object], where: str = "variants") -> list[Variant]:
    """Every variant of a run: a non-empty list with unique names."""
    if isinstance(items, str | bytes | dict) or not isinstance(items, Iterable):
        raise ConfigError(f"{where}: expected a list of variants, got {items!r}")
    variants = [parse_variant(item, where) for item in items]
    if not variants:
        raise ConfigError(f"{where}: expected at least one variant")
    names = [v.name for v in variants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"{where}: duplicate variant name(s) {duplicates}; give each a unique 'name' "
            "(the report keys on names)"
        )
    return variants


def variant_names(items: Iterable[object]) -> list[str]:
    """The names of a run's variants (``parse_variants``)."""
    return [v.name for v in parse_variants(items)]
