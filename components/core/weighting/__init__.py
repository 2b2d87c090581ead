"""The domain weighting (SPEC §5), shared by the stats step (targets, weights.json) and the train
step (the spec it resolves, the weighter it holds).

    spec.py          WeightingParams / WeightingSpec: the scheme, its parameters, the defaults
    targets.py       pure-numpy target weights of the schemes (inverse, composite, fixed, EMA)
    weights_file.py  weights.json: layout, load/save, the same-dataset check
    weighter.py      DomainWeighter: per-example weights ω for training (torch, imported lazily)
    incidence.py     item → domain codes (CSR and padded), for the per-example gathers
    counts.py        the running counts of the targets seen (dynamic's updates)
    dro.py           GroupDRO: the ``dro`` scheme's q, EMA group losses, ω and update
    user_gate.py     UserDomainGate: ``dynamic-user``'s (user, domain) share ≥ θ test

Importing this package never imports torch.
"""

from components.core.weighting.spec import (
    AGGS,
    DEFAULTS,
    PARAMETER_NAMES,
    POWER_USER_THETA,
    SCHEMES,
    TARGETS,
    UNLABELLED_DOMAINS,
    WeightingParams,
    WeightingSpec,
    resolve_spec,
)
from components.core.weighting.targets import (
    FIXED_DEFAULT_SHARE_FRACTION,
    check_bounds,
    composite_weights,
    default_fixed_domains,
    ema_update,
    fixed_weights,
    idf_from_counts,
    inverse_weights,
    rescale_to_mean_one,
    weightable,
)
from components.core.weighting.weighter import DYNAMIC_SCHEMES, DomainWeighter
from components.core.weighting.weights_file import (
    WEIGHTS_FILE,
    WEIGHTS_VERSION,
    check_dataset,
    load_weights,
    read_weights_json,
    save_weights,
    validate_weights,
)

__all__ = [
    "AGGS",
    "DEFAULTS",
    "DYNAMIC_SCHEMES",
    "FIXED_DEFAULT_SHARE_FRACTION",
    "PARAMETER_NAMES",
    "POWER_USER_THETA",
    "SCHEMES",
    "TARGETS",
    "UNLABELLED_DOMAINS",
    "WEIGHTS_FILE",
    "WEIGHTS_VERSION",
    "DomainWeighter",
    "WeightingParams",
    "WeightingSpec",
    "check_bounds",
    "check_dataset",
    "composite_weights",
    "default_fixed_domains",
    "ema_update",
    "fixed_weights",
    "idf_from_counts",
    "inverse_weights",
    "load_weights",
    "read_weights_json",
    "rescale_to_mean_one",
    "resolve_spec",
    "save_weights",
    "validate_weights",
    "weightable",
]
