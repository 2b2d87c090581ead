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

    def validate(self) -> None:
        checks = {
            "n_items": self.n_items >= 1,
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
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
