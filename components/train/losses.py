"""Next-item losses (SPEC §6). Each returns a PER-EXAMPLE loss [N] so domain weights ω can scale it.

Inputs everywhere: ``states`` [N, d] (the user state at each non-padded position), ``targets`` [N]
(the next item there, 1..n_items) and ``item_embeddings`` [n_items + 1, d] (row 0 = padding,
never a candidate). The batch loss is ``weighted_mean``: Σ ω·ℓ / N, so ω = 1 is the plain mean.
The aux-domain term (``DomainLoss``, train's --aux-domain λ) adds λ·ℓ_domain per example, the
cross-entropy of a domain head against the target item's domains.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from components.errors import ConfigError
from components.options import Checked
from components.schema import NO_DOMAIN
from components.train.config import LOSSES

NEGATIVE_LOSSES = ("sampled", "gbce", "mml")  # the losses that draw --negatives uniform items


def weighted_mean(
    per_example: torch.Tensor, omega: torch.Tensor, count: int | float
) -> torch.Tensor:
    """Σ ω·ℓ / count (SPEC §5). ``count`` = number of examples (global, under DDP)."""
    return (omega * per_example).sum() / count


# ---- ce: full softmax over the catalogue, in (row, item) chunks so memory stays bounded ----


# (logits per block, items per block) of the chunked softmax by device. A CPU's block stays in
# its core's cache (2 MiB of float32), so the exp and sums after each product read it from there
# rather than from memory: 1.4-1.7x faster than 16 MiB blocks at Beauty's 12,101 items
# (benchmarks/ce_kernel.py). A GPU wants few, large blocks (one kernel launch each).
CE_BLOCKS: dict[str, tuple[int, int]] = {"cpu": (1 << 19, 4096), "cuda": (1 << 22, 1 << 22)}


def ce_blocks(device_type: str) -> tuple[int, int]:
    """The default (max_logits, max_cols) of ``full_ce`` on a device type."""
    return CE_BLOCKS.get(device_type, CE_BLOCKS["cuda"])


def _blocks(n_rows: int, n_cols: int, max_logits: int, max_cols: int | None = None):
    cols = max(1, min(n_cols, max_logits, max_cols or n_cols))
    rows = max(1, max_logits // cols)
    for r in range(0, n_rows, rows):
        for c in range(0, n_cols, cols):
            yield slice(r, r + rows), slice(c, c + cols)


class _ChunkedLogSumExp(torch.autograd.Function):
    """logsumexp_j(states @ items.T) per row without ever holding the [N, n_items] matrix.

    The backward pass recomputes each chunk's softmax instead of storing it.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, states, items, max_logits, max_cols):
        acc = torch.float64 if states.dtype == torch.float64 else torch.float32
        # the products in autocast's dtype when it is on (bf16 on a CPU too), forward and
        # backward alike; the softmax's sums always in float32 (or float64)
        device_type = states.device.type
        if torch.is_autocast_enabled(device_type):
            mm = torch.get_autocast_dtype(device_type)
        else:
            mm = torch.promote_types(states.dtype, items.dtype)
        lse = torch.full((states.shape[0],), -math.inf, dtype=acc, device=states.device)
        states_mm, items_mm = states.to(mm), items.to(mm)
        for rows, cols in _blocks(states.shape[0], items.shape[0], max_logits, max_cols):
            logits = (states_mm[rows] @ items_mm[cols].T).to(acc)  # [r, c]
            lse[rows] = torch.logaddexp(lse[rows], logits.logsumexp(dim=1))
        ctx.save_for_backward(states, items, lse)
        ctx.blocks, ctx.mm = (max_logits, max_cols), mm
        return lse

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_lse):
        states, items, lse = ctx.saved_tensors
        mm = ctx.mm
        states_mm, items_mm = states.to(mm), items.to(mm)
        grad_states = torch.zeros_like(states, dtype=lse.dtype)
        grad_items = torch.zeros_like(items, dtype=lse.dtype)
        for rows, cols in _blocks(states.shape[0], items.shape[0], *ctx.blocks):
            logits = (states_mm[rows] @ items_mm[cols].T).to(lse.dtype)  # [r, c]
            # d lse / d logits = softmax; scaled by the incoming gradient of each row
            p = (torch.exp(logits - lse[rows, None]) * grad_lse[rows, None].to(lse.dtype)).to(mm)
            grad_states[rows] += p @ items_mm[cols]
            grad_items[cols] += p.T @ states_mm[rows]
        return grad_states.to(states.dtype), grad_items.to(items.dtype), None, None


