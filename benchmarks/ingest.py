"""Ingest throughput and memory (issue 2): prints JSON, one entry per case.

Cases, each run through the real entry point ``components.ingest.ingest`` (parse → rating/
de-dup → k-core → re-index → split → Parquet + manifest) in a fresh subprocess so that its peak
RSS is its own:
- ``ml-100k``: ``../shared/data/ml-100k`` (skipped when absent);
- ``ml-20m-format``: a generated ML-20M-format ``ratings.csv`` (default 20,000,263 rows, 138,493
  users, 26,744 movies; header ``userId,movieId,rating,timestamp``) + ``movies.csv``.
  Target on the 2-core development machine: <= 60 s and <= 4 GB peak RSS.
- ``synthetic-ml20m-size``: the synthetic source at ML-20M size (138,493 users, 26,744 items,
  ~20M interactions): generation + split + Parquet, target <= 60 s.

    python benchmarks/ingest.py                  # both cases
    python benchmarks/ingest.py --rows 2000000   # a smaller generated file

and, on the generated file, side by side in separate processes (issue 16): dwlrec with each
``--engines`` engine and the pandas / polars / DuckDB references of the same processing
(``benchmarks/ingest_references.py``), every output compared with dwlrec's, plus the ratios
(target: >= 3x faster than pandas at <= its peak memory). Needs pandas, polars and duckdb.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ML20M = {"rows": 20_000_263, "users": 138_493, "items": 26_744}
GENRES = (
    "Action Adventure Animation Children Comedy Crime Documentary Drama Fantasy Film-Noir "
    "Horror IMAX Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def generate_ml20m_format(directory: Path, rows: int, seed: int = 0) -> dict:
    """Write ratings.csv + movies.csv in the ML-20M format with numpy/pyarrow (no Python loops).

    Users have ML-20M-like heavy-tailed activity (>= 20 ratings each), movie popularity is
    Zipf-like (so the k-core filter removes some rare movies), rows are sorted by user like the
    original file, timestamps and half-star ratings are random.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    n_users = max(1, round(ML20M["users"] * rows / ML20M["rows"]))
    n_items = max(1, round(ML20M["items"] * min(1.0, (rows / ML20M["rows"]) ** 0.5)))
    activity = rng.lognormal(mean=0.0, sigma=1.1, size=n_users)
    per_user = 20 + np.floor(activity / activity.sum() * (rows - 20 * n_users)).astype(np.int64)
    per_user[: rows - int(per_user.sum())] += 1  # exact total
    user_id = np.repeat(np.arange(1, n_users + 1, dtype=np.int64), per_user)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 1.4  # a long tail of rare movies
    item_id = rng.choice(n_items, size=rows, p=popularity / popularity.sum()).astype(np.int64) + 1
    rating = rng.integers(1, 11, size=rows) / 2.0
    timestamp = rng.integers(789_652_009, 1_427_784_002, size=rows, dtype=np.int64)

    directory.mkdir(parents=True, exist_ok=True)
    ratings = pa.table({"userId": user_id, "movieId": item_id, "rating": rating,
                        "timestamp": timestamp})  # fmt: skip
    path = directory / "ratings.csv"
    with open(path, "wb") as handle:
        handle.write(b"userId,movieId,rating,timestamp\n")
        pacsv.write_csv(ratings, handle, pacsv.WriteOptions(include_header=False,
                                                            quoting_style="none"))  # fmt: skip
    genre_count = rng.integers(0, 4, size=n_items)
    genres = [
        "|".join(GENRES[g] for g in rng.choice(len(GENRES), size=k, replace=False))
        or "(no genres listed)"
        for k in genre_count
    ]
    movies = pa.table({"movieId": np.arange(1, n_items + 1),
                       "title": [f'"Movie {i}, The (1999)"' for i in range(1, n_items + 1)],
                       "genres": genres})  # fmt: skip
    with open(directory / "movies.csv", "w") as handle:
        handle.write("movieId,title,genres\n")
        for movie, title, genre in zip(*(movies.column(c).to_pylist() for c in movies.column_names),
                                       strict=True):  # fmt: skip
            handle.write(f"{movie},{title},{genre}\n")
    return {"rows": rows, "users": n_users, "movies": n_items, "bytes": path.stat().st_size}


def run_case(name: str, input_path: str, keep: str | None = None, engine: str = "") -> dict:
    """One ingest in this process; returns timings, throughput and this process's peak RSS.

    ``input_path`` "synthetic:ROWS" generates (source ``synthetic``) an ML-20M-shaped dataset
    of about ROWS interactions instead of reading a file."""
    sys.path.insert(0, str(ROOT))
    from components.ingest import ingest

    read_seconds = {}

    class ReadTime(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("read "):
                read_seconds["value"] = record.args[-1]

    logging.getLogger("dwlrec.ingest").addHandler(ReadTime())
    logging.getLogger("dwlrec.ingest").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="dwlrec-bench-") as out:
        if keep:  # the output stays, to compare it with the reference implementations'
            out = keep
        started = time.perf_counter()
        if input_path.startswith("synthetic:"):
            rows = int(input_path.split(":", 1)[1])
            scale = rows / ML20M["rows"]
            manifest = ingest(
                "synthetic",
                Path(out) / "syn",
                num_users=max(100, round(ML20M["users"] * scale)),
                num_items=max(50, round(ML20M["items"] * min(1.0, scale**0.5))),
                mean_length=ML20M["rows"] / ML20M["users"],
                seed=0,
            )
        else:
            options = {"engine": engine} if engine not in ("", "arrow") else {}
            manifest = ingest("movielens", Path(out) / "ml", input_path, **options)
        seconds = time.perf_counter() - started
    counts = manifest["counts"]
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": name,
        "rows_read": counts["rows_read"],
        "seconds": round(seconds, 2),
        "read_seconds": round(read_seconds.get("value", float("nan")), 2),
        "rows_per_s": round(counts["rows_read"] / seconds),
        "peak_rss_mb": round(peak_kb / 1024),
        "users": counts["users"],
        "items": counts["items"],
        "interactions": counts["interactions"],
        "removed_by_kcore": counts.get("removed_by_kcore"),
    }


