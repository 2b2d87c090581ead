"""``dwlrec``: one console script for every step and for the pipeline.

dwlrec ingest|stats|train|evaluate|report …   → python -m components.<step> …
dwlrec compile|run|submit …                    → the Kubeflow pipeline (pipelines.cli)
"""

from __future__ import annotations

import importlib
import sys

STEPS = ("ingest", "stats", "train", "evaluate", "report")
PIPELINE_COMMANDS = ("compile", "run", "submit")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in STEPS:
        return importlib.import_module(f"components.{command}.cli").main(rest)
    if command in PIPELINE_COMMANDS:
        return importlib.import_module("pipelines.cli").main(argv)
    print(
        f"dwlrec: unknown command {command!r}; expected one of "
        f"{', '.join(STEPS + PIPELINE_COMMANDS)}",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
