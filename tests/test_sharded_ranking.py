"""Chunked and sharded full ranking (issue 15 item 4) equal the one-process, unchunked ranking."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from components.core.chunked_ranking import (
    Tiles,
    ordered_topk,
    rank_chunked,
    seen_tiles,
    tile_plan,
)
from components.core.process_group import Process
from components.core.ranking import rank_all, ranks_from_embeddings, seen_mask, user_states
from components.core.sharded_ranking import shard

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def tied_scores(n_users: int, n_items: int, seed: int = 0):
    """Scores of few distinct values (many ties), NaN and -inf entries, targets incl. NaN/-inf."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (n_users, n_items), generator=g).float()
    scores[0, 5] = torch.nan  # a NaN candidate
    scores[1] = torch.nan  # a NaN target and NaN everywhere
    scores[2, :10] = -torch.inf
    targets = torch.randint(1, n_items, (n_users,), generator=g)
    scores[2, targets[2]] = -torch.inf  # a -inf target
    scores[3, targets[3]] = torch.nan  # a NaN target among numbers
    scores[4, 0:3] = -0.0
    return scores, targets


def reference_top(scores, k: int):
    """Top k by (score descending, NaN first, item ascending), padding and excluded at -inf."""
    out = []
    for row in scores.tolist():
        key = [
            (0 if np.isnan(v) else 1, -v if not np.isnan(v) else 0.0, i) for i, v in enumerate(row)
        ]
        out.append([i for *_, i in sorted(key)[:k]])
    return torch.tensor(out)


@pytest.mark.parametrize("with_exclude", [False, True])
def test_chunked_equals_unchunked_for_every_chunk_size(with_exclude):
    n_users, n_items, k = 29, 40, 12
    scores, targets = tied_scores(n_users, n_items)
    mask = torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(1)) < 0.3
    mask[5] = True  # every item excluded but the target
    full_mask = (lambda rows: mask[rows]) if with_exclude else None
    tile_mask = (lambda rows, cols: mask[rows, cols]) if with_exclude else None
    ranks0, _ = rank_all(lambda rows: scores[rows].clone(), targets, n_items, full_mask, topk=k)
    masked = scores.clone()
    masked[:, 0] = -torch.inf
    if with_exclude:
        drop = mask.clone()
        drop[torch.arange(n_users), targets] = False
        masked[drop] = -torch.inf
    expected_top = reference_top(masked, k)
    for chunk in (1, 2, 7, 13, n_items, 3 * n_items):
        for block in (1, 4, n_users):
            ranks, top = rank_chunked(
                lambda rows, cols: scores[rows, cols].clone(), targets, n_items, tile_mask, k,
                Tiles(block, min(chunk, n_items)),
            )  # fmt: skip
            assert torch.equal(ranks, ranks0), (chunk, block)
            assert torch.equal(top, expected_top), (chunk, block)
    # the NaN / -inf targets are last among their candidates
    n_candidates = n_items - 1 - (mask[:, 1:].sum(1) - mask[torch.arange(n_users), targets].long())
    last = (n_candidates - 1) if with_exclude else torch.full((n_users,), n_items - 2)
    assert ranks0[1] == last[1] and ranks0[2] == last[2] and ranks0[3] == last[3]
    if with_exclude:
        assert ranks0[5] == 0  # alone among its candidates


def test_ranks_without_ties_also_match_rank_alls_top_items():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(50, 300, generator=g)
    targets = torch.randint(1, 300, (50,), generator=g)
    ranks0, top0 = rank_all(lambda rows: scores[rows].clone(), targets, 300, topk=20)
    ranks, top = rank_chunked(
        lambda rows, cols: scores[rows, cols].clone(), targets, 300, topk=20, tiles=Tiles(8, 33)
    )
    assert torch.equal(ranks, ranks0) and torch.equal(top, top0)


def test_ordered_topk_breaks_ties_by_the_lower_item():
    values = torch.tensor([[1.0, 2.0, 2.0, torch.nan, -0.0, 0.0, 2.0]])
    ids = torch.tensor([[10, 9, 3, 7, 2, 1, 5]])
    top_values, top_ids = ordered_topk(values, ids, 6)
    assert top_ids.tolist() == [[7, 3, 5, 9, 10, 1]]
    assert torch.isnan(top_values[0, 0]) and top_values[0, 1:].tolist() == [2, 2, 2, 1, 0]


def test_seen_tiles_are_chunks_of_seen_mask():
    offsets = np.array([0, 3, 3, 7])
    items = np.array([1, 5, 9, 2, 3, 9, 10])
    full = seen_mask(offsets, items, 11, "cpu")(slice(0, 3))
    tiles = seen_tiles(offsets, items, "cpu")
    for start in range(0, 11, 4):
        cols = slice(start, min(start + 4, 11))
        assert torch.equal(tiles(slice(0, 3), cols), full[:, cols])


def test_tile_plan_and_shards():
    assert tile_plan(1000, 1 << 20) == Tiles(1048, 1000)  # whole item axis, rank_all's blocks
    assert tile_plan(100_000, 1 << 22) == Tiles(256, 16_384)  # too few users: chunk the items
    assert tile_plan(50, 100, chunk=200) == Tiles(2, 50)
    slices = [shard(23, 5, Process(r, 2)) for r in range(2)]
    assert slices == [slice(0, 15), slice(15, 23)]  # 5 blocks: 3 + 2, block-aligned
    assert [shard(3, 5, Process(r, 2)) for r in range(2)] == [slice(0, 3), slice(3, 3)]