def _in_subprocess(name: str, input_path: str, *extra: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--case", name, "--input", input_path, *extra],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if result.returncode != 0:
        return {"case": name, "error": result.stderr.strip().splitlines()[-1:]}
    return json.loads(result.stdout)


def side_by_side(directory: Path, work: Path, engines: list[str]) -> dict:
    """dwlrec (each engine) and the pandas / polars / DuckDB references on the same ratings.csv,
    each in its own process; every output compared with dwlrec's; the ratios of issue 16."""
    sys.path.insert(0, str(Path(__file__).parent))
    from ingest_references import RUNNERS, check

    runs: dict = {}
    ours = work / "dwlrec-arrow" / "ml" / "interactions.parquet"
    for engine in engines:
        keep = work / f"dwlrec-{engine}"
        runs[f"dwlrec-{engine}"] = _in_subprocess(
            f"dwlrec-{engine}", str(directory), "--keep", str(keep), "--engine", engine
        )
        if engine != "arrow" and "seconds" in runs[f"dwlrec-{engine}"]:
            runs[f"dwlrec-{engine}"]["same_output"] = check(
                str(keep / "ml" / "interactions.parquet"), str(ours)
            )
    for name in RUNNERS:
        out = work / f"{name}.parquet"
        script = Path(__file__).with_name("ingest_references.py")
        result = subprocess.run(
            [sys.executable, str(script), name, str(directory / "ratings.csv"), str(out)],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        if result.returncode != 0:
            runs[name] = {"error": result.stderr.strip().splitlines()[-1:]}
            continue
        runs[name] = {**json.loads(result.stdout), "same_output": check(str(out), str(ours))}
    best = min(
        (runs[f"dwlrec-{e}"] for e in engines if "seconds" in runs[f"dwlrec-{e}"]),
        key=lambda r: r["seconds"],
        default=None,
    )
    if best and "seconds" in runs.get("pandas", {}):
        pandas = runs["pandas"]
        runs["ratios"] = {
            "pandas_seconds_over_dwlrec": round(pandas["seconds"] / best["seconds"], 2),
            "dwlrec_rss_over_pandas": round(best["peak_rss_mb"] / pandas["peak_rss_mb"], 2),
            "target": "pandas_seconds_over_dwlrec >= 3 and dwlrec_rss_over_pandas <= 1",
        }
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ML20M["rows"], help="generated file's rows")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "dwlrec-bench"),
                        help="where the generated files are written (and reused)")  # fmt: skip
    parser.add_argument("--skip-generated", action="store_true", help="only the ml-100k case")
    parser.add_argument("--skip-synthetic", action="store_true",
                        help="skip the ML-20M-sized synthetic-source case")  # fmt: skip
    parser.add_argument("--skip-references", action="store_true",
                        help="skip the side-by-side pandas / polars / DuckDB references")  # fmt: skip
    parser.add_argument("--engines", nargs="+", default=["arrow"],
                        help="dwlrec ingest engines run side by side with the references")  # fmt: skip
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--keep", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args.input, args.keep, args.engine)))
        return 0

    report = {"benchmark": "ingest", "cpus": os.cpu_count(), "cases": []}
    if (SHARED / "ml-100k" / "u.data").exists():
        report["cases"].append(_in_subprocess("ml-100k", str(SHARED / "ml-100k")))
    else:
        report["cases"].append({"case": "ml-100k", "skipped": f"{SHARED / 'ml-100k'} not found"})
    if not args.skip_generated:
        directory = Path(args.work_dir) / f"ml-20m-format-{args.rows}-seed0-v2"
        started = time.perf_counter()
        if not (directory / "ratings.csv").exists():
            generated = generate_ml20m_format(directory, args.rows)
        else:
            generated = {"rows": args.rows, "reused": str(directory)}
        generated["generate_seconds"] = round(time.perf_counter() - started, 1)
        case = _in_subprocess("ml-20m-format", str(directory))
        case["generated"] = generated
        case["target"] = {"seconds": 60, "peak_rss_mb": 4096}
        if "seconds" in case:
            case["meets_target"] = case["seconds"] <= 60 and case["peak_rss_mb"] <= 4096
        report["cases"].append(case)
        if not args.skip_references:
            with tempfile.TemporaryDirectory(prefix="dwlrec-bench-ref-", dir=args.work_dir) as tmp:
                report["side_by_side"] = side_by_side(directory, Path(tmp), args.engines)
    if not args.skip_synthetic:
        # issue 2: the synthetic source generates an ML-20M-sized dataset in under a minute
        case = _in_subprocess("synthetic-ml20m-size", f"synthetic:{args.rows}")
        case["target"] = {"seconds": 60}
        if "seconds" in case:
            case["meets_target"] = case["seconds"] <= 60
        report["cases"].append(case)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
