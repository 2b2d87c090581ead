"""Amazon reviews (McAuley et al.): the 2014, 2018 and 2023 releases.

Interactions, one file (optionally .gz):
- review JSON lines, 2014/2018: ``reviewerID, asin, overall, unixReviewTime`` (seconds);
- review JSON lines, 2023: ``user_id, parent_asin, rating, timestamp`` (milliseconds);
- ratings-only CSV without header, ``item,user,rating,timestamp`` (2018) or
  ``user,item,rating,timestamp`` (2014): which column holds the items is recognised from the
  ASIN pattern (10 characters, ``B…`` or ISBN-like);
- 2023 CSV with header ``user_id,parent_asin,rating,timestamp`` (milliseconds).
Metadata (``meta_*.json[l][.gz]`` next to it, or ``--items``): ``asin``/``parent_asin`` and the
category path(s): 2014 ``categories`` (list of paths; the file holds Python dict literals), 2018
``category`` (one path), 2023 ``categories`` (one path; ``main_category`` when it is empty).

Domain *(our choice)*: the category at ``domain_depth`` along the path, where depth 0 is the
root (the store, e.g. "Beauty") and depth 1, the default, the first level under it (e.g.
"Skin Care", "Makeup" — the ``category`` of the amazon-beauty items.csv). An item with several
paths (2014) gets every distinct category found at that depth; a path too short gives none.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.raw import RawData
from components.ingest.sources._read import (
    BadRows,
    FileRef,
    header_fields,
    is_zip,
    list_files,
    parse_object,
    raw_interactions,
    raw_items,
    read_delimited,
    read_json_lines,
    to_numeric,
)

log = logging.getLogger("dwlrec.ingest")

DEFAULT_DOMAIN_DEPTH = 1
ASIN = re.compile(r"^(B[0-9A-Z]{9}|[0-9]{9}[0-9X])$")
JSON_SUFFIXES = (".json", ".jsonl")
EXPECTED = (
    "expected one reviews file: JSON lines (*.json, *.jsonl; 2014/2018 reviewerID, asin, overall,"
    " unixReviewTime or 2023 user_id, parent_asin, rating, timestamp) or a ratings CSV (*.csv),"
    " optionally .gz, plus metadata meta_*.json[l][.gz]"
)


def read(path: Path, options: dict) -> RawData:
    """Read Amazon reviews/ratings and category metadata from ``path`` (file or directory)."""
    depth = int(options.get("domain_depth", DEFAULT_DOMAIN_DEPTH) or 0)
    if depth < 0:
        raise ConfigError(f"--domain-depth {depth}: expected >= 0 (0 = root category)")
    reviews, meta = _find_files(path, options)
    bad = BadRows()
    if reviews.basename.endswith(".csv"):
        table, rows_read = _read_ratings_csv(reviews, bad)
    else:
        table, rows_read = _read_reviews_json(reviews, bad)
    items = None
    if meta is not None:
        items = _read_meta(meta, depth)
        items = items.filter(pc.is_in(items.column("item_id"), value_set=table.column("item_id")))
    else:
        log.warning(
            "%s: no metadata file (meta_*.json) found and no --items: every item gets "
            "domain (none)",
            reviews.name,
        )
    return RawData(
        interactions=raw_interactions(table),
        items=items,
        rows_read=rows_read,
        bad_rows=bad.count,
        bad_examples=bad.examples,
        source_files=[reviews.name] + ([meta.name] if meta else []),
    )


def _is_meta(ref: FileRef) -> bool:
    return ref.basename.startswith("meta") and ref.basename.endswith(JSON_SUFFIXES)


def _find_files(path: Path, options: dict) -> tuple[FileRef, FileRef | None]:
    given_meta = FileRef(Path(options["items"])) if options.get("items") else None
    if path.is_file() and not is_zip(path):
        siblings = [r for r in list_files(path.parent) if _is_meta(r)]
        return FileRef(path), given_meta or (siblings[0] if len(siblings) == 1 else None)
    files = list_files(path) if (path.is_dir() or is_zip(path)) else []
    metas = [r for r in files if _is_meta(r)]
    reviews = [
        r for r in files if not _is_meta(r) and r.basename.endswith(JSON_SUFFIXES + (".csv",))
    ]
    if not reviews:
        raise InputError(f"{path}: no Amazon reviews file found; {EXPECTED}")
    if len(reviews) > 1:
        names = ", ".join(r.basename for r in reviews)
        raise InputError(f"{path}: several Amazon reviews files ({names}); pass one as --input")
    if given_meta is None and len(metas) > 1:
        names = ", ".join(r.basename for r in metas)
        raise InputError(f"{path}: several metadata files ({names}); pass one with --items")
    return reviews[0], given_meta or (metas[0] if metas else None)


def _first_record(ref: FileRef) -> dict:
    with ref.open() as handle:
        for raw in handle:
            text = raw.decode("utf-8", "replace").strip()
            if text:
                record = parse_object(text, literal_ok=True)
                if isinstance(record, dict):
                    return record
                break
    raise InputError(f"{ref.name}:1: not JSON lines (expected one JSON object per line)")


def _read_reviews_json(ref: FileRef, bad: BadRows) -> tuple[pa.Table, int]:
    keys = set(_first_record(ref))
    if {"reviewerID", "asin"} <= keys:
        names, ms = ("reviewerID", "asin", "overall", "unixReviewTime"), False
    elif "user_id" in keys and ({"parent_asin", "asin"} & keys):
        item = "parent_asin" if "parent_asin" in keys else "asin"
        names, ms = ("user_id", item, "rating", "timestamp"), True
    else:
        raise InputError(
            f"{ref.name}:1: not Amazon reviews: found keys {sorted(keys)[:12]}; {EXPECTED}"
        )
    user, item, rating, time = names
    fields = {user: pa.string(), item: pa.string(), rating: pa.float64(), time: pa.int64()}
    rows = read_json_lines(ref, fields, bad, required=(user, item, time))
    table = rows.table
    seconds = table.column(time)
    if ms:
        seconds = pc.divide(seconds, 1000)  # integer division (floors for positive times)
    return (
        pa.table(
            {
                "user_id": table.column(user),
                "item_id": table.column(item),
                "timestamp": seconds,
                "rating": table.column(rating),
            }
        ),
        rows.rows_read,
    )


def _read_ratings_csv(ref: FileRef, bad: BadRows) -> tuple[pa.Table, int]:
    header = [h.lower() for h in header_fields(ref)]
    if "user_id" in header:  # 2023 "benchmark" CSV: user_id,parent_asin,rating,timestamp(ms)
        item = "parent_asin" if "parent_asin" in header else "asin"
        missing = {"user_id", item, "rating", "timestamp"} - set(header)
        if missing:
            raise InputError(f"{ref.name}:1: missing column(s) {sorted(missing)}; {EXPECTED}")
        data = read_delimited(
            ref, header, bad, skip_rows=1, include=["user_id", item, "rating", "timestamp"]
        )
        data.table = data.table.rename_columns(
            [
                "user_id" if c == "user_id" else "item_id" if c == item else c
                for c in data.table.column_names
            ]
        )
        ms = True
    else:
        data = read_delimited(ref, ["a", "b", "rating", "timestamp"], bad)
        item_first = _items_in_first_column(data.table)
        order = ["item_id", "user_id"] if item_first else ["user_id", "item_id"]
        data.table = data.table.rename_columns(order + ["rating", "timestamp"])
        ms = False
    table = to_numeric(
        data, ref, bad, {"rating": (pa.float64(), False), "timestamp": (pa.int64(), True)}
    )
    if ms:
        table = table.set_column(
            table.schema.get_field_index("timestamp"),
            "timestamp",
            pc.divide(table.column("timestamp"), 1000),
        )
    return table, data.rows_read


def _items_in_first_column(table: pa.Table, sample: int = 2000) -> bool:
    """2018 ratings CSVs are item,user,…; 2014's are user,item,…: the ASINs tell which."""
    head = table.slice(0, sample)

    def asin_share(column: str) -> float:
        values = head.column(column).to_pylist()
        return sum(bool(ASIN.match(v)) for v in values) / max(1, len(values))

    return asin_share("a") >= asin_share("b")


