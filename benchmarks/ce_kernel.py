"""The full-softmax cross-entropy kernel (issue 13): forward + backward time of one batch's loss
for each block shape and precision, side by side in one process, printed as JSON.

    python benchmarks/ce_kernel.py                         # Beauty's shape: 600 targets, 12,101 items
    python benchmarks/ce_kernel.py --targets 2000 --items 3416 --threads 2

Blocks are (max_logits, max_cols) of ``components.train.losses.full_ce``: ``1<<22`` logits with
no column cap is the kernel before the CPU default (``ce_blocks("cpu")``); the rounds alternate
the configurations so that load on a shared machine hits them alike. Reported: the median
CPU milliseconds of a forward + backward, and each one's speed-up over the first configuration.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=600, help="target positions in the batch")
    parser.add_argument("--items", type=int, default=12101, help="catalogue size")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="forward + backward per round")
    args = parser.parse_args()

    import torch

    from components.train.losses import ce_blocks, full_ce

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    states = torch.randn(args.targets, args.dim, requires_grad=True)
    items = (0.1 * torch.randn(args.items + 1, args.dim)).requires_grad_()
    targets = torch.randint(1, args.items + 1, (args.targets,))
    cpu_default = ce_blocks("cpu")
    configs = [
        ("1<<22 logits, all columns (before)", (1 << 22, 1 << 30), "fp32"),
        (f"cpu default {cpu_default}", cpu_default, "fp32"),
        ("1<<22 logits, all columns, bf16", (1 << 22, 1 << 30), "bf16"),
        (f"cpu default {cpu_default}, bf16", cpu_default, "bf16"),
    ]

    def run(blocks, precision) -> float:
        start = time.process_time()
        for _ in range(args.repeats):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = full_ce(states, targets, items, *blocks).mean()
            loss.backward()
        return (time.process_time() - start) / args.repeats * 1000

    times: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for _name, blocks, precision in configs:  # warm-up
        run(blocks, precision)
    for _ in range(args.rounds):
        for name, blocks, precision in configs:
            times[name].append(run(blocks, precision))
    base = statistics.median(times[configs[0][0]])
    print(
        json.dumps(
            {
                "shape": {"targets": args.targets, "items": args.items, "dim": args.dim},
                "threads": args.threads,
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "cpu_ms_median": {k: round(statistics.median(v), 2) for k, v in times.items()},
                "speedup_vs_before": {
                    k: round(base / statistics.median(v), 2) for k, v in times.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
