"""weights.json, the stats step's weighting record (SPEC §4, §5): its one owner.

Written by the stats step, read by train (the weighter) and evaluate (unlabelled domains, power
thresholds). Layout (``version`` 1)::

    version            WEIGHTS_VERSION
    dataset            dataset_fingerprint() of the dataset it was computed on
    domains            every domain, sparsest first
    params             the WeightingParams used (+ fixed_domains as chosen, fixed_domains_rule,
                       unlabelled_domains held at weight 1, unlabelled_names, boost_unlabelled)
    targets            {scheme: {domain: target weight}}
    domain_counts      {domain: train interactions n_d}
    domain_stats       {domain: {n, users, items, share, idf, user_ratio, entropy}}
    power_thresholds   the θ of the power-user counts
    n_train_interactions, n_train_users, zero_train_domains

A file that is not such a document (missing, not JSON, another version, keys missing) is an
InputError; a valid one computed on another dataset is a ConfigError. Both name the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.errors import ConfigError, InputError
from components.io import write_json_atomic
from components.schema import Dataset, check_same_dataset

WEIGHTS_VERSION = 1
WEIGHTS_FILE = "weights.json"

_REQUIRED_KEYS = (
    "version",
    "dataset",
    "domains",
    "params",
    "targets",
    "domain_counts",
    "domain_stats",
    "power_thresholds",
)
_REQUIRED_STATS = ("n", "share", "idf", "user_ratio", "entropy")


def weights_path(path: str | Path) -> Path:
    """``path`` itself, or the weights.json inside it when it is a (stats output) directory."""
    path = Path(path)
    return path / WEIGHTS_FILE if path.is_dir() else path


def read_weights_json(path: str | Path) -> dict:
    """Parse a weights.json (a file, or a stats output dir holding one) without checking its
    layout: what evaluate needs from it is checked by evaluate. InputError naming the file."""
    path = weights_path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file (run `python -m components.stats` first)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object")
    return document


def validate_weights(weights: dict, source: str = WEIGHTS_FILE) -> dict:
    """Check a parsed weights.json; InputError naming ``source`` and what is wrong."""
    if not isinstance(weights, dict):
        raise InputError(f"{source}: expected a JSON object")
    version = weights.get("version")
    if version != WEIGHTS_VERSION:
        raise InputError(
            f"{source}: weights version {version!r}, this dwlrec reads version "
            f"{WEIGHTS_VERSION}; re-run `python -m components.stats` to regenerate it"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in weights]
    if missing:
        raise InputError(f"{source}: missing key(s) {missing}")
    domains = weights["domains"]
    if not isinstance(domains, list) or not domains or len(set(domains)) != len(domains):
        raise InputError(f"{source}: 'domains' must be a non-empty list of distinct names")
    for key in ("domain_counts", "domain_stats"):
        absent = [d for d in domains if d not in weights[key]]
        if absent:
            raise InputError(f"{source}: {key!r} lacks domain(s) {absent}")
    for d in domains:
        lacking = [k for k in _REQUIRED_STATS if k not in weights["domain_stats"][d]]
        if lacking:
            raise InputError(f"{source}: domain_stats[{d!r}] lacks {lacking}")
    if not isinstance(weights["params"], dict):
        raise InputError(f"{source}: 'params' must be a JSON object")
    unlabelled = weights["params"].get("unlabelled_domains", [])
    if not isinstance(unlabelled, list) or not all(isinstance(d, str) for d in unlabelled):
        raise InputError(f"{source}: params.unlabelled_domains must be a list of domain names")
    return weights


def load_weights(path: str | Path) -> dict:
    """Parse and validate a weights.json (a file, or a stats output dir holding one)."""
    return validate_weights(read_weights_json(path), str(weights_path(path)))


def save_weights(directory: str | Path, document: dict) -> Path:
    """Validate ``document`` and write it atomically as ``directory``/weights.json."""
    path = Path(directory) / WEIGHTS_FILE
    validate_weights(document, str(path))
    write_json_atomic(path, document)
    return path


def check_dataset(
    weights: dict, dataset: Dataset | dict, source: str | Path = WEIGHTS_FILE
) -> None:
    """ConfigError if ``weights`` was computed on another dataset than ``dataset`` (a Dataset
    or its fingerprint): the one same-dataset check of weights.json, for every reader."""
    try:
        check_same_dataset(weights.get("dataset"), dataset, str(source), "computed")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; re-run the stats step on this dataset") from None


__all__ = [
    "WEIGHTS_FILE",
    "WEIGHTS_VERSION",
    "check_dataset",
    "load_weights",
    "read_weights_json",
    "save_weights",
    "validate_weights",
]
