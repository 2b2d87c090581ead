"""One weighting spec (SPEC §5): a scheme and its parameters, with the only defaults written.

``WeightingParams`` holds the parameters of the schemes: the stats step takes them as options
(``StatsConfig`` extends it) and records them in weights.json ``params``. ``WeightingSpec`` adds
the scheme and the update cadence: what the train step weights its loss with.

The rule between the two steps (``resolve_spec``): a value the user gave the train step wins;
otherwise the value weights.json recorded; otherwise the default below. The train step records
the values it used and where each came from in its config.json.

Every check names the option as the user writes it (``--beta``) and says what is allowed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from components.errors import ConfigError
from components.options import Checked
from components.schema import NO_DOMAIN

# dro: online group DRO over target domains; dynamic-user: dynamic's weight only for targets in a
# domain holding >= user_theta of the user's train history (SPEC §5 "Beyond DWL")
SCHEMES = ("none", "fixed", "inverse", "dynamic", "dro", "dynamic-user")
TARGETS = ("inverse", "composite")
AGGS = ("mean", "max")
# Domain names that mean "no domain known" rather than a niche interest: the contract's "(none)"
# (items a source gave no domain), MovieLens 100K's "unknown" genre and ML-20M/25M's
# "(no genres listed)" (when a dataset carries it literally). Weight 1 under every scheme and
# out of every target's normalisation by default (stats: --boost-unlabelled / --unlabelled-domains).
UNLABELLED_DOMAINS = (NO_DOMAIN, "(no genres listed)", "unknown")

# PinnerFormerLite's power-user threshold (SPEC §4: a power user of d has >= θ of their train
# interactions in d); dynamic-user's default gate. Equal to the stats step's first cohort θ.
POWER_USER_THETA = 0.5

# where a value of the spec train used came from (recorded in config.json)
GIVEN, RECORDED, DEFAULT = "train option", "weights.json", "default"


def option_name(name: str) -> str:
    """A field name as the CLI spells it: ``w_min`` → ``--w-min``."""
    return f"--{name.replace('_', '-')}"


def finite(option: str, value: object) -> float:
    """``value`` as a float; ConfigError naming ``option`` if it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{option}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{option}: must be a finite number, got {value}")
    return float(value)


