"""The data contract is checked on load (issue 11, items 8 and 11; SPEC §3).

A valid tiny dataset is written by the ingest step, then broken in one way per case: indices out
of range or not dense, an incomplete or duplicated items table, bad split values, valid/test rows
that are not last, unsorted rows, nulls, counts that disagree with the manifest, corrupt or
truncated Parquet, a manifest of the wrong shape, and contract-valid edits (a modified test
target) that only the manifest's sha256 catches. ``load_dataset`` and ``python -m
components.stats`` must fail with one line naming the file and what is wrong, writing nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.errors import InputError
from components.schema import INTERACTIONS_FILE, ITEMS_FILE, MANIFEST_FILE, load_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    from components.ingest import ingest

    out = tmp_path_factory.mktemp("contract") / "dataset"
    ingest("synthetic", out, num_users=50, num_items=30, num_domains=3, dense_domains=1, seed=0)
    dataset = load_dataset(out)
    interactions = dataset.interactions.to_pydict()
    user0 = [i for i, u in enumerate(interactions["user_idx"]) if u == 0]
    return {"path": out, "n_items": dataset.n_items, "n_users": dataset.n_users, "user0": user0}


def _rewrite(path: Path, change, nullable: bool = False) -> None:
    table = pq.read_table(path)
    columns = table.to_pydict()
    change(columns)
    schema = table.schema
    if nullable:
        schema = pa.schema([f.with_nullable(True) for f in schema])
    pq.write_table(pa.table(columns, schema=schema), path)


def _manifest(root: Path, change) -> None:
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    manifest = change(manifest)
    (root / MANIFEST_FILE).write_text(json.dumps(manifest))


def _set(column: str, row, value):
    def change(cols):
        cols[column][row] = value

    return change


def _interactions(change, nullable: bool = False):
    return lambda root, b: _rewrite(root / INTERACTIONS_FILE, change(b), nullable)


def _items(change, nullable: bool = False):
    return lambda root, b: _rewrite(root / ITEMS_FILE, change(b), nullable)


def _shift_users(start):
    def change(cols):
        cols["user_idx"] = [u + 1 if u >= start else u for u in cols["user_idx"]]

    return change


def _reverse(cols):
    for name in cols:
        cols[name] = cols[name][::-1]


def _swap_first_and_last_split(rows):
    def change(cols):
        first, last = rows[0], rows[-1]
        cols["split"][first], cols["split"][last] = cols["split"][last], cols["split"][first]

    return change


def _time_backwards(rows):
    def change(cols):
        cols["timestamp"][rows[0]] = cols["timestamp"][rows[1]] + 1000

    return change


def _swap_item_rows(cols):
    for name in ("item_idx", "item_id", "domains"):
        cols[name][0], cols[name][1] = cols[name][1], cols[name][0]


def _drop_last_item(cols):
    for name in cols:
        cols[name] = cols[name][:-1]


def _other_item(b):
    """A contract-valid edit: user 0's test target replaced by another existing item."""

    def change(cols):
        row = b["user0"][-1]
        cols["item_idx"][row] = cols["item_idx"][row] % b["n_items"] + 1

    return change


def _truncate(name, keep):
    def corrupt(root, b):
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[: int(len(data) * keep)])

    return corrupt


def _write_bytes(name, data):
    return lambda root, b: (root / name).write_bytes(data)