def test_sharded_embeddings_equal_ranks_from_embeddings_in_one_process():
    from components.core.sharded_ranking import sharded_ranks_from_embeddings

    g = torch.Generator().manual_seed(4)
    states, items = torch.randn(70, 16, generator=g), torch.randn(90, 16, generator=g)
    targets = torch.randint(1, 90, (70,), generator=g)
    ranks0, top0 = ranks_from_embeddings(states, items, targets, topk=20, max_scores_per_block=900)
    ranks, top = sharded_ranks_from_embeddings(
        states, items, targets, Process(), topk=20, max_scores_per_block=900
    )
    assert torch.equal(ranks, ranks0) and torch.equal(top, top0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = """
import json, sys, numpy as np, torch
OUT = sys.argv[1] if __name__ == "__main__" else OUT
from components.core.process_group import join, leave
from components.core.sharded_ranking import sharded_ranks_from_embeddings, sharded_user_states
torch.set_num_threads(1)
group = join(torch.device("cpu"))
g = torch.Generator().manual_seed(5)
items = torch.randint(-3, 4, (45, 8), generator=g).float()  # integer scores: many ties
prefix = np.random.default_rng(0).integers(0, 45, (61, 6)); prefix[:, :2] = 0
class Model(torch.nn.Module):
    def __init__(self):
        super().__init__(); torch.manual_seed(0); self.emb = torch.nn.Embedding(45, 8)
    def last_state(self, rows): return self.emb(rows).sum(1)
    def item_embeddings(self): return items
states = sharded_user_states(Model(), prefix, "cpu", 7, group)
targets = torch.as_tensor(np.random.default_rng(1).integers(1, 45, 61))
out = {}
for chunk in (None, 4):
    ranks, top = sharded_ranks_from_embeddings(
        items[prefix[:, -1]], items, targets, group, topk=10, max_scores_per_block=40, chunk=chunk)
    out[str(chunk)] = [ranks.tolist(), top.tolist()]
out["states"] = states.numpy().tobytes().hex()
leave(group)
json.dump(out, open(OUT + f"/rank{group.rank}.json", "w"))
"""


def test_two_gloo_processes_equal_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
            "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env))
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    single = tmp_path / "single"
    single.mkdir()
    exec(WORKER, {"__name__": "single", "OUT": str(single)})  # one process: this one
    one = json.loads((single / "rank0.json").read_text())
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == one
    # and the one-process result is the unchunked ranking of the same scores
    g = torch.Generator().manual_seed(5)
    items = torch.randint(-3, 4, (45, 8), generator=g).float()
    prefix = np.random.default_rng(0).integers(0, 45, (61, 6))
    prefix[:, :2] = 0
    targets = torch.as_tensor(np.random.default_rng(1).integers(1, 45, 61))
    ranks0, _ = ranks_from_embeddings(items[prefix[:, -1]], items, targets, topk=10)
    assert one["None"][0] == one["4"][0] == ranks0.tolist()
    assert one["None"][1] == one["4"][1]

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = torch.nn.Embedding(45, 8)

        def last_state(self, rows):
            return self.emb(rows).sum(1)

        def item_embeddings(self):
            return items

    expected = user_states(Model(), prefix, "cpu", 7).numpy().tobytes().hex()
    assert one["states"] == expected


def test_evaluate_under_two_processes_writes_what_one_process_writes(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    from eval_fixtures import chain_sequences, write_dataset, write_model_dir, write_stats

    data = write_dataset(tmp_path / "data", chain_sequences(150, 80, 9), 80)
    stats = write_stats(tmp_path / "stats", data)
    model = write_model_dir(tmp_path / "model", data)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "train": {"exclude_seen": True}}))
    base = [
        sys.executable, "-m", "components.evaluate", "--dataset", str(data), "--stats", str(stats),
        "--model", str(model), "--bootstrap", "20", "--device", "cpu", "--batch-size", "16",
        "--exclude-seen",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    outputs = {n: tmp_path / f"eval{n}" for n in (1, 2)}
    cmd = [*base, "--output", str(outputs[2]), "--nproc-per-node", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout[done.stdout.index("{") :])["n_users"] == 150  # rank 0 only
    from components.evaluate.cli import main as evaluate_cli  # one process: this one

    assert evaluate_cli([*base[3:], "--output", str(outputs[1])]) == 0
    one, two = (json.loads((outputs[n] / "metrics.json").read_text()) for n in (1, 2))
    assert (one["processes"], two["processes"]) == (1, 2)
    for key in ("overall", "cohorts", "summary", "coverage", "top_share", "exclude_seen"):
        assert one[key] == two[key], key
    assert pq.read_table(outputs[1] / "per_user.parquet").equals(
        pq.read_table(outputs[2] / "per_user.parquet")
    )
    # --logit-adjust is refused with more processes, before any work
    cmd = [*base, "--output", str(tmp_path / "la"), "--nproc-per-node", "2", "--logit-adjust", "inverse"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--logit-adjust" in done.stderr
    assert not (tmp_path / "la").exists()