def full_ce(
    states, targets, item_embeddings, max_logits: int | None = None, max_cols: int | None = None
) -> torch.Tensor:
    """Cross-entropy over all items 1..n_items: logsumexp_j s_j - s_target. [N]. Computed in
    blocks of at most ``max_logits`` logits and ``max_cols`` items (default: ``ce_blocks``)."""
    default_logits, default_cols = ce_blocks(states.device.type)
    blocks = (max_logits or default_logits, max_cols or (None if max_logits else default_cols))
    lse = _ChunkedLogSumExp.apply(states, item_embeddings[1:], *blocks)  # [N]
    target_logits = (states * item_embeddings[targets]).sum(dim=-1)  # [N]
    return lse - target_logits.to(lse.dtype)


# ---- sampled softmax with log-Q correction (in-batch + uniform negatives) ----


def sampled_softmax(
    states, targets, item_embeddings, negatives, item_probs, temperature: float = 1.0
) -> torch.Tensor:
    """Candidates = the distinct targets of the batch + ``negatives`` [R] uniform items.

    logit = ⟨h, e⟩/τ − log Q(item), Q(item) = the expected number of times the item is a
    candidate: P(item among the N in-batch targets) + R/n_items, with in-batch items drawn by
    their train frequency ``item_probs`` [n_items + 1]. A candidate equal to the target other
    than the target's own column (an accidental hit) is masked out. Returns [N].
    """
    n_items = item_embeddings.shape[0] - 1
    in_batch = torch.unique(targets)  # [U], sorted
    candidates = torch.cat([in_batch, negatives])  # [C]
    p = item_probs[candidates].to(torch.float64)
    expected = -torch.expm1(len(targets) * torch.log1p(-p.clamp(max=1 - 1e-12)))
    log_q = torch.log(expected + len(negatives) / n_items)  # [C]

    logits = states @ item_embeddings[candidates].T / temperature  # [N, C]
    logits = logits - log_q.to(logits.dtype)
    rows = torch.arange(len(targets), device=targets.device)
    target_col = torch.searchsorted(in_batch, targets)  # [N]
    hit = candidates[None, :] == targets[:, None]  # [N, C]
    hit[rows, target_col] = False
    logits = logits.masked_fill(hit, -math.inf)
    return logits.logsumexp(dim=1) - logits[rows, target_col]


# ---- binary losses with sampled negatives ----


def _pair_logits(states, item_embeddings, items):
    """states [N, d], items [N, k] → ⟨h_n, e_items[n, j]⟩ [N, k]."""
    return torch.einsum("nd,nkd->nk", states, item_embeddings[items])


def bce(states, targets, item_embeddings, negatives) -> torch.Tensor:
    """SASRec: −log σ(s⁺) − log(1 − σ(s⁻)), one negative per position (negatives [N, 1])."""
    return gbce(states, targets, item_embeddings, negatives, t=None)


