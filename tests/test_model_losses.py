"""The train step's model, losses and training windows, against slow obviously-correct references."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from components.core.model import ModelConfig, SeqRecModel
from components.core.sequences import UserSequences, trim_left_padding
from components.errors import ConfigError
from components.train.data import TrainWindows, epoch_batches, shard
from components.train.losses import (
    LossFunction,
    bce,
    full_ce,
    gbce,
    gbce_beta,
    mml,
    sampled_softmax,
    weighted_mean,
)

torch.set_num_threads(1)
N, D, N_ITEMS = 12, 6, 37


def _inputs(seed=0, n=N, n_items=N_ITEMS):
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(n, D, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(n_items + 1, D, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, n_items + 1, (n,), generator=g)
    return states, items, targets


def _close(a, b, tol=1e-5):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    scale = b.abs().max().clamp(min=1e-12)
    assert ((a - b).abs().max() / scale).item() < tol, (a, b)


def _grads(loss_fn, states, items):
    states.grad = items.grad = None
    loss_fn().sum().backward()
    return states.grad.clone(), items.grad.clone()


# ---- ce ----


def _ce_reference(states, items, targets):
    out = []
    for h, t in zip(states, targets, strict=True):
        logits = [float(h @ items[j]) for j in range(1, len(items))]  # padding 0 excluded
        top = max(logits)
        lse = top + math.log(sum(math.exp(x - top) for x in logits))
        out.append(lse - float(h @ items[t]))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    "max_logits, max_cols",
    # many chunks, row blocks, one block, row x column tiles, the device default (None)
    [(7, None), (40, None), (1 << 20, None), (12, 4), (None, None)],
)
def test_ce_matches_reference_and_autograd(max_logits, max_cols):
    states, items, targets = _inputs()
    got = full_ce(states, targets, items, max_logits=max_logits, max_cols=max_cols)
    _close(got, _ce_reference(states.detach(), items.detach(), targets))

    def plain():  # the unchunked formula, differentiated by autograd
        logits = states @ items[1:].T
        return logits.logsumexp(1) - (states * items[targets]).sum(1)

    ref_grads = _grads(plain, states, items)
    got_grads = _grads(
        lambda: full_ce(states, targets, items, max_logits, max_cols) * 1.7, states, items
    )
    _close(got_grads[0], ref_grads[0] * 1.7)
    _close(got_grads[1], ref_grads[1] * 1.7)
    assert torch.all(got_grads[1][0] == 0)  # the padding row is never a candidate


def test_ce_under_cpu_bf16_autocast_is_the_float32_loss_to_bf16_precision():
    """--precision bf16 on a CPU: the products in bf16, the softmax sums in float32."""
    torch.manual_seed(0)
    states = torch.randn(50, 16, requires_grad=True)
    items = (0.3 * torch.randn(200, 16)).requires_grad_()
    targets = torch.randint(1, 200, (50,))
    exact = full_ce(states, targets, items, max_logits=300, max_cols=64)
    grads = torch.autograd.grad(exact.sum(), (states, items))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = full_ce(states, targets, items, max_logits=300, max_cols=64)
    low_grads = torch.autograd.grad(low.sum(), (states, items))
    assert low.dtype == torch.float32
    assert not torch.equal(low, exact)  # the products did run in bf16
    torch.testing.assert_close(low, exact, rtol=2e-2, atol=2e-2)
    for g, e in zip(low_grads, grads, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, e, rtol=5e-2, atol=2e-2)


def test_ce_gradcheck():
    states, items, targets = _inputs(n=4, n_items=9)
    assert torch.autograd.gradcheck(
        lambda s, e: full_ce(s, targets, e, max_logits=5), (states, items)
    )


# ---- sampled softmax ----


def _sampled_reference(states, items, targets, negatives, probs, tau):
    n_items = len(items) - 1
    in_batch = sorted(set(targets.tolist()))
    candidates = in_batch + negatives.tolist()
    out = []
    for h, t in zip(states, targets.tolist(), strict=True):
        terms, positive = [], None
        for col, c in enumerate(candidates):
            q = 1 - (1 - float(probs[c])) ** len(targets) + len(negatives) / n_items
            logit = float(h @ items[c]) / tau - math.log(q)
            if c == t and col < len(in_batch):
                positive = logit
            elif c == t:
                continue  # accidental hit among the uniform negatives
            terms.append(logit)
        top = max(terms)
        out.append(top + math.log(sum(math.exp(x - top) for x in terms)) - positive)
    return torch.tensor(out, dtype=torch.float64)


def test_sampled_softmax_matches_reference_with_accidental_hits():
    states, items, targets = _inputs(seed=1)
    targets[:4] = 5  # repeated targets: one in-batch column each
    negatives = torch.tensor([5, 1, 9, targets[6].item(), 30, 1])  # includes hits
    probs = torch.rand(N_ITEMS + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    probs[0] = 0
    probs /= probs.sum()
    got = sampled_softmax(states, targets, items, negatives, probs, temperature=0.5)
    _close(got, _sampled_reference(states.detach(), items.detach(), targets, negatives, probs, 0.5))


# ---- binary losses ----


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def test_bce_and_gbce_match_reference():
    states, items, targets = _inputs(seed=2)
    g = torch.Generator().manual_seed(4)
    negatives = torch.randint(1, N_ITEMS + 1, (N, 5), generator=g)
    negatives[0, 2] = targets[0]  # an accidental hit: ignored
    beta = gbce_beta(5, N_ITEMS, 0.75)
    assert 0 < beta < 1
    for got, b, negs in [
        (gbce(states, targets, items, negatives, t=0.75), beta, negatives),
        (bce(states, targets, items, negatives[:, :1]), 1.0, negatives[:, :1]),
    ]:
        ref = []
        items = items.detach()
        for h, t, row in zip(states.detach(), targets.tolist(), negs.tolist(), strict=True):
            value = -b * _log_sigmoid(float(h @ items[t]))
            value -= sum(_log_sigmoid(-float(h @ items[j])) for j in row if j != t)
            ref.append(value)
        _close(got, ref)


def test_gbce_beta_formula_edges():
    # t = 0 gives plain BCE (β = 1); k = n - 1 negatives (α = 1) gives β = 1 for any t
    assert gbce_beta(8, 100, 0.0) == pytest.approx(1.0)
    assert gbce_beta(99, 100, 0.75) == pytest.approx(1.0)
    alpha = 8 / 99
    assert gbce_beta(8, 100, 1.0) == pytest.approx(alpha)


def test_mml_matches_reference():
    states, items, targets = _inputs(seed=5)
    negatives = torch.randint(1, N_ITEMS + 1, (N, 4), generator=torch.Generator().manual_seed(6))
    negatives[1, 0] = targets[1]
    margins, weights = (0.0, 0.3), (1.0, 0.5)
    got = mml(states, targets, items, negatives, margins, weights)

    def cos(a, b):
        a, b = a.detach(), b.detach()
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    ref = []
    for h, t, row in zip(states.detach(), targets.tolist(), negatives.tolist(), strict=True):
        value = max(0.0, 1 - cos(h, items[t]))
        negs = [j for j in row if j != t]
        for m, w in zip(margins, weights, strict=True):
            value += w * sum(max(0.0, cos(h, items[j]) - m) for j in negs) / len(negs)
        ref.append(value)
    _close(got, ref)


@pytest.mark.parametrize("name", ["ce", "sampled", "bce", "gbce", "mml"])
def test_loss_function_returns_finite_per_example_losses(name):
    states, items, targets = _inputs(seed=7)
    probs = torch.full((N_ITEMS + 1,), 1 / N_ITEMS, dtype=torch.float64)
    probs[0] = 0
    loss = LossFunction(name, N_ITEMS, negatives=8, item_probs=probs)(states, targets, items)
    assert loss.shape == (N,) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(states.grad).all()


def test_loss_function_rejects_bad_options():
    with pytest.raises(ConfigError, match="unknown loss 'hinge'"):
        LossFunction("hinge", 10)
    with pytest.raises(ConfigError, match="--negatives"):
        LossFunction("gbce", 10, negatives=0)


# ---- the weighting contract ----


def test_unit_weights_give_exactly_the_unweighted_gradients():
    states, items, targets = _inputs(seed=8)
    s1, e1 = _grads(lambda: full_ce(states, targets, items).mean()[None], states, items)
    omega = torch.ones(N, dtype=torch.float64)
    s2, e2 = _grads(
        lambda: weighted_mean(full_ce(states, targets, items), omega, N)[None], states, items
    )
    assert torch.equal(s1, s2) and torch.equal(e1, e2)


def test_weights_scale_each_example():
    per_example = torch.tensor([1.0, 2.0, 3.0])
    assert weighted_mean(per_example, torch.tensor([2.0, 0.5, 1.0]), 3).item() == pytest.approx(
        (2 + 1 + 3) / 3
    )


# ---- the model ----


def _model(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=20, max_len=8, d_model=16, n_blocks=2, n_heads=2, dropout=0.0, **kw)
    return SeqRecModel(cfg).eval()


def test_model_is_causal_and_ignores_left_padding():
    model = _model()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        base = model.encode(seq)
        changed = seq.clone()
        changed[0, -1] = 19  # a later item must not change earlier states
        assert torch.allclose(model.encode(changed)[0, :-1], base[0, :-1], atol=1e-6)
        assert not torch.allclose(model.encode(changed)[0, -1], base[0, -1])
        shorter = torch.tensor([[3, 4, 5, 6, 7, 8]])  # same items, less padding
        assert torch.allclose(model.last_state(shorter), base[:, -1], atol=1e-5)
        assert torch.isfinite(base).all()  # fully padded attention rows give no NaN


def test_model_shapes_and_tied_scores():
    model = _model()
    seq = torch.randint(0, 21, (3, 8))
    seq[:, -1] = 1
    with torch.no_grad():
        assert model.encode(seq).shape == (3, 8, 16)
        assert model.item_embeddings().shape == (21, 16)
        assert model.last_state(torch.randint(1, 21, (2, 30))).shape == (2, 16)  # cut to max_len
        assert model.encode(torch.zeros(0, 8, dtype=torch.long)).shape == (0, 8, 16)


def test_model_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="d_model"):
        ModelConfig(n_items=5, d_model=10, n_heads=3)
    with pytest.raises(ConfigError, match="dropout"):
        ModelConfig(n_items=5, dropout=1.5)


# ---- training windows ----


def _sequences():
    rows = {  # user: [(item, split)], time-ordered
        0: [(1, "train"), (2, "train"), (3, "train"), (4, "train"), (5, "valid"), (6, "test")],
        1: [(7, "train"), (8, "valid"), (9, "test")],
        2: [(2, "train"), (3, "train"), (4, "valid"), (1, "test")],
    }
    users, items, splits = [], [], []
    for u, events in rows.items():
        for item, split in events:
            users.append(u)
            items.append(item)
            splits.append(split)
    table = pa.table(
        {
            "user_idx": pa.array(users, pa.int32()),
            "item_idx": pa.array(items, pa.int32()),
            "timestamp": pa.array(range(len(users)), pa.int64()),
            "split": splits,
        }
    )
    return UserSequences.from_interactions(table, n_items=9)


def test_windows_are_dense_next_item_and_match_valid_prefixes():
    seqs = _sequences()
    windows = TrainWindows(*seqs.train_sequences(), max_len=3)
    assert windows.users.tolist() == [0, 2]  # user 1 has one train item: no example
    inputs, targets = windows.batch(np.array([0, 2]))
    assert inputs.tolist() == [[1, 2, 3], [0, 0, 2]]
    assert targets.tolist() == [[2, 3, 4], [0, 0, 3]]
    _, prefix, valid_target = seqs.prefixes("valid", 3)
    # the last target of a user's train window is the last item of its valid prefix
    assert prefix[[0, 2], -1].tolist() == targets[:, -1].tolist()
    assert valid_target.tolist() == [5, 8, 4]


def test_epoch_batches_are_reproducible_and_shards_cover_the_batch():
    users = np.arange(10)
    a = epoch_batches(users, 4, seed=1, epoch=3)
    assert [b.tolist() for b in a] == [b.tolist() for b in epoch_batches(users, 4, 1, 3)]
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert [len(b) for b in a] == [4, 4, 2]
    parts = [shard(a[0], r, 2) for r in range(2)]
    assert np.concatenate(parts).tolist() == a[0].tolist()


def test_trimming_left_padding_changes_nothing_but_the_width():
    inputs = np.array([[0, 0, 0, 4, 5], [0, 0, 2, 3, 4]])
    targets = np.array([[0, 0, 0, 5, 6], [0, 0, 3, 4, 5]])
    short_inputs, short_targets = trim_left_padding(inputs, targets)
    assert short_inputs.tolist() == [[0, 4, 5], [2, 3, 4]]
    assert short_targets.tolist() == [[0, 5, 6], [3, 4, 5]]
    model = _model()
    with torch.no_grad():
        full = model.encode(torch.from_numpy(inputs))
        short = model.encode(torch.from_numpy(short_inputs))
    assert torch.allclose(full[:, 2:], short, atol=1e-5)


def test_length_buckets_group_similar_lengths_and_keep_every_user():
    users = np.arange(40)
    lengths = np.random.default_rng(0).integers(1, 100, size=40)
    batches = epoch_batches(users, 4, seed=0, epoch=1, lengths=lengths, bucket=5)
    assert sorted(np.concatenate(batches).tolist()) == users.tolist()
    again = epoch_batches(users, 4, seed=0, epoch=1, lengths=lengths, bucket=5)
    assert [b.tolist() for b in batches] == [b.tolist() for b in again]
    # within a batch lengths are close: the spread is far below the plain shuffle's
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    plain = np.mean([np.ptp(lengths[b]) for b in epoch_batches(users, 4, 0, 1)])
    assert spread < plain / 2
