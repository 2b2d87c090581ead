"""The data contract between steps (SPEC §3): file names, Arrow schemas and a validating loader."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from components.errors import InputError

ITEMS_FILE = "items.parquet"
INTERACTIONS_FILE = "interactions.parquet"
MANIFEST_FILE = "manifest.json"

PADDING_ITEM = 0
SPLITS = ("train", "valid", "test")
NO_DOMAIN = "(none)"

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_idx", pa.int32(), nullable=False),  # 1..n_items; 0 is padding
        pa.field("item_id", pa.string(), nullable=False),  # the source's id
        pa.field("domains", pa.list_(pa.string()), nullable=False),
    ]
)

INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_idx", pa.int32(), nullable=False),  # 0..n_users-1
        pa.field("item_idx", pa.int32(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train | valid | test
    ]
)


@dataclass(frozen=True)
class Dataset:
    """An ingest output loaded into memory."""

    path: Path
    items: pa.Table
    interactions: pa.Table
    manifest: dict

    @property
    def n_items(self) -> int:
        return self.items.num_rows

    @property
    def n_users(self) -> int:
        return int(self.manifest["counts"]["users"])

    def item_domains(self) -> list[list[str]]:
        """domains of item_idx i at position i (position 0, padding, has no domain)."""
        return [[]] + self.items.column("domains").to_pylist()

    def domain_names(self) -> list[str]:
        """Every domain, sorted by name."""
        import pyarrow.compute as pc

        return sorted(pc.unique(pc.list_flatten(self.items.column("domains"))).to_pylist())


def _check_schema(table: pa.Table, expected: pa.Schema, path: Path) -> None:
    missing = [f.name for f in expected if f.name not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {expected.names}")
    for field in expected:
        got = table.schema.field(field.name).type
        if got != field.type:
            raise InputError(f"{path}: column {field.name!r} has type {got}, expected {field.type}")


def load_dataset(path: str | Path) -> Dataset:
    """Load and validate an ingest output directory; errors name the offending file."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory (expected an ingest output dir)")
    missing = [n for n in (ITEMS_FILE, INTERACTIONS_FILE, MANIFEST_FILE) if not (root / n).exists()]
    if missing:
        raise InputError(
            f"{root}: not an ingest output, missing {missing} "
            f"(run `python -m components.ingest` first)"
        )
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{root / MANIFEST_FILE}: invalid JSON ({exc})") from exc
    items = pq.read_table(root / ITEMS_FILE)
    interactions = pq.read_table(root / INTERACTIONS_FILE)
    _check_schema(items, ITEMS_SCHEMA, root / ITEMS_FILE)
    _check_schema(interactions, INTERACTIONS_SCHEMA, root / INTERACTIONS_FILE)
    items = items.select(ITEMS_SCHEMA.names).cast(ITEMS_SCHEMA)
    interactions = interactions.select(INTERACTIONS_SCHEMA.names).cast(INTERACTIONS_SCHEMA)
    return Dataset(path=root, items=items, interactions=interactions, manifest=manifest)


def dataset_fingerprint(dataset: Dataset) -> dict:
    """What a downstream artifact records to prove which dataset it was built from."""
    return {
        "n_items": dataset.n_items,
        "n_users": dataset.n_users,
        "interactions_sha256": dataset.manifest.get("files", {})
        .get(INTERACTIONS_FILE, {})
        .get("sha256"),
    }
