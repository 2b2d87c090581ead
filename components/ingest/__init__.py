"""The ingest step: any supported source → items.parquet, interactions.parquet, manifest.json."""

from components.ingest.ingest import SOURCES, ingest

__all__ = ["SOURCES", "ingest"]
