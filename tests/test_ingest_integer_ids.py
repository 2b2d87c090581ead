"""The in-memory engine's shortcuts (issue 16): canonical integer ids handed over as int64, the
incremental k-core, the split counts without hashing — each the same result as the slow way."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ingest import ingest
from components.ingest.core import _split_counts
from components.ingest.engines.arrow import _kcore
from components.ingest.raw import INTEGER_ID
from components.ingest.sources import READERS, numeric
from components.ingest.sources.numeric import canonical_integers


def _check(values: list[str]) -> bool:
    text = pa.chunked_array([pa.array(values)])
    return canonical_integers(text, pc.cast(text, pa.int64()))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["7", "12", "0", "12"], True),
        (["07", "12"], False),  # leading zero: "07" and "7" would be one integer
        (["00"], False),
        (["-0", "1"], False),
        (["-5", "1"], False),  # negative: not a bincount's range (the strings stay)
        (["0x7", "1"], False),  # pyarrow reads hex
        (["0X1f", "1"], False),
        (["1", str(10**12)], False),  # too sparse to count
    ],
)
def test_canonical_integers(values, expected):
    assert _check(values) is expected


def _write_movielens(root: Path, users: list[str]) -> Path:
    """A ratings.csv + movies.csv whose user ids are ``users`` (each rates items 1..5: with 5
    users or more, all survive the default 5-core)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp"]
    for n, user in enumerate(users):
        lines += [f"{user},{item},4.0,{1000 + 10 * n + item}" for item in (5, 3, 1, 4, 2)]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies = ["movieId,title,genres"] + [f"{i},Movie {i},Drama|Comedy" for i in range(1, 6)]
    (root / "movies.csv").write_text("\n".join(movies) + "\n")
    return root


def test_movielens_ids_are_integers_only_when_canonical(tmp_path):
    canonical = READERS["movielens"](_write_movielens(tmp_path / "a", ["3", "10", "2"]), {})
    assert canonical.interactions.schema.field("user_id").type == INTEGER_ID
    padded = READERS["movielens"](_write_movielens(tmp_path / "b", ["3", "03", "2"]), {})
    assert pa.types.is_string(padded.interactions.schema.field("user_id").type)


def test_padded_ids_stay_distinct_users(tmp_path):
    """ "03" and "3" are two users (the string path), in their text's natural order."""
    out = tmp_path / "out"
    manifest = ingest(
        "movielens", out, str(_write_movielens(tmp_path / "in", ["3", "03", "2", "4", "5"]))
    )
    assert manifest["counts"]["users"] == 5


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*.parquet"))
    }


def test_integer_ids_give_the_string_paths_bytes(tmp_path, monkeypatch):
    """The same files with the shortcut and without it (ids as strings): identical output."""
    source = _write_movielens(tmp_path / "in", [str(u) for u in (9, 40, 3, 17, 5, 21)])
    ingest("movielens", tmp_path / "fast", str(source))
    monkeypatch.setattr(numeric, "canonical_integers", lambda text, ints: False)
    ingest("movielens", tmp_path / "strings", str(source))
    fast, strings = _digests(tmp_path / "fast"), _digests(tmp_path / "strings")
    assert fast == strings and "interactions.parquet" in fast


def _kcore_reference(user, item, keep, min_user, min_item):
    """The definition: drop every row of a user or item under its threshold, until none is."""
    keep = keep.copy()
    while True:
        users = np.bincount(user[keep], minlength=user.max() + 1)
        items = np.bincount(item[keep], minlength=item.max() + 1)
        narrowed = keep & (users[user] >= min_user) & (items[item] >= min_item)
        if (narrowed == keep).all():
            return keep
        keep = narrowed


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 9), st.booleans()), min_size=1, max_size=120
    ),  # fmt: skip
    st.integers(1, 5),
    st.integers(1, 5),
)
def test_incremental_kcore_is_the_kcore(rows, min_user, min_item):
    user = np.array([r[0] for r in rows], dtype=np.int32)
    item = np.array([r[1] for r in rows], dtype=np.int32)
    keep = np.array([r[2] for r in rows], dtype=bool)
    expected = _kcore_reference(user, item, keep, min_user, min_item)
    assert (_kcore(user, item, keep, min_user, min_item) == expected).all()


@given(st.lists(st.integers(0, 2), min_size=1, max_size=60))
def test_split_counts_in_first_appearance_order(labels):
    names = np.array(["train", "valid", "test"])[labels]
    expected = {e["values"]: e["counts"] for e in pc.value_counts(pa.array(names)).to_pylist()}
    counts = _split_counts(np.array(labels, dtype=np.int8))
    assert list(counts.items()) == list(expected.items())
