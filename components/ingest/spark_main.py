"""The Spark job's entry point: ``spark-submit .../components/ingest/spark_main.py --source …
--input … --output …`` (what a ``SparkApplication`` from ``spark_app.py`` or a Dataproc batch
runs). It is the ingest CLI (every flag of ``python -m components.ingest``) with
``--engine spark``, in the driver: the session is the one spark-submit configured (master,
executors), created first so the engine uses it rather than a local one (only for the spark
engine: an explicit other ``--engine`` runs without Spark).

``--output gs://BUCKET/PREFIX`` (Dataproc Serverless, whose driver has no shared disk): the
output is written to a local staging directory and uploaded there (``gcs_output``), refusing a
prefix that holds anything but a previous ingest output, before any work.
"""

from __future__ import annotations

import sys
import tempfile
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


def _last(argv: list[str], flag: str) -> str | None:
    """The value of the last ``flag VALUE`` / ``flag=VALUE`` in ``argv`` (argparse's: last wins)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def with_output(argv: list[str], output: str) -> list[str]:
    """``argv`` with its ``--output`` replaced by ``output``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--output":
            skip = True
        elif not arg.startswith("--output="):
            kept.append(arg)
    return [*kept, "--output", output]


def _ingest(argv: list[str]) -> int:
    from components.ingest.cli import main as ingest_main

    if _last(argv, "--engine") != "spark":
        return ingest_main(argv)
    from components.ingest.engines.spark_engine import spark_session

    session, created = spark_session()  # spark-submit's master and conf; else local[2]
    try:
        return ingest_main(argv)
    finally:
        if created:
            session.stop()


def _to_gcs(argv: list[str], uri: str) -> int:
    """Ingest into a local staging directory and upload it to ``uri``."""
    from components.errors import DwlrecError
    from components.ingest import gcs_output

    try:
        if "--overwrite" in argv:
            raise DwlrecError(
                f"--overwrite with --output {uri}: a gs:// output replaces only a previous "
                "ingest output, never other objects; choose another prefix"
            )
        gcs_output.check_prefix(uri)  # before any work
        with tempfile.TemporaryDirectory(prefix="dwlrec-spark-ingest-") as tmp:
            code = _ingest(with_output(argv, str(Path(tmp) / "ingest")))
            if code == 0:
                gcs_output.upload_output(Path(tmp) / "ingest", uri)
            return code
    except DwlrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    _import_path()
    args = spark_arguments(sys.argv[1:] if argv is None else argv)
    output = _last(args, "--output")
    if output is not None and output.startswith("gs://"):
        return _to_gcs(args, output)
    return _ingest(args)


if __name__ == "__main__":
    sys.exit(main())
