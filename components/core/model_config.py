"""The model's options (``ModelConfig``): a plain dataclass, importable without torch, so that
a CLI can take its defaults from here (the model itself: ``components.core.model``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from components.errors import ConfigError
from components.options import Checked


@dataclass
class ModelConfig(Checked):
    n_items: int  # catalogue size; item_idx runs 1..n_items, 0 is padding
    max_len: int = 200  # longest input sequence (older items are cut off)
    d_model: int = 64
    n_blocks: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    ff_mult: int = 4  # feed-forward hidden size = ff_mult * d_model
    # the recipe (issue 13): where LayerNorm sits, the input embedding, the initialisation
    # (defaults: SASRec's reference code, measured best on ML-100K and Beauty: README)
    norm: str = "post"  # post: LN(x + f(x)) (SASRec, BERT) | pre: x + f(LN(x)) and a final LN
    emb_norm: bool = True  # LayerNorm on item + position embeddings (before their dropout)
    scale_emb: bool = False  # multiply the item embeddings by √d_model at the input
    init_std: float = 0.02  # > 0: every Linear/Embedding N(0, init_std), biases 0;
    # 0: item embeddings N(0, d^-½), positions N(0, 0.02), Linear torch's default
    # aux-domain (SPEC §5): classes of the next-domain head; 0 = no head. Like n_items it comes
    # from the dataset (train's --aux-domain > 0), never an option of its own
    n_domains: int = 0

    def validate(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"--norm: unknown norm {self.norm!r}; choose one of {list(NORMS)}")
        for name in ("emb_norm", "scale_emb"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"--{name.replace('_', '-')}: expected true or false, got "
                    f"{getattr(self, name)!r}"
                )
        if isinstance(self.init_std, bool) or not isinstance(self.init_std, int | float):
            raise ConfigError(f"--init-std: expected a number, got {self.init_std!r}")
        if not 0 <= self.init_std < 1:
            raise ConfigError(
                f"--init-std: must be in [0, 1) (0 = the default init), got {self.init_std}"
            )
        if isinstance(self.n_domains, bool) or not isinstance(self.n_domains, int):
            raise ConfigError(f"n_domains: expected an integer, got {self.n_domains!r}")
        checks = {
            "n_items": self.n_items >= 1,
            "n_domains": self.n_domains >= 0,
            "max_len": self.max_len >= 1,
            "d_model": self.d_model >= 1 and self.d_model % max(self.n_heads, 1) == 0,
            "n_blocks": self.n_blocks >= 1,
            "n_heads": self.n_heads >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "ff_mult": self.ff_mult >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid model option(s) {bad} in {self} "
                "(d_model must be a multiple of n_heads, 0 <= dropout < 1)"
            )

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """The config a config.json ``model`` section describes; a recipe field it lacks (a model
        trained before the field existed) takes the value that model was built with (no domain
        head: ``n_domains`` defaults to 0)."""
        known = {f.name for f in fields(cls)}
        return cls(**{**BEFORE_RECIPE, **{k: v for k, v in values.items() if k in known}})


NORMS = ("pre", "post")
# the fields the dataset decides, not the user (train's options are the other fields)
DERIVED = ("n_items", "n_domains")
# the architecture of models saved before the recipe fields were recorded
BEFORE_RECIPE = {"norm": "pre", "emb_norm": False, "scale_emb": True, "init_std": 0.0}