def gbce_beta(k: int, n_items: int, t: float) -> float:
    """gSASRec calibration: β = α(t(1 − 1/α) + 1/α), α = k / (n_items − 1)."""
    alpha = k / max(n_items - 1, 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def gbce(states, targets, item_embeddings, negatives, t: float | None = 0.75) -> torch.Tensor:
    """gSASRec: −β·log σ(s⁺) − Σ_k log(1 − σ(s⁻_k)), negatives [N, k]; t=None → β = 1 (BCE).

    A negative equal to the target is an accidental hit and contributes nothing.
    """
    n_items = item_embeddings.shape[0] - 1
    beta = 1.0 if t is None else gbce_beta(negatives.shape[1], n_items, t)
    pos = (states * item_embeddings[targets]).sum(dim=-1)  # [N]
    neg = _pair_logits(states, item_embeddings, negatives)  # [N, k]
    real = (negatives != targets[:, None]).to(neg.dtype)
    # −log σ(x) = softplus(−x); −log(1 − σ(x)) = softplus(x)
    return beta * F.softplus(-pos) + (F.softplus(neg) * real).sum(dim=-1)


def mml(
    states,
    targets,
    item_embeddings,
    negatives,
    margins=(0.0, 0.3, 0.6),
    margin_weights=(1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Multi-margin loss on cosine scores: ReLU(1 − cos⁺) + Σ_m w_m · mean_k ReLU(cos⁻_k − m)."""
    h = F.normalize(states, dim=-1)
    e = F.normalize(item_embeddings, dim=-1)
    cos_pos = (h * e[targets]).sum(dim=-1)  # [N]
    cos_neg = _pair_logits(h, e, negatives)  # [N, k]
    real = (negatives != targets[:, None]).to(cos_neg.dtype)
    n_real = real.sum(dim=-1).clamp(min=1)
    loss = F.relu(1 - cos_pos)
    for margin, weight in zip(margins, margin_weights, strict=True):
        loss = loss + weight * (F.relu(cos_neg - margin) * real).sum(dim=-1) / n_real
    return loss


@dataclass
class LossFunction(Checked):
    """The configured base loss: (states, targets, item_embeddings) → per-example loss [N].

    Draws its negatives from torch's global RNG (seeded and checkpointed by the trainer).
    """

    name: str
    n_items: int
    negatives: int = 128  # R for sampled, k for gbce/mml (bce always uses 1)
    temperature: float = 1.0  # sampled
    gbce_t: float = 0.75
    mml_margins: tuple[float, ...] = (0.0, 0.3, 0.6)
    mml_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    item_probs: torch.Tensor | None = None  # [n_items + 1] train frequencies (sampled only)
    max_logits: int | None = None  # ce block size in logits; None: by device (ce_blocks)

    def validate(self) -> None:
        if self.name not in LOSSES:
            raise ConfigError(f"--loss: unknown loss {self.name!r}; choose one of {list(LOSSES)}")
        if isinstance(self.negatives, bool) or not isinstance(self.negatives, numbers.Integral):
            raise ConfigError(f"--negatives: expected an integer, got {self.negatives!r}")
        if self.negatives < 1:
            raise ConfigError(f"--negatives must be >= 1, got {self.negatives}")
        if self.name in NEGATIVE_LOSSES and self.negatives > self.n_items:
            # drawn uniformly from the catalogue: more than it holds is a typo, not a setting
            # (and a huge R or k would only fail later, allocating the negatives)
            raise ConfigError(
                f"--negatives {self.negatives}: more than the catalogue's {self.n_items} items; "
                f"--loss {self.name} draws its negatives from them: use 1..{self.n_items}"
            )
        if not math.isfinite(self.temperature) or not self.temperature > 0:
            raise ConfigError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if not 0.0 <= self.gbce_t <= 1.0:
            raise ConfigError(f"--gbce-t must be in [0, 1], got {self.gbce_t}")
        if len(self.mml_margins) != len(self.mml_weights):
            raise ConfigError("--mml-margins and --mml-weights must have the same length")

    def __call__(self, states, targets, item_embeddings) -> torch.Tensor:
        device = states.device
        if self.name == "ce":
            return full_ce(states, targets, item_embeddings, self.max_logits)
        if self.name == "sampled":
            negatives = torch.randint(1, self.n_items + 1, (self.negatives,), device=device)
            return sampled_softmax(
                states, targets, item_embeddings, negatives, self.item_probs, self.temperature
            )
        k = 1 if self.name == "bce" else self.negatives
        negatives = torch.randint(1, self.n_items + 1, (len(targets), k), device=device)
        if self.name == "bce":
            return bce(states, targets, item_embeddings, negatives)
        if self.name == "gbce":
            return gbce(states, targets, item_embeddings, negatives, self.gbce_t)
        return mml(states, targets, item_embeddings, negatives, self.mml_margins, self.mml_weights)


# ---- aux-domain: the next item's domain from the user state (SPEC §5 "Beyond DWL") ----


@dataclass(frozen=True)
class DomainTargets:
    """The soft next-domain target of every item: uniform over its domains, built once.

    Stored as [n_items + 1, K] (K = the most domains an item has): ``codes`` the item's domain
    classes, ``mass`` 1/|domains(i)| in the item's slots and 0 in the padding slots and in row 0
    (the padding item) — the rows of the [n_items + 1, n_domains] matrix, without its zeros.
    """

    domains: list[str]  # the head's classes, in order (config.json ``domain_classes``)
    codes: torch.Tensor  # [n_items + 1, K] int64
    mass: torch.Tensor  # [n_items + 1, K] float32

    def to(self, device: torch.device | str) -> DomainTargets:
        return DomainTargets(self.domains, self.codes.to(device), self.mass.to(device))

    def dense(self) -> torch.Tensor:
        """The [n_items + 1, n_domains] soft-target matrix (row 0 = 0; the others sum to 1)."""
        matrix = torch.zeros(self.codes.shape[0], len(self.domains), dtype=self.mass.dtype)
        return matrix.scatter_add_(1, self.codes.cpu(), self.mass.cpu())


def domain_targets(item_domains: list[list[str]]) -> DomainTargets:
    """``item_domains`` (position i = item_idx i, position 0 the padding item: ``[]``) → the soft
    targets. An item without domains is in '(none)', its own class (as in the weighting, SPEC §2);
    the classes are the domains that occur, sorted by name."""
    per_item = [list(dict.fromkeys(ds)) or [NO_DOMAIN] for ds in item_domains[1:]]
    domains = sorted({d for ds in per_item for d in ds})
    code = {d: c for c, d in enumerate(domains)}
    width = max((len(ds) for ds in per_item), default=1)
    codes = np.zeros((len(item_domains), width), dtype=np.int64)
    mass = np.zeros((len(item_domains), width), dtype=np.float32)
    for item, ds in enumerate(per_item, start=1):
        codes[item, : len(ds)] = [code[d] for d in ds]
        mass[item, : len(ds)] = 1.0 / len(ds)
    return DomainTargets(domains, torch.from_numpy(codes), torch.from_numpy(mass))


def domain_ce(logits: torch.Tensor, targets: torch.Tensor, soft: DomainTargets) -> torch.Tensor:
    """Cross-entropy of softmax(``logits`` [N, n_domains]) against the soft targets of the items
    ``targets`` [N]: −Σ_d T_{i,d} log p_d = logsumexp(z) − Σ_d T_{i,d} z_d (Σ_d T_{i,d} = 1). [N]."""
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    z = logits.to(acc)
    expected = (z.gather(1, soft.codes[targets]) * soft.mass[targets].to(acc)).sum(dim=1)  # [N]
    return z.logsumexp(dim=1) - expected


@dataclass
class DomainLoss:
    """The aux-domain term: the batch loss is Σ(ω·ℓ_item + λ·ℓ_domain) / N.

    ℓ_domain is NOT weighted by ω: ω re-weights the next-item loss to shift its per-domain prior
    toward sparse domains; the domain labels are dense even where items are sparse, and the head
    only shapes the shared user state, so an unweighted term keeps λ meaning the same under every
    scheme (a variant's λ is comparable with another's). Sums the per-example losses it computes
    (detached, this process's share) for the epoch's mean in train_log.jsonl.
    """

    weight: float  # λ > 0
    targets: DomainTargets
    _sum: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The per-example ℓ_domain [N] of the head's ``logits`` [N, n_domains]."""
        per_example = domain_ce(logits, targets, self.targets)
        total = per_example.detach().double().sum()
        self._sum = total if self._sum is None else self._sum + total
        return per_example

    def take_sum(self) -> float:
        """Σ ℓ_domain since the last call (this process's examples); resets it."""
        total, self._sum = self._sum, None
        return 0.0 if total is None else float(total.item())


def train_item_probs(train_item_idx: np.ndarray, n_items: int) -> torch.Tensor:
    """Item frequencies in the train split, [n_items + 1] float64 (row 0 = 0): Q for `sampled`."""
    counts = np.bincount(train_item_idx, minlength=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    return torch.from_numpy(counts / max(counts.sum(), 1.0))
