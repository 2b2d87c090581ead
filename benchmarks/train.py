"""Train-step benchmarks (issue 4). Prints one JSON object on stdout.

    python benchmarks/train.py                       # everything (slow on a 2-core CPU)
    python benchmarks/train.py --only ratio          # DWL overhead: step time dynamic / none
    python benchmarks/train.py --only throughput --only quality --quality-epochs 30

- ratio: the same model and the same batches trained with scheme ``none`` and ``dynamic``
  (and with no weighter at all), measured in alternating blocks; target dynamic/none <= 1.03.
- throughput: sequences/s and epoch seconds (train loop only, validation excluded) on
  ml-100k, amazon-beauty (from ``--data-root``; skipped when absent) and an ML-1M-sized
  synthetic dataset (6040 users, 3416 items, ~1M interactions; ``--ml1m-scale`` shrinks it).
- quality: amazon-beauty, ``--loss ce --scheme none``; full-ranking TEST HR@10 / NDCG@10 of the
  best-validation model (published SASRec+CCE ≈ 0.093 / 0.057, SPEC §8).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from components.core.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from components.core.model import ModelConfig, SeqRecModel  # noqa: E402
from components.core.model_artifact import load_model  # noqa: E402
from components.core.ranking import ranks_from_embeddings, seen_mask, user_states  # noqa: E402
from components.core.sequences import UserSequences  # noqa: E402
from components.core.weighting import DomainWeighter, load_weights  # noqa: E402
from components.ingest import ingest  # noqa: E402
from components.schema import load_dataset  # noqa: E402
from components.stats import compute_stats  # noqa: E402
from components.train import train  # noqa: E402
from components.train.data import TrainWindows, epoch_batches  # noqa: E402
from components.train.distributed import Process  # noqa: E402
from components.train.losses import LossFunction  # noqa: E402
from components.train.step import StepParts, train_step  # noqa: E402
from components.train.validation import evaluate_split  # noqa: E402


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if torch.cuda.is_available():
        info["cuda_version"] = torch.version.cuda
    return info


def prepare(name: str, work: Path, data_root: Path, ml1m_scale: float) -> Path | None:
    """Ingest one benchmark dataset into ``work`` (once); None when its raw files are absent."""
    out = work / name
    if (out / "manifest.json").exists():
        return out
    if name == "ml-100k":
        if not (data_root / "ml-100k").exists():
            return None
        ingest("movielens", out, str(data_root / "ml-100k"))
    elif name == "amazon-beauty":
        if not (data_root / "amazon-beauty").exists():
            return None
        ingest("sequences", out, str(data_root / "amazon-beauty"))
    elif name == "synthetic-ml1m":
        ingest(
            "synthetic",
            out,
            num_users=int(6040 * ml1m_scale),
            num_items=int(3416 * ml1m_scale) or 100,
            mean_length=165.6,
            seed=0,
        )
    return out


def weights_for(dataset: Path, work: Path) -> Path:
    stats = work / f"{dataset.name}-stats"
    if not (stats / "weights.json").exists():
        compute_stats(dataset, stats)
    return stats / "weights.json"


def step_time_ratio(dataset: Path, weights: Path, device: str, rounds: int, steps: int) -> dict:
    """Median step time of each variant on identical models and batches, alternating blocks."""
    ds = load_dataset(dataset)
    seqs = UserSequences.from_interactions(ds.interactions, ds.n_items)
    max_len = 200
    windows = TrainWindows(*seqs.train_sequences(), max_len=max_len)
    batches = [windows.batch(b) for b in epoch_batches(windows.users, 128, 0, 1)][:steps]
    dev = torch.device(device)
    torch.manual_seed(0)
    base = SeqRecModel(ModelConfig(n_items=ds.n_items, max_len=max_len)).to(dev)
    weights = load_weights(weights)
    variants = {}
    for name in ("unweighted", "none", "dynamic"):
        model = copy.deepcopy(base)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        weighter = None
        if name != "unweighted":
            weighter = DomainWeighter.from_weights(weights, ds.item_domains(), name)
        variants[name] = StepParts(
            model,
            model,
            LossFunction("ce", ds.n_items),
            weighter,
            optimizer,
            torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
            1.0,
            Process(),
        )
    times = {name: [] for name in variants}
    order = list(variants)
    for name in order:  # warm-up
        train_step(variants[name], *batches[0], 1, 1)
    step = 1
    for r in range(rounds):
        for i, (inputs, targets) in enumerate(batches):
            step += 1
            # the same batch for every variant, back to back, in a rotating order: slow drifts
            # of a shared machine hit all variants alike; ratios are taken per batch
            for name in order[i % 3 :] + order[: i % 3]:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                train_step(variants[name], inputs, targets, 1, step)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
        for name in ("none", "dynamic"):
            variants[name].weighter.epoch_end(r + 1, step)  # the DWL update, once per "epoch"
    # the weighting work alone (ω lookup + running counts + update check), per step
    weighter = variants["dynamic"].weighter
    flat = [torch.from_numpy(t) for _, t in batches]
    t0 = time.perf_counter()
    for targets in flat:
        weighter.example_weights(targets.to(dev)[targets > 0])
        weighter.observe(targets)
        weighter.step_end(1, 1)
    weighting_s = (time.perf_counter() - t0) / len(flat)
    t0 = time.perf_counter()
    weighter.epoch_end(1, 1)
    update_s = time.perf_counter() - t0

    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "dataset": dataset.name,
        "device": device,
        "batch_users": 128,
        "max_len": max_len,
        "steps_measured_per_variant": len(times["none"]),
        "median_step_s": {k: round(v, 5) for k, v in median.items()},
        "ratio_dynamic_over_none": round(paired("dynamic", "none"), 4),
        "ratio_dynamic_over_unweighted": round(paired("dynamic", "unweighted"), 4),
        "ratio_none_over_unweighted": round(paired("none", "unweighted"), 4),
        "weighting_ops_ms_per_step": round(1000 * weighting_s, 3),
        "dynamic_update_ms_per_epoch": round(1000 * update_s, 3),
        "weighting_share_of_step": round(weighting_s / median["none"], 5),
        "target": "<= 1.03",
    }


def throughput(
    dataset: Path,
    weights: Path,
    work: Path,
    device: str,
    max_len: int,
    epochs: int,
    length_buckets: int,
):
    started = time.perf_counter()
    out = work / f"{dataset.name}-throughput"
    summary = train(
        dataset,
        weights,
        out,
        scheme="dynamic",
        loss="ce",
        epochs=epochs,
        max_len=max_len,
        length_buckets=length_buckets,
        patience=0,
        device=device,
        progress=False,
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    ds = load_dataset(dataset)
    return {
        "dataset": dataset.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.interactions.num_rows,
        "device": summary["device"],
        "scheme": "dynamic",
        "loss": "ce",
        "max_len": max_len,
        "batch_users": 128,
        "length_buckets": length_buckets,
        "epochs": epochs,
        "epoch_train_seconds": [r["seconds"] for r in log],
        "sequences_per_s": [r["sequences_per_s"] for r in log],
        "wall_seconds_incl_validation": round(time.perf_counter() - started, 1),
        "val_ndcg@10_last_epoch": log[-1]["val_ndcg@10"],
    }


def test_excluding_history(model, seqs: UserSequences, device: torch.device) -> dict:
    """Test HR@10 / NDCG@10 with every item of the user's history (train + valid) excluded."""
    _, prefix, target = seqs.prefixes("test", model.cfg.max_len)
    states = user_states(model, prefix, device, batch_size=1024)
    seen = seen_mask(*seqs.history("test"), model.cfg.n_items + 1, device)
    ranks, _ = ranks_from_embeddings(states, model.item_embeddings(), target, exclude=seen)
    ranks = ranks.cpu().numpy()
    return {
        "recall@10": float(recall_at_k(ranks, 10).mean()),
        "ndcg@10": float(ndcg_at_k(ranks, 10).mean()),
    }