CASES = {
    # ---- interactions.parquet
    "item-idx-above-n-items": (
        _interactions(lambda b: _set("item_idx", 5, b["n_items"] + 1)),
        INTERACTIONS_FILE,
        r"item_idx {n1} at row 5 is outside 1\.\.{n} \(items\.parquet has {n} items\)",
    ),
    "item-idx-padding": (
        _interactions(lambda b: _set("item_idx", 0, 0)),
        INTERACTIONS_FILE,
        r"item_idx 0 at row 0 is outside 1\.\.{n}",
    ),
    "user-idx-gap": (
        _interactions(lambda b: _shift_users(10)),
        INTERACTIONS_FILE,
        r"user_idx is not dense: user 10 has no rows",
    ),
    "user-idx-from-one": (
        _interactions(lambda b: _shift_users(0)),
        INTERACTIONS_FILE,
        r"user_idx is not dense: user 0 has no rows",
    ),
    "rows-not-sorted-by-user": (
        _interactions(lambda b: _reverse),
        INTERACTIONS_FILE,
        r"not sorted by user_idx \(row \d+: user \d+ after user \d+\)",
    ),
    "timestamps-backwards": (
        _interactions(lambda b: _time_backwards(b["user0"])),
        INTERACTIONS_FILE,
        r"not sorted by timestamp within user 0 \(row 1\)",
    ),
    "test-row-not-last": (
        _interactions(lambda b: _swap_first_and_last_split(b["user0"])),
        INTERACTIONS_FILE,
        r"user 0 has a train row \(row 1\) after a test row: each user's valid/test rows must",
    ),
    "unknown-split-value": (
        _interactions(lambda b: _set("split", 3, "Test")),
        INTERACTIONS_FILE,
        r"split 'Test' at row 3 is not one of \['train', 'valid', 'test'\]",
    ),
    "two-test-rows": (
        _interactions(lambda b: _set("split", b["user0"][-2], "test")),
        INTERACTIONS_FILE,
        r"user 0 has 0 valid rows; the leave-one-out split gives each user exactly one",
    ),
    "null-timestamp": (
        _interactions(lambda b: _set("timestamp", 2, None), nullable=True),
        INTERACTIONS_FILE,
        r"column 'timestamp' has 1 null value",
    ),
    "wrong-column-type": (
        lambda root, b: pq.write_table(
            pq.read_table(root / INTERACTIONS_FILE).set_column(
                1, "item_idx", pq.read_table(root / INTERACTIONS_FILE)["item_idx"].cast(pa.int64())
            ),
            root / INTERACTIONS_FILE,
        ),
        INTERACTIONS_FILE,
        r"column 'item_idx' has type int64, expected int32",
    ),
    # ---- items.parquet
    "duplicate-item-idx": (
        _items(lambda b: _set("item_idx", 1, 1)),
        ITEMS_FILE,
        r"duplicate item_idx 1 \(rows 0 and 1\)",
    ),
    "item-idx-not-in-row-order": (
        _items(lambda b: _swap_item_rows),
        ITEMS_FILE,
        r"item_idx must be 1\.\.{n} in row order \(one row per item\); row 0 has 2",
    ),
    "item-idx-beyond-the-table": (
        _items(lambda b: _set("item_idx", b["n_items"] - 1, b["n_items"] + 5)),
        ITEMS_FILE,
        r"row {n_1} has {n5}",
    ),
    "items-table-incomplete": (  # the last item's row is missing: interactions refer to it
        _items(lambda b: _drop_last_item),
        INTERACTIONS_FILE,
        r"item_idx {n} at row \d+ is outside 1\.\.{n_1} \(items\.parquet has {n_1} items\)",
    ),
    "duplicate-item-id": (
        _items(lambda b: lambda cols: cols["item_id"].__setitem__(1, cols["item_id"][0])),
        ITEMS_FILE,
        r"duplicate item_id '[^']+'",
    ),
    "null-inside-domains": (
        _items(lambda b: _set("domains", 2, ["x", None])),
        ITEMS_FILE,
        r"item_idx 3 has a null inside its domains list",
    ),
    # ---- corrupt or truncated Parquet
    "interactions-truncated": (
        _truncate(INTERACTIONS_FILE, 0.5),
        INTERACTIONS_FILE,
        r"not a readable Parquet file \(.*\): corrupt or truncated; re-run the ingest step",
    ),
    "items-empty-file": (
        _write_bytes(ITEMS_FILE, b""),
        ITEMS_FILE,
        r"not a readable Parquet file",
    ),
    "interactions-garbage": (
        _write_bytes(INTERACTIONS_FILE, b"PAR1" + os.urandom(200) + b"PAR1"),
        INTERACTIONS_FILE,
        r"not a readable Parquet file",
    ),
    # ---- manifest.json
    "manifest-invalid-json": (
        _write_bytes(MANIFEST_FILE, b'{"counts": '),
        MANIFEST_FILE,
        r"invalid JSON",
    ),
    "manifest-a-list": (
        lambda root, b: _manifest(root, lambda m: [m]),
        MANIFEST_FILE,
        r"expected a JSON object \(the ingest step's manifest\), got list",
    ),
    "manifest-without-counts": (
        lambda root, b: _manifest(root, lambda m: {k: v for k, v in m.items() if k != "counts"}),
        MANIFEST_FILE,
        r"'counts' is missing or not an object",
    ),
    "manifest-users-a-string": (
        lambda root, b: _manifest(root, lambda m: {**m, "counts": {**m["counts"], "users": "50"}}),
        MANIFEST_FILE,
        r"counts\.users is '50', expected a count",
    ),
    "manifest-without-files": (
        lambda root, b: _manifest(root, lambda m: {**m, "files": None}),
        MANIFEST_FILE,
        r"'files' is missing or not an object",
    ),
    "manifest-sha256-not-a-digest": (
        lambda root, b: _manifest(
            root, lambda m: {**m, "files": {**m["files"], ITEMS_FILE: {"sha256": 12}}}
        ),
        MANIFEST_FILE,
        r"files\.items\.parquet\.sha256 is 12, expected a sha256",
    ),
    "manifest-counts-disagree": (
        lambda root, b: _manifest(
            root, lambda m: {**m, "counts": {**m["counts"], "users": b["n_users"] - 1}}
        ),
        MANIFEST_FILE,
        r"counts\.users is {u_1} but interactions\.parquet holds {u}",
    ),
    # ---- contract-valid edits: only the sha256 against the manifest catches them
    "modified-test-target": (
        _interactions(_other_item),
        INTERACTIONS_FILE,
        r"sha256 [0-9a-f]{{64}} does not match manifest\.json \([0-9a-f]{{64}}\): the file was "
        r"modified after ingest",
    ),
    "modified-domains": (
        _items(lambda b: _set("domains", 0, ["renamed"])),
        ITEMS_FILE,
        r"sha256 [0-9a-f]{{64}} does not match manifest\.json",
    ),
}


