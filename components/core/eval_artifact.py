"""The evaluation dir (SPEC §7): written by the evaluate step, read by the report. Its one owner.

per_user.parquet     user_idx, target_item_idx, rank, target_domains, power_domains_<θ>
metrics.json         overall and per-cohort metrics with CIs, coverage, the domains, the model
per_domain.parquet   the cohorts as a table, sparsest → densest
metrics.md           a Markdown summary
model_config.json, train_log.jsonl, weights_history.json   copied from the model dir, so the
                     report needs only eval dirs
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.core.cohorts import Domains
from components.core.model_artifact import HISTORY_FILE, LOG_FILE
from components.download import localize
from components.errors import InputError
from components.io import atomic_dir, write_json_atomic, write_parquet_atomic, write_text_atomic

log = logging.getLogger("dwlrec.core")

METRICS_VERSION = 1
PER_USER_FILE = "per_user.parquet"
METRICS_FILE = "metrics.json"
PER_DOMAIN_FILE = "per_domain.parquet"
METRICS_MD_FILE = "metrics.md"
MODEL_LOG_FILES = (LOG_FILE, HISTORY_FILE)  # copied from the model dir
MODEL_CONFIG_COPY = "model_config.json"


def domain_entries(domains: Domains) -> list[dict]:
    """metrics.json's ``domains``: each domain's share and whether it is sparse or unlabelled."""
    sparse = domains.sparse_domains()
    return [
        {
            "domain": d,
            "p_d": domains.shares.get(d),
            "sparse": d in sparse,
            "unlabelled": d in domains.unlabelled,
        }
        for d in domains.domains
    ]


def domains_of(metrics: dict) -> Domains:
    """The ``Domains`` an evaluation was cut by, from its metrics.json (``domain_entries``)."""
    entries = metrics.get("domains", [])
    return Domains(
        domains=[d["domain"] for d in entries],
        shares={d["domain"]: d.get("p_d") or 0.0 for d in entries},
        power_thresholds=[float(t) for t in metrics.get("power_thresholds", [])],
        unlabelled=[d["domain"] for d in entries if d.get("unlabelled")],
    )


def write_eval_dir_files(
    output_dir: str | Path,
    *,
    per_user: pa.Table,
    per_domain: pa.Table,
    metrics: dict,
    markdown: str,
    model_config: dict,
    model_root: Path | None,
    inputs=(),
    overwrite: bool = False,
    extra_json: dict[str, object] | None = None,
) -> None:
    """Write the eval dir atomically and copy the model's logs into it.

    ``extra_json``: more JSON files {name: object} written into it (e.g. calibration.json).

    ``inputs``: the paths the eval dir must not overwrite (``components.io.atomic_dir``)."""
    with atomic_dir(output_dir, step="evaluate", inputs=inputs, overwrite=overwrite) as staging:
        write_parquet_atomic(per_user, staging / PER_USER_FILE)
        write_parquet_atomic(per_domain, staging / PER_DOMAIN_FILE)
        write_json_atomic(staging / METRICS_FILE, metrics)
        write_text_atomic(staging / METRICS_MD_FILE, markdown)
        write_json_atomic(staging / MODEL_CONFIG_COPY, model_config)
        for name, document in (extra_json or {}).items():
            write_json_atomic(staging / name, document)
        for name in MODEL_LOG_FILES:
            if model_root is not None and (model_root / name).exists():
                shutil.copyfile(model_root / name, staging / name)
            else:
                log.warning("%s: no %s to copy (training curves will be missing)", model_root, name)


@dataclass
class EvalRun:
    """One evaluate step output dir, loaded."""

    name: str
    path: Path
    metrics: dict
    per_user: pa.Table  # sorted by user_idx
    train_log: list[dict]
    weights_history: list[dict]

    @property
    def scheme(self) -> str:
        return self.metrics.get("model", {}).get("scheme", "unknown")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON line ({exc})") from exc


def load_eval(name: str, path: str | Path) -> EvalRun:
    """Read an eval dir (local, gs://, https://); ``name`` is the variant it is shown as."""
    root = localize(path)
    missing = [n for n in (METRICS_FILE, PER_USER_FILE) if not (root / n).exists()]
    if missing:
        raise InputError(f"{root} (--eval {name}): not an evaluate step output, missing {missing}")
    try:
        metrics = json.loads((root / METRICS_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{root / METRICS_FILE}: invalid JSON ({exc})") from exc
    per_user = pq.read_table(root / PER_USER_FILE).sort_by("user_idx")
    history_path = root / HISTORY_FILE
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    return EvalRun(name, root, metrics, per_user, _read_jsonl(root / LOG_FILE), history)