def quality(
    dataset: Path,
    work: Path,
    device: str,
    epochs: int,
    patience: int,
    length_buckets: int,
    resume: bool = False,
) -> dict:
    out = work / "beauty-quality"
    options = dict(
        scheme="none",
        loss="ce",
        epochs=epochs,
        patience=patience,
        max_len=50,
        d_model=64,
        n_blocks=2,
        n_heads=2,
        dropout=0.5,
        lr=1e-3,
        batch_size=128,
        length_buckets=length_buckets,
        device=device,
        progress=False,
    )
    started = time.perf_counter()
    summary = train(dataset, None, out, resume=resume, **options)
    model, config = load_model(out, device=summary["device"])
    ds = load_dataset(dataset)
    seqs = UserSequences.from_interactions(ds.interactions, ds.n_items)
    test = evaluate_split(model, seqs, "test", torch.device(summary["device"]))
    test_excl = test_excluding_history(model, seqs, torch.device(summary["device"]))
    return {
        "dataset": dataset.name,
        "options": options,
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "best_val": summary["best_val"],
        "test_users": test["users"],
        "test_hr@10": round(test["recall@10"], 4),
        "test_ndcg@10": round(test["ndcg@10"], 4),
        "published_sasrec_cce": {"hr@10": 0.093, "ndcg@10": 0.057},
        "exclude_seen": False,
        "test_excluding_history": {
            "hr@10": round(test_excl["recall@10"], 4),
            "ndcg@10": round(test_excl["ndcg@10"], 4),
            "note": "the user's earlier items masked from the ranking (as, to our knowledge, the "
            "S3-Rec evaluation code behind the published Beauty figures does)",
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=("ratio", "throughput", "quality"))
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, help="scratch dir (default: a temp dir)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = default")
    parser.add_argument("--ratio-rounds", type=int, default=6)
    parser.add_argument("--ratio-steps", type=int, default=5, help="steps per block")
    parser.add_argument("--throughput-epochs", type=int, default=1)
    parser.add_argument(
        "--ml1m-scale",
        type=float,
        default=1.0,
        help="fraction of ML-1M's users and items for the synthetic dataset",
    )
    parser.add_argument("--skip-ml1m", action="store_true")
    parser.add_argument("--quality-epochs", type=int, default=200)
    parser.add_argument("--quality-patience", type=int, default=10)
    parser.add_argument(
        "--quality-resume",
        action="store_true",
        help="continue an earlier quality run in --work (e.g. with more --quality-epochs)",
    )
    parser.add_argument("--length-buckets", type=int, default=50, help="see train --length-buckets")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or ("ratio", "throughput", "quality"))
    work = args.work or Path(tempfile.mkdtemp(prefix="dwlrec-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "train", "machine": machine(), "skipped": []}

    names = ["ml-100k", "amazon-beauty"] + ([] if args.skip_ml1m else ["synthetic-ml1m"])
    datasets = {}
    for name in names:
        path = prepare(name, work, args.data_root, args.ml1m_scale)
        if path is None:
            result["skipped"].append(f"{name}: not found under {args.data_root}")
        else:
            datasets[name] = path

    if "ratio" in only:
        name = "ml-100k" if "ml-100k" in datasets else "synthetic-ml1m"
        if name in datasets:
            ratio = step_time_ratio(
                datasets[name],
                weights_for(datasets[name], work),
                args.device,
                args.ratio_rounds,
                args.ratio_steps,
            )
            result["step_time_ratio"] = ratio
    if "throughput" in only:
        result["throughput"] = []
        for name, path in datasets.items():
            max_len = 50 if name == "amazon-beauty" else 200
            result["throughput"].append(
                throughput(
                    path,
                    weights_for(path, work),
                    work,
                    args.device,
                    max_len,
                    args.throughput_epochs,
                    args.length_buckets,
                )
            )
    if "quality" in only and "amazon-beauty" in datasets:
        result["quality"] = quality(
            datasets["amazon-beauty"],
            work,
            args.device,
            args.quality_epochs,
            args.quality_patience,
            args.length_buckets,
            args.quality_resume,
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
