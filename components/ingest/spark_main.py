"""The Spark job's entry point: ``spark-submit .../components/ingest/spark_main.py --source …
--input … --output …`` (what a ``SparkApplication`` from ``spark_app.py`` or a Dataproc batch
runs). It is the ingest CLI (every flag of ``python -m components.ingest``) with
``--engine spark``, in the driver: the session is the one spark-submit configured (master,
executors), created first so the engine uses it rather than a local one.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # holds components/ (an installed copy: site-packages)


def _import_path() -> None:
    """Run as a file, Python puts this directory first on sys.path, where ``core.py`` and
    ``options.py`` would shadow any top-level modules of those names: put the root there."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def spark_arguments(argv: list[str]) -> list[str]:
    """The ingest CLI's arguments with ``--engine spark`` (an explicit other engine is kept:
    the job then still runs, as a plain ingest in the driver)."""
    given = any(a == "--engine" or a.startswith("--engine=") for a in argv)
    return list(argv) if given else [*argv, "--engine", "spark"]


def main(argv: list[str] | None = None) -> int:
    _import_path()
    from components.ingest.cli import main as ingest_main
    from components.ingest.engines.spark_engine import spark_session

    session, created = spark_session()  # spark-submit's master and conf; else local[2]
    try:
        return ingest_main(spark_arguments(sys.argv[1:] if argv is None else argv))
    finally:
        if created:
            session.stop()


if __name__ == "__main__":
    sys.exit(main())