def finite_list(option: str, values: object) -> tuple[float, ...]:
    """``values`` as a tuple of floats; ConfigError naming ``option`` otherwise."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{option}: expected a list of numbers, got {values!r}")
    return tuple(finite(option, v) for v in values)


def _choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{option_name(name)}: unknown {name} {value!r}; choose one of {list(allowed)}"
        )


def _names(option: str, values) -> None:
    if isinstance(values, str) or not all(isinstance(d, str) and d for d in values):
        raise ConfigError(f"{option}: expected domain names, got {values!r}")


# the real-valued parameters (checked finite, stored as floats)
_REALS = ("fixed_weight", "gamma", "w_min", "w_max", "beta", "alpha", "eta", "user_theta")


@dataclass
class WeightingParams(Checked):
    """The parameters of the weighting schemes (SPEC §5) and their defaults."""

    fixed_domains: list[str] | None = None  # fixed: boosted domains; None → the clearly sparse
    fixed_weight: float = 2.0  # fixed: w_d of the boosted domains
    gamma: float = 0.5  # inverse: power of (p̄ / p_d)
    w_min: float = 0.5  # lower clip bound of every target and of dynamic
    w_max: float = 5.0  # upper clip bound
    beta: float = 0.9  # EMA factor: of dynamic's weights, of dro's group losses
    target: str = "inverse"  # dynamic: what it moves toward (inverse | composite)
    lambdas: tuple[float, float, float] = (0.6, 0.3, 0.1)  # composite: IDF, user, entropy
    alpha: float = 0.5  # composite: w = 1 + alpha * zscore(S)
    agg: str = "mean"  # ω of a multi-domain item: mean | max of its domains' weights
    eta: float = 0.01  # dro: step size of q_g ← q_g·exp(η·ℓ̃_g) (Sagawa et al.'s default)
    user_theta: float = POWER_USER_THETA  # dynamic-user: share of the user's history, in (0, 1]

    def validate(self) -> None:
        """ConfigError naming the option and what is allowed."""
        for name in _REALS:
            finite(option_name(name), getattr(self, name))
        if not self.w_min > 0:
            raise ConfigError(f"--w-min: must be > 0, got {self.w_min}")
        if not self.w_min <= self.w_max:
            raise ConfigError(
                f"--w-min/--w-max: need --w-min <= --w-max, got {self.w_min} > {self.w_max}"
            )
        if self.gamma < 0:
            raise ConfigError(f"--gamma: must be >= 0, got {self.gamma}")
        if not self.fixed_weight > 0:
            raise ConfigError(f"--fixed-weight: must be > 0, got {self.fixed_weight}")
        if not 0 <= self.beta < 1:
            raise ConfigError(f"--beta: must be in [0, 1), got {self.beta}")
        _choice("target", self.target, TARGETS)
        _choice("agg", self.agg, AGGS)
        lambdas = finite_list("--lambdas", self.lambdas)
        if len(lambdas) != 3 or min(lambdas) < 0 or sum(lambdas) <= 0:
            raise ConfigError(
                f"--lambdas: need 3 finite values >= 0 with a positive sum; got {list(lambdas)}"
            )
        if self.alpha < 0:
            raise ConfigError(f"--alpha: must be >= 0, got {self.alpha}")
        if not self.eta > 0:
            raise ConfigError(f"--eta: must be > 0 (a finite number), got {self.eta}")
        if not 0 < self.user_theta <= 1:
            raise ConfigError(f"--user-theta: must be in (0, 1], got {self.user_theta}")
        if self.fixed_domains is not None:
            _names("--fixed-domains", self.fixed_domains)

    def normalise(self) -> None:
        """Canonical types after ``validate``: floats, a tuple of lambdas, a list of domains."""
        for name in _REALS:
            setattr(self, name, float(getattr(self, name)))
        self.lambdas = finite_list("--lambdas", self.lambdas)  # type: ignore[assignment]  # 3, validated
        if self.fixed_domains is not None:
            self.fixed_domains = list(self.fixed_domains)


@dataclass
class WeightingSpec(WeightingParams):
    """What the train step weights its loss with: a scheme and every parameter."""

    scheme: str = "none"  # one of SCHEMES
    update_every_steps: int = 0  # dynamic: 0 = update at each epoch end; K > 0 = every K steps

    def validate(self) -> None:
        _choice("scheme", self.scheme, SCHEMES)
        value = self.update_every_steps
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"--update-every-steps: expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(f"--update-every-steps: must be >= 0, got {value}")
        super().validate()

    def as_dict(self) -> dict:
        """JSON-ready values (lists, not tuples)."""
        values = asdict(self)
        values["lambdas"] = list(self.lambdas)
        return values


PARAMETER_NAMES = tuple(f.name for f in fields(WeightingSpec) if f.name != "scheme")


def scheme_parameters(spec: Mapping) -> tuple[str, ...]:
    """The parameters that shape the weights of ``spec``'s scheme (e.g. for a report row)."""
    scheme = spec.get("scheme", "none")
    if scheme == "none":
        return ()
    if scheme == "fixed":
        return ("fixed_domains", "fixed_weight", "agg")
    if scheme == "dro":  # beta: the EMA factor of the group losses
        return ("eta", "beta")
    target = "inverse" if scheme == "inverse" else spec.get("target", "inverse")
    shape = ("gamma",) if target == "inverse" else ("lambdas", "alpha")
    dynamic = ("target", "beta", "update_every_steps") if scheme != "inverse" else ()
    user = ("user_theta",) if scheme == "dynamic-user" else ()
    return (*dynamic, *user, *shape, "w_min", "w_max", "agg")


DEFAULTS = WeightingSpec()


def resolve_spec(
    scheme: str, recorded: Mapping | None = None, source: str = "weights.json", **given
) -> tuple[WeightingSpec, dict[str, str]]:
    """The spec a run uses and where each value came from (``GIVEN``, ``RECORDED``, ``DEFAULT``).

    ``given``: values the user gave explicitly; ``None`` means "not given". Each parameter is
    the given value, else the one ``recorded`` (weights.json ``params``), else the default.
    A bad given value names its option; a bad recorded one names ``source``."""
    unknown = sorted(set(given) - set(PARAMETER_NAMES))
    if unknown:
        raise ConfigError(f"weighting: unknown option(s) {unknown}; expected {PARAMETER_NAMES}")
    given = {k: v for k, v in given.items() if v is not None}
    WeightingSpec(scheme=scheme, **given)  # checked when made: a bad given value names its option
    recorded = {k: v for k, v in (recorded or {}).items() if k in PARAMETER_NAMES and v is not None}
    try:
        WeightingSpec(scheme=scheme, **recorded)
    except ConfigError as exc:
        raise ConfigError(f"{source}: recorded params: {exc}") from exc
    spec = WeightingSpec(scheme=scheme, **{**recorded, **given})
    spec.normalise()
    sources = {
        name: GIVEN if name in given else RECORDED if name in recorded else DEFAULT
        for name in PARAMETER_NAMES
    }
    return spec, sources


__all__ = [
    "AGGS",
    "DEFAULT",
    "DEFAULTS",
    "GIVEN",
    "PARAMETER_NAMES",
    "POWER_USER_THETA",
    "RECORDED",
    "SCHEMES",
    "TARGETS",
    "UNLABELLED_DOMAINS",
    "WeightingParams",
    "WeightingSpec",
    "finite",
    "finite_list",
    "option_name",
    "resolve_spec",
    "scheme_parameters",
]