def _read_meta(ref: FileRef, depth: int) -> pa.Table:
    first = _first_record(ref)
    item_key = "parent_asin" if "parent_asin" in first else "asin"
    literal = not _is_json(ref)
    bad = BadRows()
    if "categories" in first and first["categories"] and isinstance(first["categories"][0], list):
        fields = {item_key: pa.string(), "categories": pa.list_(pa.list_(pa.string()))}
        rows = read_json_lines(ref, fields, bad, required=(item_key,), literal_ok=literal)
        paths = rows.table.column("categories").to_pylist()
        domains = [_at_depth(p or [], depth) for p in paths]
    else:
        fields = {
            item_key: pa.string(),
            "category": pa.list_(pa.string()),
            "categories": pa.list_(pa.string()),
            "main_category": pa.string(),
        }
        if "categories" in first and not isinstance(first.get("categories"), list):
            fields.pop("categories")
        rows = read_json_lines(ref, fields, bad, required=(item_key,), literal_ok=literal)
        table = rows.table
        columns = [
            table.column(n).to_pylist() if n in table.column_names else None
            for n in ("category", "categories", "main_category")
        ]
        domains = []
        for i in range(table.num_rows):
            path = next((c[i] for c in columns[:2] if c is not None and c[i]), None)
            if path is None and columns[2] is not None and columns[2][i]:
                path = [columns[2][i]]
            domains.append(_at_depth([path] if path else [], depth))
    if bad.count:
        log.warning(
            "%s: skipped %d malformed metadata line(s); first: %s",
            ref.name,
            bad.count,
            bad.examples[0],
        )
    return raw_items(rows.table.column(item_key), domains)


def _is_json(ref: FileRef) -> bool:
    try:
        json.loads(ref.first_line())
        return True
    except json.JSONDecodeError:
        return False


def _at_depth(paths: list[list[str]], depth: int) -> list[str]:
    found = [path[depth].strip() for path in paths if len(path) > depth and path[depth]]
    return list(dict.fromkeys(d for d in found if d))
