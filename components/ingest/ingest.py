"""The ingest entry point: read a source, process it (core.py), write the contract atomically."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from components.core.training_view import VIEW_DIR, write_training_view
from components.download import localize
from components.errors import ConfigError
from components.ingest import core, synthetic
from components.ingest.domains import OTHER_DOMAIN
from components.ingest.options import IngestOptions
from components.ingest.raw import RawData
from components.io import (
    atomic_dir,
    check_output,
    library_versions,
    sha256_file,
    write_json_atomic,
    write_parquet_atomic,
)
from components.schema import INTERACTIONS_FILE, ITEMS_FILE, MANIFEST_FILE

log = logging.getLogger("dwlrec.ingest")

SOURCES = ("movielens", "lastfm", "amazon", "yelp", "sequences", "table", "synthetic")
SYNTHETIC_KEYS = set(synthetic.SyntheticConfig.__dataclass_fields__)
CORE_KEYS = set(IngestOptions.__dataclass_fields__)


def source_option_names(source: str) -> set[str]:
    """The options ``source`` itself understands (besides the processing options)."""
    if source == "synthetic":
        return set(SYNTHETIC_KEYS)
    from components.ingest.sources import SOURCE_OPTIONS

    return set(SOURCE_OPTIONS[source])


def check_source_options(source: str, source_options: dict) -> None:
    """Refuse options the source would otherwise ignore silently."""
    unknown = sorted(set(source_options) - source_option_names(source))
    if unknown:
        raise ConfigError(
            f"{source} source: unknown option(s) {unknown}; it understands "
            f"{sorted(source_option_names(source))} and the processing options {sorted(CORE_KEYS)}"
        )


def _localize(source: str, input_uri: str | None, source_options: dict, cache_dir, sha256):
    """The local input path and the source options with local paths (downloads done)."""
    if not input_uri:
        raise ConfigError(f"--input is required for --source {source}")
    check_source_options(source, source_options)
    if source_options.get("domain_map") is not None:  # a bad map fails before any download
        from components.ingest.sources.yelp import load_domain_map

        source_options["domain_map"] = load_domain_map(source_options["domain_map"])
    path = localize(input_uri, cache_dir=cache_dir, sha256=sha256)
    if source_options.get("items"):
        source_options = {**source_options, "items": localize(source_options["items"], cache_dir)}
    return path, source_options


def ingest(
    source: str,
    output_dir: str | Path,
    input_uri: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    overwrite: bool = False,
    **options,
) -> dict:
    """Ingest ``source`` into ``output_dir`` (replaced atomically); return the manifest.

    ``options`` holds the processing options (``options.IngestOptions`` fields, e.g.
    ``min_user_interactions``, ``rating_threshold``, ``split``) and the source's own options
    (e.g. ``items``, ``domain_depth``, ``top_tags``; synthetic: ``users``, ``items``, ``seed``…).
    ``output_dir`` may replace only a previous ingest output unless ``overwrite``, and never
    an input (``components.io.check_output``); that is checked before anything is read.
    With ``engine="duckdb"`` the formats of ``native.SOURCES`` are read, processed and written
    out of core (``_ingest_out_of_core``).
    """
    if source not in SOURCES:
        raise ConfigError(f"--source {source!r}: expected one of {list(SOURCES)}")
    processing = IngestOptions(**{k: v for k, v in options.items() if k in CORE_KEYS})
    source_options = {k: v for k, v in options.items() if k not in CORE_KEYS and v is not None}
    output: dict[str, Any] = {
        "step": "ingest",
        "inputs": (input_uri, source_options.get("items"), cache_dir),
        "overwrite": overwrite,
    }
    check_output(output_dir, **output)
    output_dir = Path(output_dir)

    started = time.perf_counter()
    if source == "synthetic":
        check_source_options(source, source_options)
        raw = synthetic.generate(synthetic.SyntheticConfig(**source_options))
    else:
        path, source_options = _localize(source, input_uri, source_options, cache_dir, sha256)
        if processing.engine == "duckdb":
            from components.ingest import native

            if source in native.SOURCES:
                manifest = _ingest_out_of_core(
                    source, path, input_uri, source_options, processing, output_dir, output
                )
                if manifest is not None:
                    log.info("wrote %s in %.1fs", output_dir, time.perf_counter() - started)
                    return manifest
        from components.ingest.sources import READERS

        raw = READERS[source](path, source_options)
    log.info(
        "read %d rows (%d malformed) in %.1fs",
        raw.rows_read,
        raw.bad_rows,
        time.perf_counter() - started,
    )
    processed = core.process(raw, processing, scratch=output_dir)
    raw = replace(raw, interactions=raw.interactions.slice(0, 0))  # its memory, before writing

    with atomic_dir(output_dir, **output) as staging, ThreadPoolExecutor(max_workers=1) as pool:
        # the streaming view is written while the contract files are (both release the GIL)
        view = (
            pool.submit(
                write_training_view,
                processed.interactions,
                staging / VIEW_DIR,
                processing.train_shards,
            )
            if processing.train_shards
            else None
        )
        write_parquet_atomic(processed.items, staging / ITEMS_FILE)
        write_parquet_atomic(processed.interactions, staging / INTERACTIONS_FILE)
        manifest = _manifest(
            staging,
            source,
            input_uri,
            raw,
            source_options,
            processed.counts,
            processed.options,
            processed.notes,
            processed.items,
            view.result() if view is not None else None,
        )
    log.info("wrote %s in %.1fs", output_dir, time.perf_counter() - started)
    return manifest


def _ingest_out_of_core(
    source: str,
    path: Path,
    input_uri: str | None,
    source_options: dict,
    processing: IngestOptions,
    output_dir: Path,
    output: dict,
) -> dict | None:
    """``--engine duckdb`` end to end in DuckDB: the raw file scanned by DuckDB itself
    (``native.scan``), processed in SQL (``duckdb_engine.reduce_sql``), the sorted result
    streamed into ``interactions.parquet`` and the training view (``stream_output``), the
    same bytes as the in-memory path. None: ``native.scan`` fell back (logged); the caller
    reads the input with the in-memory reader."""
    from components.ingest import native
    from components.ingest.engines import duckdb_engine, get_engine
    from components.ingest.stream_output import SCAN_BATCH_ROWS, write_stream

    processing.validate()
    get_engine(processing.engine)  # duckdb not installed: the ConfigError saying so
    started = time.perf_counter()
    with duckdb_engine.connect(processing, output_dir) as con:
        scan = native.scan(con, source, path, source_options)
        if scan is None:
            return None
        raw = scan.raw
        log.info(
            "read %d rows (%d malformed) in %.1fs (DuckDB)",
            raw.rows_read,
            raw.bad_rows,
            time.perf_counter() - started,
        )
        prepared = core.prepare(raw, scan.n_parsed, scan.has_ratings, processing)
        sql = duckdb_engine.reduce_sql(
            con,
            processing,
            prepared.min_user,
            scan.n_parsed,
            release=lambda: native.drop_scan(con),
        )
        with atomic_dir(output_dir, **output) as staging:
            shards = processing.train_shards
            spool = duckdb_engine.scratch_path(con)  # (asked before the result is open)
            written = write_stream(
                sql.result.to_arrow_reader(batch_size=SCAN_BATCH_ROWS),
                staging / INTERACTIONS_FILE,
                staging / VIEW_DIR if shards else None,
                shards,
                len(sql.item_ids),
                spool=spool,
            )
            if written.rows != sql.n_interactions:
                raise RuntimeError(
                    f"duckdb engine: wrote {written.rows} interactions, expected "
                    f"{sql.n_interactions}"
                )
            duckdb_engine.log_spilled(con, sql, processing)
            items, counts = core.finish(
                prepared,
                raw,
                processing,
                engine_counts=sql.counts,
                item_ids=sql.item_ids,
                n_users=sql.n_users,
                n_interactions=written.rows,
                split_counts=written.split_counts,
                train_per_item=lambda: written.train_per_item[1:],
            )
            write_parquet_atomic(items, staging / ITEMS_FILE)
            return _manifest(
                staging,
                source,
                input_uri,
                raw,
                source_options,
                counts,
                prepared.effective,
                prepared.notes,
                items,
                written.view,
            )


def _manifest(
    staging: Path,
    source: str,
    input_uri: str | None,
    raw: RawData,
    source_options: dict,
    counts: dict,
    effective: dict,
    notes: dict,
    items,
    view: dict | None,
) -> dict:
    """Write ``manifest.json`` into ``staging`` (the data files are there) and return it."""
    manifest = {
        "source": source,
        "input": str(input_uri) if input_uri else None,
        "source_files": raw.source_files,
        "options": {
            **effective,  # in effect: e.g. min_user_interactions raised to 3
            **{k: _jsonable(v) for k, v in source_options.items()},
        },
        **notes,  # adjusted_options, folded_domains (when any)
        "counts": counts,
        "bad_examples": raw.bad_examples,
        "domains": _domain_item_counts(items),
        "files": {
            name: {"sha256": sha256_file(staging / name)}
            for name in (ITEMS_FILE, INTERACTIONS_FILE)
        },
        "versions": library_versions(),
    }
    if view is not None:  # the streaming view; manifest "files" and the fingerprint stay
        manifest["training_view"] = view
    if source == "synthetic":
        manifest["synthetic"] = synthetic.describe(synthetic.SyntheticConfig(**source_options))
    write_json_atomic(staging / MANIFEST_FILE, manifest)
    return manifest


def _jsonable(value):
    return str(value) if isinstance(value, Path) else value


def _domain_item_counts(items) -> dict[str, int]:
    import pyarrow.compute as pc

    counts = pc.value_counts(pc.list_flatten(items.column("domains"))).to_pylist()
    return dict(sorted((c["values"], c["counts"]) for c in counts))


READER_REMOVALS = {"removed_by_first_tag": "repeat taggings of a user-artist pair (first kept)"}


def summary_counts(manifest: dict) -> list[str]:
    """The summary lines that add up: read - malformed (- reader removals) = parsed - each
    filter = kept; the same numbers as ``manifest.json``'s counts; then any adjusted option."""
    counts = manifest["counts"]
    parsed = counts.get("rows_parsed", counts["rows_read"] - counts["bad_rows"])
    if manifest.get("row_unit", "rows") == "rows":
        read = f"rows read {counts['rows_read']:,} - malformed {counts['bad_rows']:,}"
        for key, label in READER_REMOVALS.items():
            if key in counts:
                read += f" - {label} {counts[key]:,}"
        read += f" = parsed {parsed:,}"
    else:  # sequences: a line holds a user's interactions
        unit = manifest["row_unit"]
        read = (
            f"{unit} read {counts['rows_read']:,} (malformed {counts['bad_rows']:,}) -> "
            f"interactions parsed {parsed:,}"
        )
    lines = [
        f"{read} - rating threshold {counts.get('removed_by_rating_threshold', 0):,}"
        f" - duplicates {counts.get('duplicates_removed', 0):,}"
        f" - k-core {counts.get('removed_by_kcore', 0):,} = kept {counts['interactions']:,}"
    ]
    for name, change in manifest.get("adjusted_options", {}).items():
        flag = "--" + name.replace("_", "-")
        lines.append(
            f"note: {flag} {change['requested']} raised to {change['effective']} "
            f"({change['why']}); the manifest records {change['effective']}"
        )
    folded = manifest.get("folded_domains") or {}
    if folded:
        shown = ", ".join(list(folded)[:8]) + (", …" if len(folded) > 8 else "")
        lines.append(f"folded {len(folded)} domain(s) into '{OTHER_DOMAIN}': {shown}")
    return lines