def _broken(base: dict, tmp_path: Path, case: str) -> tuple[Path, Path, str]:
    corrupt, name, pattern = CASES[case]
    root = tmp_path / "dataset"
    shutil.copytree(base["path"], root)
    corrupt(root, base)
    n, u = base["n_items"], base["n_users"]
    message = pattern.format(n=n, n1=n + 1, n_1=n - 1, n5=n + 5, u=u, u_1=u - 1)
    return root, root / name, message


@pytest.mark.parametrize("case", list(CASES))
def test_broken_dataset_fails_naming_the_file(base, tmp_path, case, capsys):
    from components.stats.cli import main

    root, file, message = _broken(base, tmp_path, case)
    with pytest.raises(InputError) as failure:
        load_dataset(root)
    text = str(failure.value)
    assert text.startswith(f"{file}: ") and "\n" not in text
    assert re.search(message, text), text
    out = tmp_path / "stats"
    assert main(["--dataset", str(root), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {text}"] and "Traceback" not in err
    assert not out.exists()


def test_the_valid_dataset_loads_and_sha256_can_be_skipped(base, tmp_path):
    dataset = load_dataset(base["path"])
    assert dataset.n_users == base["n_users"] and dataset.n_items == base["n_items"]
    root, _, _ = _broken(base, tmp_path, "modified-test-target")
    assert load_dataset(root, verify_sha256=False).n_users == base["n_users"]


def test_stats_cli_process_on_a_modified_target(base, tmp_path):
    root, file, _ = _broken(base, tmp_path, "modified-test-target")
    result = subprocess.run(
        [sys.executable, "-m", "components.stats", "--dataset", str(root),
         "--output", str(tmp_path / "stats")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{file}: sha256" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "stats").exists()
