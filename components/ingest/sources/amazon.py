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

import ast
import json
import logging
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.raw import RawData
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.delimited import header_fields, read_delimited
from components.ingest.sources.files import FileRef, is_zip, list_files
from components.ingest.sources.jsonl import parse_object, read_json_lines
from components.ingest.sources.numeric import to_numeric
from components.ingest.sources.output import raw_data, raw_items

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
    return raw_data(
        table, items, rows_read=rows_read, bad=bad, files=[reviews, meta], items_source=meta
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
    candidates = [
        r for r in files if not _is_meta(r) and r.basename.endswith(JSON_SUFFIXES + (".csv",))
    ]
    reviews = [r for r in candidates if _looks_like_reviews(r)]
    if not reviews:
        looked = f" (not Amazon reviews: {', '.join(r.basename for r in candidates)})"
        raise InputError(
            f"{path}: no Amazon reviews file found; {EXPECTED}{looked if candidates else ''}"
        )
    if len(reviews) > 1:
        names = ", ".join(r.basename for r in reviews)
        raise InputError(f"{path}: several Amazon reviews files ({names}); pass one as --input")
    if given_meta is None and len(metas) > 1:
        names = ", ".join(r.basename for r in metas)
        raise InputError(f"{path}: several metadata files ({names}); pass one with --items")
    return reviews[0], given_meta or (metas[0] if metas else None)


def _looks_like_reviews(ref: FileRef) -> bool:
    """Whether a candidate file's first record has the fields of an Amazon reviews format."""
    if ref.basename.endswith(".csv"):
        fields = ref.first_line().split(",")
        return "user_id" in fields or (len(fields) == 4 and fields[3].strip().isdigit())
    try:
        keys = set(_first_record(ref))
    except InputError:
        return False
    return {"reviewerID", "asin"} <= keys or (
        "user_id" in keys and bool({"parent_asin", "asin"} & keys)
    )


def _sample_records(ref: FileRef, n: int = 200) -> list[dict]:
    """The first ``n`` parsable records (to recognise a metadata format)."""
    records = []
    with ref.open() as handle:
        for raw in handle:
            record = parse_object(raw.decode("utf-8", "replace").strip(), literal_ok=True)
            if isinstance(record, dict):
                records.append(record)
            if len(records) >= n:
                break
    return records


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
        data,
        ref,
        bad,
        {"rating": (pa.float64(), False), "timestamp": (pa.int64(), True)},
        nonempty=("user_id", "item_id"),
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
    sample = _sample_records(ref)
    item_key = "parent_asin" if any("parent_asin" in r for r in sample) else "asin"
    literal = not _is_json(ref)
    categories = [r["categories"] for r in sample if isinstance(r.get("categories"), list)]
    nested = any(c and isinstance(c[0], list) for c in categories)  # 2014: a list of paths
    bad = BadRows()
    if nested and literal:
        item_ids, item_paths = _read_literal_meta(ref, bad)
    elif nested:
        fields = {item_key: pa.string(), "categories": pa.list_(pa.list_(pa.string()))}
        rows = read_json_lines(ref, fields, bad, required=(item_key,))
        item_ids = rows.table.column(item_key)
        item_paths = [p or [] for p in rows.table.column("categories").to_pylist()]
    else:
        fields = {
            item_key: pa.string(),
            "category": pa.list_(pa.string()),  # 2018
            "categories": pa.list_(pa.string()),  # 2023
            "main_category": pa.string(),  # 2023
        }
        rows = read_json_lines(ref, fields, bad, required=(item_key,), literal_ok=literal)
        item_ids = rows.table.column(item_key)
        columns = [
            rows.table.column(n).to_pylist() for n in ("category", "categories", "main_category")
        ]
        item_paths = [
            [category or categories or ([main] if main else [])]
            for category, categories, main in zip(*columns, strict=True)
        ]
    bad.log_skipped(ref.name, "metadata line")
    return raw_items(item_ids, [_at_depth(paths, depth) for paths in item_paths])


ASIN_FIELD = re.compile(r"""['"]asin['"]:\s*['"]([^'"]+)['"]""")
CATEGORIES_FIELD = re.compile(r"""['"]categories['"]:\s*(\[\[.*?\]\])""")


def _read_literal_meta(
    ref: FileRef, bad: BadRows
) -> tuple[list[str], list[list[list[str | None]]]]:
    """2014 metadata (Python dict literals): asin and category paths of every line.

    ``ast.literal_eval`` of a whole line costs ~1 ms (long "related" lists), so the two fields
    are cut out with regular expressions and only the categories list is evaluated; a line the
    expressions do not fit is evaluated whole.
    """
    item_ids, paths = [], []
    with ref.open() as handle:
        for number, raw in enumerate(handle, 1):
            text = raw.decode("utf-8", "replace").strip()
            if not text:
                continue
            asin, categories = ASIN_FIELD.search(text), CATEGORIES_FIELD.search(text)
            try:
                if asin:
                    found = ast.literal_eval(categories.group(1)) if categories else []
                    item_ids.append(asin.group(1))
                else:
                    record = parse_object(text, literal_ok=True)
                    item_ids.append(str(record["asin"]))
                    found = record.get("categories") or []
            except (ValueError, SyntaxError, TypeError, KeyError):
                bad.add(ref.name, number, f"not a metadata record: {text[:60]!r}")
                continue
            paths.append(
                [[None if c is None else str(c) for c in p] for p in found if isinstance(p, list)]
            )
    return item_ids, paths


def _is_json(ref: FileRef) -> bool:
    try:
        json.loads(ref.first_line())
        return True
    except json.JSONDecodeError:
        return False


def _at_depth(paths: list[list[str | None]], depth: int) -> list[str]:
    # a null path or a null inside a path (JSON null) is no category
    found = [
        str(path[depth]).strip() for path in paths if path and len(path) > depth and path[depth]
    ]
    return list(dict.fromkeys(d for d in found if d))
