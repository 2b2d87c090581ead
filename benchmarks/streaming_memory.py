"""Peak memory of streaming one epoch from the training view: it must not grow with the dataset.

Generates training views of 2M and 20M interactions directly (vectorised numpy + pyarrow, through
``components.core.training_view.write_user_rows``, not the full ingest) into a temporary
directory, then, in a FRESH Python process per size, builds ``StreamingWindows`` (world size 1,
one reader in the main process, batch 256, max_len 50) and iterates one epoch. Reports peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, imports included, and Linux's VmHWM, which does
not count what the process held before exec), the same before iterating (imports, torch, the
view's checks), seconds and counts. Generation runs in its own process, so the parent that forks
the measuring children stays small. Prints one JSON object:

    python benchmarks/streaming_memory.py [--sizes 2000000 20000000] [--shards 8] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 256
MAX_LEN = 50
MEAN_LENGTH = 50  # train items per user: lengths uniform in 1..99
N_ITEMS = 50_000


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def vm_hwm_mib() -> float | None:
    """This address space's peak RSS (Linux VmHWM). Unlike ru_maxrss it starts afresh at exec:
    ru_maxrss also counts the memory the process had before exec (the parent's, when forked)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else str(n)


def generate(out: Path, interactions: int, shards: int, seed: int = 0) -> dict:
    """A view of ``interactions`` train interactions (the last user's list cut to fit)."""
    import numpy as np
    import pyarrow as pa

    from components.core.training_view import VIEW_DIR, write_user_rows

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 2 * MEAN_LENGTH, interactions // MEAN_LENGTH * 2 + 10)
    ends = np.cumsum(lengths)
    n_users = int(np.searchsorted(ends, interactions)) + 1
    lengths = lengths[:n_users]
    lengths[-1] -= int(ends[n_users - 1]) - interactions
    offsets = np.zeros(n_users + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    items = pa.array(rng.integers(1, N_ITEMS + 1, interactions, dtype=np.int32))
    stamps = pa.array(np.arange(interactions, dtype=np.int64))
    entry = write_user_rows(
        np.arange(n_users, dtype=np.int32),
        pa.ListArray.from_arrays(pa.array(offsets), items),
        pa.ListArray.from_arrays(pa.array(offsets), stamps),
        out / VIEW_DIR,
        shards,
    )
    (out / "manifest.json").write_text(json.dumps({"training_view": entry}))
    return entry


def child(dataset: str) -> None:
    """One epoch in this (fresh) process; prints its JSON line."""
    import torch

    from components.train.streaming import StreamingConfig, StreamingWindows

    torch.set_num_threads(1)
    started = time.perf_counter()
    cfg = StreamingConfig(batch_size=BATCH, max_len=MAX_LEN, seed=0)
    windows = StreamingWindows.from_dataset(dataset, cfg)
    before = peak_rss_mib()
    hwm_before = vm_hwm_mib()
    loader = torch.utils.data.DataLoader(windows, batch_size=None, num_workers=0)
    batches = rows = tokens = 0
    for inputs, _targets in loader:
        batches += 1
        rows += inputs.shape[0]
        tokens += int((inputs > 0).sum())
    print(
        json.dumps(
            {
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "rss_before_epoch_mib": round(before, 1),
                "vm_hwm_mib": round(vm_hwm_mib() or 0.0, 1),
                "vm_hwm_before_epoch_mib": round(hwm_before or 0.0, 1),
                "seconds": round(time.perf_counter() - started, 2),
                "batches": batches,
                "expected_batches": len(windows),
                "windows": rows,
                "input_tokens": tokens,
            }
        )
    )


def _json_line(arguments: list[str]) -> dict:
    """Run this script with ``arguments`` in a fresh interpreter; its last stdout line as JSON."""
    run = subprocess.run(
        [sys.executable, __file__, *arguments], check=True, capture_output=True, text=True
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 20_000_000])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--keep", help="write the views here instead of a temporary directory")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure one view
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # internal: DIR:N
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    if args.generate:
        where, n = args.generate.rsplit(":", 1)
        print(json.dumps(generate(Path(where), int(n), args.shards)))
        return 0
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dwlrec-stream-") as tmp:
        root = Path(args.keep or tmp)
        for n in args.sizes:
            out = root / label(n)
            t0 = time.perf_counter()
            # generated in a process of its own too: this one stays small, so what a measuring
            # child inherits at fork (ru_maxrss keeps it across exec) is not the dataset
            entry = _json_line(["--generate", f"{out}:{n}", "--shards", str(args.shards)])
            generated = time.perf_counter() - t0
            result = _json_line(["--child", str(out)])
            view_bytes = sum(p.stat().st_size for p in (out / "train_view").iterdir())
            results[label(n)] = {
                "interactions": entry["train_interactions"],
                "users": entry["rows"],
                "view_mib": round(view_bytes / 2**20, 1),
                "generate_seconds": round(generated, 1),
                **result,
            }
    if len(args.sizes) >= 2:
        small, big = (label(n) for n in (min(args.sizes), max(args.sizes)))
        ratio = results[big]["peak_rss_mib"] / results[small]["peak_rss_mib"]
        results[f"rss_ratio_{big}_over_{small}"] = round(ratio, 3)
    results["setup"] = {
        "batch": BATCH,
        "max_len": MAX_LEN,
        "shards": args.shards,
        "world_size": 1,
        "readers": 1,
        "shuffle_buffer": "StreamingConfig default",
        "python": platform.python_version(),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
