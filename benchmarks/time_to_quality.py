"""Time to quality (issue 13): train `none` and print, as JSON, the wall and CPU seconds until
validation NDCG@10 — and, for the record, test NDCG@10 — first reach given levels.

    python benchmarks/time_to_quality.py --dataset out/ml100k --levels 0.0395 --epochs 20
    python benchmarks/time_to_quality.py --dataset out/beauty --levels 0.0236 0.05 \\
        --option max_len=50 --option length_buckets=16
    python benchmarks/time_to_quality.py --from-log out/model/train_log.jsonl --levels 0.05

Trains with the default recipe (TrainConfig / ModelConfig defaults) unless ``--option NAME=VALUE``
(JSON values) says otherwise, one thread (``--threads``), under the masked protocol
(``exclude_seen``, as RecBole's full-ranking evaluation) with ``record_test`` on. Seconds are
cumulative over epochs and count what a user pays: the training loop and each validation pass
(``epoch_wall_s`` / ``epoch_cpu_s`` in train_log.jsonl); the test pass is excluded. The levels are
absolute NDCG@10 values, e.g. what RecBole reaches on the same split (README). The dataset is an
ingest output dir (``python -m components.ingest``); export it to RecBole atomic files to compare
side by side on the same split.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cumulative(log: list[dict]) -> list[dict]:
    """Each epoch's record with the wall and CPU seconds spent until its end."""
    wall = cpu = 0.0
    out = []
    for record in log:
        wall += record.get("epoch_wall_s", record["seconds"])
        cpu += record.get("epoch_cpu_s", 0.0)
        out.append({**record, "until_wall_s": round(wall, 1), "until_cpu_s": round(cpu, 1)})
    return out


def first_reaching(epochs: list[dict], key: str, level: float) -> dict | None:
    """The first epoch (of ``cumulative``) whose ``key`` is >= ``level``, with its seconds."""
    for r in epochs:
        if r.get(key, -1.0) >= level:
            return {"epoch": r["epoch"], "wall_s": r["until_wall_s"], "cpu_s": r["until_cpu_s"]}
    return None


def summarise(log: list[dict], levels: list[float]) -> dict:
    """Per level: when validation and test NDCG@10 first reach it; the per-epoch trajectory."""
    epochs = cumulative(log)
    return {
        "levels": {
            str(level): {
                "val": first_reaching(epochs, "val_ndcg@10", level),
                "test": first_reaching(epochs, "test_ndcg@10", level),
            }
            for level in levels
        },
        "best_val_ndcg@10": max((r.get("val_ndcg@10", 0.0) for r in log), default=None),
        "best_test_ndcg@10": max((r.get("test_ndcg@10", 0.0) for r in log), default=None),
        "epochs": [
            {
                "epoch": r["epoch"],
                "wall_s": r["until_wall_s"],
                "cpu_s": r["until_cpu_s"],
                **{k: r.get(k) for k in ("val_ndcg@10", "test_ndcg@10", "test_recall@10")},
            }
            for r in epochs
        ],
    }


def parse_option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", help="ingest output dir")
    parser.add_argument("--from-log", help="summarise an existing train_log.jsonl instead")
    parser.add_argument("--levels", type=float, nargs="+", required=True, help="NDCG@10 levels")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], help="train option NAME=VALUE")
    args = parser.parse_args(argv)
    if args.from_log:
        log = [json.loads(line) for line in Path(args.from_log).read_text().splitlines()]
        print(json.dumps({"log": args.from_log, **summarise(log, args.levels)}, indent=1))
        return 0
    if not args.dataset:
        parser.error("--dataset or --from-log is required")

    import torch

    from components.train.trainer import train

    torch.set_num_threads(args.threads)
    options = {
        "epochs": args.epochs,
        "patience": 0,
        "seed": args.seed,
        "threads": args.threads,
        "progress": False,
        "exclude_seen": True,
        "record_test": True,
        **dict(parse_option(o) for o in args.option),
    }
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        train(args.dataset, None, Path(tmp) / "model", **options)
        total = time.perf_counter() - started
        log = [
            json.loads(line)
            for line in (Path(tmp) / "model/train_log.jsonl").read_text().splitlines()
        ]
    result = {
        "dataset": args.dataset,
        "options": options,
        "machine": {"platform": platform.platform(), "threads": args.threads},
        "total_wall_s": round(total, 1),
        **summarise(log, args.levels),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
