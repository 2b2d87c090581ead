"""Screenshot a report step output's report.html in headless Chromium (a check by eye, not a test).

    python benchmarks/screenshot_report.py REPORT_DIR OUT.png [--width 1280] [--height 6000]
        [--chromium /usr/bin/chromium]

Needs a Chromium binary: Debian's ``apt-get install chromium`` gives /usr/bin/chromium (no
download of a browser build of its own, no Python package). The page is self-contained (inline
SVG, no external assets), so it renders from a file:// URL with the network off. Chromium is
started with the flags a closed network needs (no background networking, sync or component
updates) and a fresh profile dir. Prints one JSON object (the PNG's path and size).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # as root, in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def find_chromium(given: str | None) -> str:
    """The Chromium binary to use: ``given``, else the first of the usual names on PATH."""
    for name in (given,) if given else ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) if name else None
        if path:
            return path
    sys.exit("no Chromium found: apt-get install chromium (or pass --chromium PATH)")


def screenshot(report_dir: Path, out: Path, width: int, height: int, chromium: str) -> dict:
    """Render REPORT_DIR/report.html at ``width`` × ``height`` CSS px into ``out`` (PNG)."""
    page = (report_dir / "report.html").resolve()
    if not page.exists():
        sys.exit(f"{page}: no report.html (is {report_dir} a report step output?)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dwlrec-chromium-") as profile:
        command = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not out.exists():
        sys.exit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"png": str(out), "bytes": out.stat().st_size, "width": width, "height": height}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_dir", type=Path, help="a report step output dir")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="viewport width (CSS px)")
    parser.add_argument("--height", type=int, default=6000, help="viewport height (CSS px)")
    parser.add_argument("--chromium", default=None, help="the Chromium binary")
    args = parser.parse_args()
    chromium = find_chromium(args.chromium)
    print(json.dumps(screenshot(args.report_dir, args.out, args.width, args.height, chromium)))


if __name__ == "__main__":
    main()
