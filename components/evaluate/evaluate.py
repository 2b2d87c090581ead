"""The evaluate step (SPEC §7): full-ranking test metrics per domain and per power-user cohort.

Every test user's held-out item is ranked against EVERY item (padding masked, ties pessimistic)
given the user's train + valid prefix. Recall@K / NDCG@K are reported overall, per target domain
and per domain's power users, each with a 95% bootstrap CI (users resampled, seeded), plus
catalogue coverage and the share of top-K slots per domain. ``per_user.parquet`` keeps each
user's rank and cohort memberships so the report step can compare variants on the same users.
"""

from __future__ import annotations

import json
import logging
import numbers
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.download import localize
from components.errors import ConfigError, InputError
from components.evaluate.metrics import (
    bootstrap_ci,
    coverage_at_k,
    ndcg_at_k,
    rank_all,
    recall_at_k,
    stable_seed,
    user_states,
)
from components.io import (
    atomic_dir,
    check_output,
    library_versions,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from components.reporting import format_value, markdown_table
from components.schema import Dataset, dataset_fingerprint, load_dataset
from components.sequences import SPLIT_CODE, UserSequences

log = logging.getLogger(__name__)

METRICS_VERSION = 1
PER_USER_FILE = "per_user.parquet"
METRICS_FILE = "metrics.json"
PER_DOMAIN_FILE = "per_domain.parquet"
METRICS_MD_FILE = "metrics.md"
# copied from the model dir so the report step needs only eval dirs
MODEL_LOG_FILES = ("train_log.jsonl", "weights_history.json")
MODEL_CONFIG_COPY = "model_config.json"


@dataclass
class EvalConfig:
    ks: tuple[int, ...] = (10, 20)
    exclude_seen: bool = False  # mask the items the user interacted with before the target
    bootstrap: int = 1000  # resamples for the 95% CIs (0 = no CIs)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 256  # users per forward pass of the model
    confidence: float = 0.95

    def __post_init__(self) -> None:
        """ConfigError naming the option and what is allowed (before anything is read)."""

        def whole(value) -> bool:  # an integer, or a float holding one (JSON params)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                return False
            return isinstance(value, numbers.Integral) or float(value).is_integer()

        ks = list(self.ks) if isinstance(self.ks, list | tuple) else [self.ks]
        if not ks or not all(whole(k) and k >= 1 for k in ks):
            raise ConfigError(f"--k: cut-offs must be positive integers, got {ks}")
        self.ks = tuple(sorted({int(k) for k in ks}))
        for option, value, low in (
            ("--bootstrap", self.bootstrap, 0),
            ("--seed", self.seed, 0),
            ("--batch-size", self.batch_size, 1),
        ):
            if not whole(value) or value < low:
                raise ConfigError(f"{option}: must be an integer >= {low}, got {value!r}")
        if not isinstance(self.exclude_seen, bool):
            raise ConfigError(f"--exclude-seen: expected true or false, got {self.exclude_seen!r}")
        if (
            isinstance(self.confidence, bool)
            or not isinstance(self.confidence, numbers.Real)
            or not 0 < self.confidence < 1
        ):
            raise ConfigError(f"confidence: must be a number in (0, 1), got {self.confidence!r}")
        if not isinstance(self.device, str) or (
            self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:")
        ):
            raise ConfigError(f"--device: expected auto, cpu or cuda, got {self.device!r}")


@dataclass
class DomainStats:
    """What the evaluate step needs from the stats step's output dir."""

    domains: list[str]  # sparsest → densest
    shares: dict[str, float]  # p_d: share of train interactions
    power_thresholds: list[float]
    power_users: pa.Table  # user_idx, domain, share (share >= min threshold)
    # items without a known domain, e.g. "(none)" (weights.json params.unlabelled_domains):
    # reported as their own cohort, never counted as a sparse domain
    unlabelled: list[str] = field(default_factory=list)

    def sparse_domains(self) -> list[str]:
        """Domains with less than a uniform share 1/|D| of train interactions (up-weighted);
        unlabelled ones are neither counted in |D| nor sparse."""
        labelled = [d for d in self.domains if d not in self.unlabelled]
        uniform = 1.0 / max(len(labelled), 1)
        return [d for d in labelled if self.shares.get(d, 0.0) < uniform]


def theta_name(theta: float) -> str:
    return f"{theta:g}"


def power_column(theta: float) -> str:
    return f"power_domains_{theta_name(theta)}"


# --------------------------------------------------------------------------- inputs


def load_domain_stats(stats_dir: str | Path, dataset: Dataset) -> DomainStats:
    """Read domain_stats.parquet, power_users.parquet and weights.json; check the dataset."""
    root = Path(stats_dir)
    files = {n: root / n for n in ("domain_stats.parquet", "power_users.parquet", "weights.json")}
    missing = [n for n, p in files.items() if not p.exists()]
    if missing:
        raise InputError(f"{root}: not a stats step output, missing {missing}")
    try:
        weights = json.loads(files["weights.json"].read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{files['weights.json']}: invalid JSON ({exc})") from exc
    expected = dataset_fingerprint(dataset)
    got = weights.get("dataset", {})
    if any(got.get(key) != value for key, value in expected.items()):
        raise ConfigError(
            f"{files['weights.json']}: computed on another dataset ({got}) than {dataset.path} "
            f"({expected})"
        )
    stats = pq.read_table(files["domain_stats.parquet"])
    for column in ("domain", "p_d"):
        if column not in stats.column_names:
            raise InputError(f"{files['domain_stats.parquet']}: missing column {column!r}")
    domains = stats.column("domain").to_pylist()
    shares = dict(zip(domains, stats.column("p_d").to_pylist(), strict=True))
    unknown = sorted(set(dataset.domain_names()) - set(domains))
    if unknown:
        raise ConfigError(
            f"{files['domain_stats.parquet']}: domains {unknown} of the dataset missing"
        )
    power = pq.read_table(files["power_users.parquet"])
    needed = {"user_idx", "domain", "share"}
    if not needed <= set(power.column_names):
        raise InputError(f"{files['power_users.parquet']}: expected columns {sorted(needed)}")
    thresholds = [float(t) for t in weights.get("power_thresholds", [0.5, 0.2])]
    params = weights.get("params") if isinstance(weights.get("params"), dict) else {}
    unlabelled = [d for d in params.get("unlabelled_domains") or [] if d in shares]
    return DomainStats(
        domains, shares, thresholds, power.select(["user_idx", "domain", "share"]), unlabelled
    )


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available (use auto or cpu)")
    return device


# the training settings a reader of a comparison needs to judge it (shown by the report)
TRAIN_SETTINGS = ("epochs", "patience", "batch_size", "lr", "weight_decay", "seed")


def model_summary(config: dict) -> dict:
    """Scheme, loss and training facts from a train step's config.json (tolerant of layout)."""
    weighting = config.get("weighting") if isinstance(config.get("weighting"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    return {
        "scheme": config.get("scheme") or weighting.get("scheme") or "unknown",
        "loss": config.get("loss") if isinstance(config.get("loss"), str) else "unknown",
        "best_epoch": config.get("best_epoch"),
        "epochs_run": config.get("epochs_run"),
        "model": config.get("model", {}),
        "train": {k: train[k] for k in TRAIN_SETTINGS if k in train},
        "precision": config.get("precision"),
        "device": config.get("device"),
    }


# --------------------------------------------------------------------------- ranking


def history_csr(sequences: UserSequences, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Items each user interacted with before their first ``split`` interaction, as CSR.

    Rows are the users that have a ``split`` interaction, in user order (as in ``prefixes``).
    """
    positions = np.flatnonzero(sequences.split_code == SPLIT_CODE[split])
    users = np.searchsorted(sequences.offsets, positions, side="right") - 1
    first = np.ones(len(positions), dtype=bool)
    first[1:] = users[1:] != users[:-1]
    positions, users = positions[first], users[first]
    starts = sequences.offsets[users]
    lengths = positions - starts
    offsets = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    return offsets, sequences.item_idx[np.repeat(starts, lengths) + within]


def seen_mask(history_offsets: np.ndarray, history_items: np.ndarray, n_candidates: int, device):
    """Callable(rows) → bool [b, n_candidates], True at the items the user has already seen."""
    import torch

    def mask(rows: slice):
        start, stop = rows.start, min(rows.stop, len(history_offsets) - 1)
        lo, hi = history_offsets[start], history_offsets[stop]
        lengths = np.diff(history_offsets[start : stop + 1])
        row_ids = torch.as_tensor(np.repeat(np.arange(stop - start), lengths), device=device)
        items = torch.as_tensor(history_items[lo:hi], device=device)
        out = torch.zeros((stop - start, n_candidates), dtype=torch.bool, device=device)
        out[row_ids, items] = True
        return out

    return mask


def rank_test_users(
    states, item_embeddings, targets: np.ndarray, exclude=None, topk: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Full ranking of every target among all items → (ranks [U], top-k items [U, topk])."""
    import torch
    from tqdm.auto import tqdm

    if not torch.isfinite(states).all() or not torch.isfinite(item_embeddings).all():
        raise InputError("the model produced NaN/inf user states or item embeddings")
    item_embeddings_t = item_embeddings.float().T.contiguous()
    targets_t = torch.as_tensor(targets, device=states.device)
    with torch.no_grad(), tqdm(total=len(targets), desc="rank", unit="user") as bar:
        ranks, top_items = rank_all(
            lambda rows: states[rows] @ item_embeddings_t,
            targets_t,
            item_embeddings.shape[0],
            exclude,
            topk=topk,
            progress=bar.update,
        )
    return ranks.cpu().numpy(), top_items.cpu().numpy()


# --------------------------------------------------------------------------- cohorts and metrics


def per_user_table(
    users: np.ndarray,
    targets: np.ndarray,
    ranks: np.ndarray,
    item_domains: list[list[str]],
    stats: DomainStats,
) -> pa.Table:
    """One row per test user: rank of the target and every cohort the user belongs to."""
    columns = {
        "user_idx": pa.array(users, pa.int32()),
        "target_item_idx": pa.array(targets, pa.int32()),
        "rank": pa.array(ranks, pa.int64()),
        "target_domains": pa.array([item_domains[t] for t in targets], pa.list_(pa.string())),
    }
    for theta in stats.power_thresholds:
        power = stats.power_users.filter(pc.greater_equal(stats.power_users["share"], theta))
        by_user: dict[int, list[str]] = {}
        for user, domain in zip(
            power["user_idx"].to_pylist(), power["domain"].to_pylist(), strict=True
        ):
            by_user.setdefault(user, []).append(domain)
        order = {d: i for i, d in enumerate(stats.domains)}
        columns[power_column(theta)] = pa.array(
            [
                sorted(by_user.get(int(u), []), key=lambda d: order.get(d, len(order)))
                for u in users
            ],
            pa.list_(pa.string()),
        )
    return pa.table(columns)


def cohort_masks(per_user: pa.Table, stats: DomainStats) -> list[tuple[dict, np.ndarray]]:
    """[(cohort key, bool mask over per_user rows)]: overall, each domain, each domain's power users.

    The key is {"cohort": "overall"|"domain"|"power", "domain": str|None, "theta": float|None}.
    """
    n = per_user.num_rows
    cohorts = [({"cohort": "overall", "domain": None, "theta": None}, np.ones(n, dtype=bool))]

    def membership(column: str) -> dict[str, np.ndarray]:
        lists = per_user[column]
        rows = pc.list_parent_indices(lists).to_numpy()
        values = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
        masks = {}
        for domain in stats.domains:
            mask = np.zeros(n, dtype=bool)
            mask[rows[values == domain]] = True
            masks[domain] = mask
        return masks

    for domain, mask in membership("target_domains").items():
        cohorts.append(({"cohort": "domain", "domain": domain, "theta": None}, mask))
    for theta in stats.power_thresholds:
        for domain, mask in membership(power_column(theta)).items():
            cohorts.append(({"cohort": "power", "domain": domain, "theta": theta}, mask))
    return cohorts


def metric_names(ks) -> list[str]:
    return [f"{name}@{k}" for k in ks for name in ("recall", "ndcg")]


def per_user_metrics(ranks: np.ndarray, ks) -> np.ndarray:
    """[U, 2·len(ks)] per-user metric values, columns in ``metric_names(ks)`` order."""
    return np.stack([f(ranks, k) for k in ks for f in (recall_at_k, ndcg_at_k)], axis=1).reshape(
        len(ranks), 2 * len(ks)
    )


def cohort_key_str(key: dict) -> str:
    if key["cohort"] == "overall":
        return "overall"
    if key["cohort"] == "domain":
        return f"domain:{key['domain']}"
    return f"power@{theta_name(key['theta'])}:{key['domain']}"


def cohort_rows(per_user: pa.Table, stats: DomainStats, config: EvalConfig) -> list[dict]:
    """Each cohort's n, metrics and bootstrap CI (each cohort resampled with its own seed)."""
    values = per_user_metrics(per_user["rank"].to_numpy(), config.ks)
    names = metric_names(config.ks)
    rows = []
    for key, mask in cohort_masks(per_user, stats):
        cohort_values = values[mask]
        row = dict(key, n=int(mask.sum()))
        means = cohort_values.mean(axis=0) if len(cohort_values) else np.full(len(names), np.nan)
        ci = bootstrap_ci(
            cohort_values,
            config.bootstrap,
            seed=stable_seed(config.seed, cohort_key_str(key)),
            confidence=config.confidence,
        )
        for j, name in enumerate(names):
            row[name] = float(means[j])
            row[f"{name}_low"], row[f"{name}_high"] = float(ci[j, 0]), float(ci[j, 1])
        rows.append(row)
    return rows


def domain_slot_shares(
    items: np.ndarray, item_domains: list[list[str]], domains: list[str]
) -> dict[str, float]:
    """Share of the given item slots (any shape) filled by an item of each domain.

    A multi-domain item counts in each of its domains, so shares can sum to more than 1.
    """
    items = np.asarray(items).ravel()
    if len(items) == 0:
        return {d: float("nan") for d in domains}
    counts = np.bincount(items, minlength=len(item_domains))
    totals = dict.fromkeys(domains, 0)
    for item in np.flatnonzero(counts):
        for domain in item_domains[item]:
            totals[domain] = totals.get(domain, 0) + int(counts[item])
    return {d: totals[d] / len(items) for d in domains}


def exposure(
    top_items: np.ndarray, targets: np.ndarray, item_domains, stats: DomainStats, ks, n_items: int
) -> dict:
    """Coverage@K and the share of top-K slots per domain (vs the share of test targets)."""
    return {
        "coverage": {f"coverage@{k}": coverage_at_k(top_items, n_items, k) for k in ks},
        "top_share": {
            str(k): domain_slot_shares(top_items[:, :k], item_domains, stats.domains) for k in ks
        },
        "target_share": domain_slot_shares(targets, item_domains, stats.domains),
    }


def per_domain_table(rows: list[dict], stats: DomainStats, exposure_info: dict, ks) -> pa.Table:
    """One row per cohort (overall, domains, power users) in sparsest → densest order."""
    table = pa.Table.from_pylist(rows)
    domain = table["domain"].to_pylist()
    extra = {
        "p_d": [stats.shares.get(d) if d else None for d in domain],
        "target_share": [
            exposure_info["target_share"].get(d) if d and c == "domain" else None
            for d, c in zip(domain, table["cohort"].to_pylist(), strict=True)
        ],
    }
    for k in ks:
        shares = exposure_info["top_share"][str(k)]
        extra[f"top{k}_share"] = [
            shares.get(d) if d and c == "domain" else None
            for d, c in zip(domain, table["cohort"].to_pylist(), strict=True)
        ]
    for name, values in extra.items():
        table = table.append_column(pa.field(name, pa.float64()), pa.array(values, pa.float64()))
    return table.set_column(
        table.schema.get_field_index("theta"),
        "theta",
        pa.array(table["theta"].to_pylist(), pa.float64()),
    )


# --------------------------------------------------------------------------- report


def _value_with_ci(row: dict, name: str) -> str:
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if np.isnan(value):
        return "–"
    if np.isnan(low):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def metrics_markdown(metrics: dict, rows: list[dict]) -> str:
    """A short Markdown summary: overall numbers, the per-domain table, power-user cohorts."""
    ks = metrics["ks"]
    names = metric_names(ks)
    model = metrics["model"]
    lines = [
        f"# Evaluation: {model['scheme']} ({model['loss']} loss)\n",
        f"Full ranking over all {metrics['n_items']} items, {metrics['n_users']} test users, "
        f"pessimistic ties, seen items {'excluded' if metrics['exclude_seen'] else 'kept'}. "
        f"95% bootstrap CIs over users ({metrics['bootstrap']['resamples']} resamples).\n",
        "Coverage: " + ", ".join(f"{k} = {v:.4f}" for k, v in metrics["coverage"].items()) + "\n",
    ]
    k0 = str(ks[0])
    header = ["cohort", "domain", "θ", "n", *names, f"top-{k0} share", "target share"]
    unlabelled = {d["domain"] for d in metrics.get("domains", []) if d.get("unlabelled")}
    table_rows = []
    for row in rows:
        if row["cohort"] == "power" and row["n"] == 0:
            continue  # a domain without power users at this θ: nothing to report
        is_domain = row["cohort"] == "domain"
        table_rows.append(
            [
                row["cohort"],
                (row["domain"] or "–") + (" (unlabelled)" if row["domain"] in unlabelled else ""),
                format_value(row["theta"], "g"),
                str(row["n"]),
                *(_value_with_ci(row, name) for name in names),
                format_value(metrics["top_share"][k0].get(row["domain"]) if is_domain else None),
                format_value(metrics["target_share"].get(row["domain"]) if is_domain else None),
            ]
        )
    lines.append(markdown_table(header, table_rows))
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry


def evaluate_model(
    dataset: Dataset, stats: DomainStats, model, max_len: int, config: EvalConfig, device: str
) -> tuple[pa.Table, list[dict], dict]:
    """Rank every test user's target with ``model`` → (per_user table, cohort rows, exposure).

    ``model`` needs ``last_state(prefix [B, L] left-padded) -> [B, d]`` and
    ``item_embeddings() -> [n_items + 1, d]`` (tests inject fakes here).
    """
    import torch

    sequences = UserSequences.from_interactions(dataset.interactions, dataset.n_items)
    users, prefix, targets = sequences.prefixes("test", max_len)
    if len(users) == 0:
        raise InputError(f"{dataset.path}: no test interactions to evaluate")
    states = user_states(model, prefix, device, config.batch_size, progress=True)
    with torch.no_grad():
        item_embeddings = model.item_embeddings().detach().to(device)
    if item_embeddings.shape[0] != dataset.n_items + 1:
        raise ConfigError(
            f"the model scores {item_embeddings.shape[0] - 1} items, the dataset has "
            f"{dataset.n_items}: model and dataset do not match"
        )
    exclude = None
    if config.exclude_seen:
        exclude = seen_mask(*history_csr(sequences, "test"), dataset.n_items + 1, device)
    ranks, top_items = rank_test_users(states, item_embeddings, targets, exclude, max(config.ks))
    item_domains = dataset.item_domains()
    per_user = per_user_table(users, targets, ranks, item_domains, stats)
    rows = cohort_rows(per_user, stats, config)
    info = exposure(top_items, targets, item_domains, stats, config.ks, dataset.n_items)
    return per_user, rows, info


def evaluate(
    dataset_dir: str,
    stats_dir: str,
    model_dir: str,
    output_dir: str,
    ks=(10, 20),
    exclude_seen: bool = False,
    bootstrap: int = 1000,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 256,
    *,
    overwrite: bool = False,
) -> dict:
    """Evaluate a trained model on the test split; write the eval dir; return the summary.

    ``output_dir`` may replace only a previous evaluate output unless ``overwrite``, and never
    one of the inputs (checked before anything is read; components.io)."""
    config = EvalConfig(tuple(ks), exclude_seen, bootstrap, seed, device, batch_size)
    inputs = (dataset_dir, stats_dir, model_dir)
    check_output(output_dir, "evaluate", inputs=inputs, overwrite=overwrite)
    started = time.perf_counter()
    dataset = load_dataset(localize(dataset_dir))
    stats = load_domain_stats(localize(stats_dir), dataset)
    model_root = localize(model_dir)
    device = resolve_device(config.device)

    from components.train.model import load_model

    model, model_config = load_model(model_root, device)
    trained_on = model_config.get("dataset")
    if isinstance(trained_on, dict):
        expected = dataset_fingerprint(dataset)
        if any(trained_on.get(key) != value for key, value in expected.items()):
            raise ConfigError(
                f"{model_root}: trained on another dataset ({trained_on}) than {dataset.path}"
            )
    max_len = int(model_config["model"]["max_len"])
    per_user, rows, info = evaluate_model(dataset, stats, model, max_len, config, device)
    metrics = write_eval_dir(
        output_dir, dataset, stats, config, per_user, rows, info, model_config, model_root,
        extra={"device": device, "seconds": round(time.perf_counter() - started, 3)},
        inputs=inputs, overwrite=overwrite,
    )  # fmt: skip
    log.info("evaluated %d users in %.1fs → %s", per_user.num_rows, metrics["seconds"], output_dir)
    return {
        "output_dir": str(output_dir),
        **metrics["summary"],
        "scheme": metrics["model"]["scheme"],
    }


def write_eval_dir(
    output_dir: str | Path,
    dataset: Dataset,
    stats: DomainStats,
    config: EvalConfig,
    per_user: pa.Table,
    rows: list[dict],
    info: dict,
    model_config: dict,
    model_root: Path | None = None,
    extra: dict | None = None,
    *,
    inputs=(),
    overwrite: bool = False,
) -> dict:
    """Write the eval dir atomically (and copy the model's logs); return metrics.json's dict.

    ``inputs``: the paths the eval dir must not overwrite (``components.io.atomic_dir``)."""
    metrics = {
        "version": METRICS_VERSION,
        "dataset": dataset_fingerprint(dataset),
        "model": {"dir": str(model_root), **model_summary(model_config)},
        "split": "test",
        "exclude_seen": config.exclude_seen,
        "ks": list(config.ks),
        "bootstrap": {
            "resamples": config.bootstrap,
            "seed": config.seed,
            "confidence": config.confidence,
        },
        "n_users": per_user.num_rows,
        "n_items": dataset.n_items,
        "domains": [
            {
                "domain": d,
                "p_d": stats.shares.get(d),
                "sparse": d in stats.sparse_domains(),
                "unlabelled": d in stats.unlabelled,
            }
            for d in stats.domains
        ],
        "power_thresholds": stats.power_thresholds,
        "summary": {
            **{name: rows[0][name] for name in metric_names(config.ks)},
            **info["coverage"],
            "n_users": per_user.num_rows,
        },
        "overall": rows[0],
        "cohorts": rows[1:],
        **info,
        **(extra or {}),
        "versions": library_versions(),
        "config": asdict(config),
    }
    metrics = _json_safe(metrics)
    with atomic_dir(output_dir, step="evaluate", inputs=inputs, overwrite=overwrite) as staging:
        write_parquet_atomic(per_user, staging / PER_USER_FILE)
        write_parquet_atomic(
            per_domain_table(rows, stats, info, config.ks), staging / PER_DOMAIN_FILE
        )
        write_json_atomic(staging / METRICS_FILE, metrics)
        write_text_atomic(staging / METRICS_MD_FILE, metrics_markdown(metrics, rows))
        write_json_atomic(staging / MODEL_CONFIG_COPY, model_config)
        for name in MODEL_LOG_FILES:
            if model_root is not None and (model_root / name).exists():
                shutil.copyfile(model_root / name, staging / name)
            else:
                log.warning("%s: no %s to copy (training curves will be missing)", model_root, name)
    return metrics


def _json_safe(obj):
    """NaN → None recursively (JSON has no NaN), numpy scalars → Python numbers."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and np.isnan(obj):
        return None
    return obj
