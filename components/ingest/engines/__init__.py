"""Ingest engines: the processing of SPEC §3 (rating threshold, exact-repeat dedup, iterative
k-core, dense re-index, split, stable sort) behind one contract, ``base.Engine``.

``--engine arrow`` (pyarrow/numpy, in memory; the default) and ``--engine duckdb`` (DuckDB SQL,
spills to disk under ``--duckdb-memory-limit``) give identical tables for the same input and
options (tests/test_ingest_engines.py). A new engine (e.g. spark) is a module with a
``reduce(table, options, min_user, scratch)`` function, named in ``ENGINE_MODULES`` and in
``options.ENGINES``. Modules are imported only when chosen, so duckdb is needed only for it.
"""

from __future__ import annotations

import importlib

from components.errors import ConfigError
from components.ingest.engines.base import Engine, Reduced
from components.ingest.options import ENGINES

ENGINE_MODULES: dict[str, str] = {
    "arrow": "components.ingest.engines.arrow",
    "duckdb": "components.ingest.engines.duckdb_engine",
    "spark": "components.ingest.engines.spark_engine",
}


def get_engine(name: str) -> Engine:
    """The ``reduce`` function of engine ``name`` (imported on first use)."""
    if name not in ENGINES or name not in ENGINE_MODULES:
        raise ConfigError(f"--engine {name!r}: expected one of {list(ENGINES)}")
    try:
        module = importlib.import_module(ENGINE_MODULES[name])
    except ImportError as exc:  # an optional dependency (duckdb, pyspark) missing
        raise ConfigError(
            f"--engine {name}: needs the Python package {exc.name!r} (pip install {exc.name})"
        ) from exc
    return module.reduce


__all__ = ["ENGINE_MODULES", "Engine", "Reduced", "get_engine"]
