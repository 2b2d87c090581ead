"""Full-ranking throughput of the evaluate step: user-item scores per second, and peak memory.

Random user states and item embeddings (d = 64 by default) are ranked with the same code path the
evaluate step uses (`components.core.ranking.rank_all`: blocked matmul, pessimistic ranks,
top-10). Target (issue 5): >= 1e8 scores/s on 2 CPU cores. Prints one JSON object.

    python benchmarks/evaluate.py [--users 6040] [--items 3416] [--dim 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.core.ranking import DEFAULT_SCORES_PER_BLOCK, rank_all  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure(
    device: str, users: int, items: int, dim: int, block: int, repeats: int, topk: int
) -> dict:
    import torch

    generator = torch.Generator().manual_seed(0)
    user_states = torch.randn(users, dim, generator=generator).to(device)
    item_embeddings = torch.randn(items + 1, dim, generator=generator).to(device)
    item_embeddings_t = item_embeddings.T.contiguous()
    targets = torch.randint(1, items + 1, (users,), generator=generator).to(device)

    def run() -> None:
        rank_all(
            lambda rows: user_states[rows] @ item_embeddings_t,
            targets,
            items + 1,
            topk=topk,
            max_scores_per_block=block,
        )
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mib()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    best = min(seconds)
    result = {
        "device": device,
        "users": users,
        "items": items,
        "dim": dim,
        "scores_per_block": block,
        "topk": topk,
        "seconds_best": round(best, 4),
        "seconds_all": [round(s, 4) for s in seconds],
        "scores_per_second": users * (items + 1) / best,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_rss_growth_mib": round(peak_rss_mib() - rss_before, 1),
    }
    if device == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["gpu"] = torch.cuda.get_device_name()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--users", type=int, default=6040, help="users ranked (ML-1M size)")
    parser.add_argument("--items", type=int, default=3416, help="catalogue size (ML-1M size)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--topk",
        type=int,
        nargs="+",
        default=[10, 0],
        help="top-k kept per user (10 = what evaluate does, for coverage/exposure; 0 = ranks only)",
    )
    parser.add_argument(
        "--block", type=int, nargs="+", default=[DEFAULT_SCORES_PER_BLOCK], help="scores per block"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [
        measure(device, args.users, args.items, args.dim, block, args.repeats, topk)
        for device in devices
        for block in args.block
        for topk in args.topk
    ]
    # the target applies to what the evaluate step runs: ranks AND the top-10
    cpu = [r for r in results if r["device"] == "cpu" and r["topk"] == 10] or results
    best_cpu = max(r["scores_per_second"] for r in cpu)
    print(
        json.dumps(
            {
                "benchmark": "evaluate.full_ranking",
                "torch": torch.__version__,
                "threads": args.threads,
                "machine": platform.machine(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
                "results": results,
                "cpu_scores_per_second": best_cpu,
                "cpu_target_scores_per_second": 1e8,
                "cpu_meets_target": best_cpu >= 1e8,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
