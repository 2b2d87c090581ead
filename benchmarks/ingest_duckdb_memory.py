"""Out-of-core check of the ingest engines (issue 16); prints one JSON object. Linux only.

Default: the end-to-end ingest (``python -m components.ingest --source movielens``) of a
generated ML-20M-format ``ratings.csv`` (``benchmarks/ingest.py``'s generator), by
``--engine arrow`` and by ``--engine duckdb`` under ``--memory-limit``, each in its own process:
wall seconds, peak RSS (the child's ``ru_maxrss``), whether DuckDB read the file itself (the
out-of-core path) and how much it spilled, and whether the two outputs are the same bytes
(``manifest.json``'s sha256 of both Parquet files and of every training-view shard).

    python benchmarks/ingest_duckdb_memory.py --rows 20000000 --memory-limit 1GB
    python benchmarks/ingest_duckdb_memory.py --rows 2000000 --memory-limit 256MB

``--raw-table``: the older check of ``components.ingest.core.process`` alone on a generated raw
Arrow table (string ids, file order shuffled, ~1% exact repeats, timestamp ties) written once as
Parquet; each engine's process reads it (``baseline_rss_mb``), resets the kernel's peak counter
and runs the processing (``peak_rss_mb``: the raw table included).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def generate(rows: int, seed: int = 0) -> pa.Table:
    """Raw interactions (RAW_INTERACTIONS_SCHEMA): ~20 per user, Zipf-like items, ties, repeats."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(rows // 20, 1), max(rows // 50, 1)
    user = rng.integers(0, n_users, rows)
    item = np.minimum(rng.zipf(1.3, rows) - 1, n_items - 1)
    item = (item * 7919 + rng.integers(0, 3, rows)) % n_items  # spread the head over the ids
    timestamp = 1_500_000_000 + rng.integers(0, 200_000, rows) * 60  # minute ticks: ties
    repeat = rng.random(rows) < 0.01  # exact repeats of the previous row
    idx = np.arange(rows)
    idx[1:][repeat[1:]] = idx[:-1][repeat[1:]]
    user, item, timestamp = user[idx], item[idx], timestamp[idx]
    rating = rng.integers(1, 6, rows).astype(np.float64)
    return pa.table(
        {
            "user_id": pc.binary_join_element_wise("u", pa.array(user).cast(pa.string()), ""),
            "item_id": pa.array(item).cast(pa.string()),  # integers: numeric order
            "timestamp": pa.array(timestamp, pa.int64()),
            "rating": pa.array(rating, pa.float64()),
        }
    )


def _status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def child(raw_path: str, out_dir: str, engine: str, memory_limit: str, threads: int) -> None:
    """One engine, in this process: read, process, write; print JSON figures."""
    from components.ingest.core import IngestOptions, process
    from components.ingest.raw import RawData

    table = pq.read_table(raw_path)
    baseline = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: the peak from here on
    raw = RawData(interactions=table, items=None, rows_read=table.num_rows)
    options = IngestOptions(
        engine=engine, duckdb_memory_limit=memory_limit, duckdb_threads=threads, train_shards=0
    )
    started = time.perf_counter()
    out = process(raw, options, scratch=Path(out_dir) / "output")
    seconds = time.perf_counter() - started
    peak = _status_mb("VmHWM")
    pq.write_table(out.interactions, Path(out_dir) / "interactions.parquet")
    pq.write_table(out.items, Path(out_dir) / "items.parquet")
    (Path(out_dir) / "counts.json").write_text(json.dumps(out.counts))
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak),
                "baseline_rss_mb": round(baseline),
            }
        )
    )


def run_engine(raw_path: Path, out_dir: Path, engine: str, memory_limit: str, threads: int) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--child", str(raw_path), str(out_dir), engine]
    command += ["--memory-limit", memory_limit, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{engine} engine failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def end_to_end(rows: int, memory_limit: str, threads: int, seed: int) -> dict:
    """Both engines through the CLI on a generated ML-20M-format file; see the module doc."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ingest import generate_ml20m_format

    with tempfile.TemporaryDirectory(prefix="dwlrec-engines-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        generated = generate_ml20m_format(root / "ml", rows, seed=seed)
        generate_seconds = time.perf_counter() - started
        figures, manifests = {}, {}
        for engine in ("arrow", "duckdb"):
            command = [sys.executable, "-m", "components.ingest", "--source", "movielens"]
            command += ["--input", str(root / "ml"), "--output", str(root / engine)]
            command += ["--engine", engine, "--duckdb-memory-limit", memory_limit]
            command += ["--duckdb-threads", str(threads)]
            figures[engine], log = _run_measured(command)
            manifests[engine] = json.loads((root / engine / "manifest.json").read_text())
            if engine == "duckdb":
                spilled = re.findall(r"at most ([0-9.]+) MB of tables spilled", log)
                figures[engine]["out_of_core"] = "(DuckDB)" in log and "in-memory reader" not in log
                figures[engine]["spilled_mb"] = float(spilled[-1]) if spilled else None
        arrow, duck = manifests["arrow"], manifests["duckdb"]
        return {
            "rows": rows,
            "ratings_csv_mb": round(generated["bytes"] / 2**20),
            "generate_seconds": round(generate_seconds, 1),
            "duckdb_memory_limit": memory_limit,
            "duckdb_threads": threads,
            "interactions_out": arrow["counts"]["interactions"],
            "arrow": figures["arrow"],
            "duckdb": figures["duckdb"],
            "same_bytes": arrow["files"] == duck["files"]
            and arrow.get("training_view") == duck.get("training_view"),
            "same_counts": arrow["counts"] == duck["counts"],
        }


def _run_measured(command: list[str]) -> tuple[dict, str]:
    """Run ``command`` from the repository; its wall seconds and peak RSS, and its stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        err.seek(0)
        log = err.read().decode("utf-8", "replace")
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(command)} failed:\n{log[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--memory-limit", default="1GB", help="the duckdb engine's limit")
    parser.add_argument("--threads", type=int, default=0, help="duckdb threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--raw-table", action="store_true", help="the older check of the processing alone"
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("RAW", "OUT", "ENGINE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        raw_path, out_dir, engine = args.child
        child(raw_path, out_dir, engine, args.memory_limit, args.threads)
        return 0
    if not args.raw_table:
        print(json.dumps(end_to_end(args.rows, args.memory_limit, args.threads, args.seed)))
        return 0
    with tempfile.TemporaryDirectory(prefix="dwlrec-engines-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        raw = generate(args.rows, args.seed)
        pq.write_table(raw, root / "raw.parquet")
        raw_mb = raw.nbytes / 2**20
        del raw
        generated = time.perf_counter() - started
        figures = {
            engine: run_engine(
                root / "raw.parquet", root / engine, engine, args.memory_limit, args.threads
            )
            for engine in ("arrow", "duckdb")
        }
        same = {
            name: pq.read_table(root / "arrow" / name).equals(pq.read_table(root / "duckdb" / name))
            for name in ("interactions.parquet", "items.parquet")
        }
        counts = [json.loads((root / e / "counts.json").read_text()) for e in ("arrow", "duckdb")]
        rows_out = counts[0]["interactions"]
    print(
        json.dumps(
            {
                "rows": args.rows,
                "raw_table_mb": round(raw_mb),
                "generate_seconds": round(generated, 1),
                "duckdb_memory_limit": args.memory_limit,
                "interactions_out": rows_out,
                "arrow": figures["arrow"],
                "duckdb": figures["duckdb"],
                "identical_tables": all(same.values()),
                "identical_counts": counts[0] == counts[1],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
