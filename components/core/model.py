"""The sequential recommender (SPEC §6): a causal transformer over a user's item sequence.

SASRec / PinnerFormer style: item embedding (row 0 = padding) + learned position embedding
(optionally √d-scaled, optionally LayerNorm'd), blocks of causal multi-head self-attention and a
GELU feed-forward with LayerNorm before each sublayer and a final one (``norm="pre"``) or after
each residual (``"post"``, SASRec's reference code). The state h_t at position t scores every
item i by h_t · e_i with the same (tied) item embeddings. With ``n_domains`` > 0 (train's
``--aux-domain``, SPEC §5) a linear domain head also predicts the next item's domain from h_t.

Sequences are LEFT-padded with item 0, so the most recent item is always the last column and
gets the last position embedding, in training and at inference alike. The model dir (model.pt,
config.json) is read and written by ``components.core.model_artifact``; ``ModelConfig`` lives in
``components.core.model_config`` (torch-free) and is importable from here too.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from components.core.model_config import ModelConfig


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout
        # no bias: a key bias has an exactly-zero gradient (softmax ignores it), which only
        # feeds noise to Adam
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # each [B, L, d]
        q, k, v = (t.view(B, L, self.n_heads, d // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(  # [B, heads, L, d/heads]
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(B, L, d))


class FeedForward(nn.Module):
    """d → ff_mult·d → d with GELU; the block applies the dropout after it (once, as SASRec's
    reference code and nanoGPT do: a second one inside doubled the noise at dropout 0.5)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.ff_mult * cfg.d_model)
        self.down = nn.Linear(cfg.ff_mult * cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


def layer_norm(cfg: ModelConfig) -> nn.LayerNorm:
    """A LayerNorm with the layout's eps: torch's 1e-5 (pre), the SASRec/BERT code's 1e-12 (post)."""
    return nn.LayerNorm(cfg.d_model, eps=1e-12 if cfg.norm == "post" else 1e-5)


class Block(nn.Module):
    """A transformer block. pre: x + attn(LN(x)), then x + ffn(LN(x)).
    post (SASRec's reference code): LN(x + attn(x)), then LN(x + ffn(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.post_norm = cfg.norm == "post"
        self.norm_attn = layer_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.norm_ff = layer_norm(cfg)
        self.ff = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.norm_attn(x + self.drop(self.attn(x, allowed)))
            return self.norm_ff(x + self.drop(self.ff(x)))
        x = x + self.drop(self.attn(self.norm_attn(x), allowed))
        return x + self.drop(self.ff(self.norm_ff(x)))


class SeqRecModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.item_embedding = nn.Embedding(cfg.n_items + 1, cfg.d_model, padding_idx=0)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.d_model)
        self.emb_norm = layer_norm(cfg) if cfg.emb_norm else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        # post-norm blocks end in a LayerNorm already
        self.final_norm = layer_norm(cfg) if cfg.norm == "pre" else nn.Identity()
        self.input_scale = cfg.d_model**0.5 if cfg.scale_emb else 1.0
        self._init_weights()
        # aux-domain: made and initialised after the rest, so that the other parameters start
        # from the same values for a seed with and without the head
        self.domain_head = nn.Linear(cfg.d_model, cfg.n_domains) if cfg.n_domains else None
        if self.domain_head is not None and cfg.init_std > 0:
            nn.init.normal_(self.domain_head.weight, std=cfg.init_std)
            nn.init.zeros_(self.domain_head.bias)

    def _init_weights(self) -> None:
        cfg = self.cfg
        if cfg.init_std > 0:  # the reference: every Linear and Embedding N(0, std), biases 0
            for module in self.modules():
                if isinstance(module, nn.Linear | nn.Embedding):
                    nn.init.normal_(module.weight, std=cfg.init_std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        else:
            nn.init.normal_(self.item_embedding.weight, std=cfg.d_model**-0.5)
            nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        """item_seq [B, L] (left-padded with 0, L <= max_len) → user states [B, L, d]."""
        B, L = item_seq.shape
        is_item = item_seq != 0  # [B, L]
        # key j is visible from query i if j <= i and j is an item; a padded query sees itself
        # only, so no attention row is empty (an empty row would give NaN); its output is unused.
        causal = torch.ones(L, L, dtype=torch.bool, device=item_seq.device).tril()  # [L, L]
        allowed = causal & is_item[:, None, :]  # [B, L, L]
        allowed = allowed | torch.eye(L, dtype=torch.bool, device=item_seq.device)
        allowed = allowed[:, None]  # [B, 1, L, L], broadcast over heads

        positions = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=item_seq.device)
        x = self.item_embedding(item_seq) * self.input_scale  # [B, L, d]
        x = self.drop(self.emb_norm(x + self.position_embedding(positions)))  # [B, L, d]
        keep = is_item[..., None].to(x.dtype)  # [B, L, 1]
        x = x * keep
        for block in self.blocks:
            x = block(x, allowed) * keep  # padded positions stay exactly 0
        return self.final_norm(x)  # [B, L, d]

    def forward(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Same as ``encode`` (so DDP and torch.compile wrap it)."""
        return self.encode(item_seq)

    def item_embeddings(self) -> torch.Tensor:
        """[n_items + 1, d]; row 0 is padding. Scores are states @ item_embeddings().T."""
        return self.item_embedding.weight

    def domain_logits(self, states: torch.Tensor) -> torch.Tensor:
        """states [..., d] → next-domain logits [..., n_domains] (the head's classes: the
        domain list config.json records)."""
        if self.domain_head is None:
            raise ValueError("this model has no domain head (trained without --aux-domain)")
        return self.domain_head(states)

    def last_state(self, prefix: torch.Tensor) -> torch.Tensor:
        """prefix [B, L] (left-padded, most recent item last) → state after it [B, d]."""
        prefix = prefix[:, -self.cfg.max_len :]
        return self.encode(prefix)[:, -1, :]


def model_config_dict(cfg: ModelConfig) -> dict:
    """``cfg`` as config.json's ``model`` section."""
    return asdict(cfg)
