"""Item → domain incidence for the per-example weights: the catalogue's item domains as CSR
(``offsets``, ``codes``) and as a padded matrix, one row per item, for gathers by target.

Domain codes are positions in weights.json's ``domains``. Item 0 is the padding item (no domains);
a real item without domains belongs to ``(none)`` (SPEC §2); an item listing a domain twice counts
it once. Pure numpy: importing this module never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.errors import ConfigError
from components.schema import NO_DOMAIN

NO_CODE = -1  # a padded slot of ``ItemDomains.padded``: no domain


def normalise_item_domains(item_domains: list[list[str]]) -> list[list[str]]:
    """Distinct domains per item; a real item without domains belongs to '(none)' (SPEC §2)."""
    out: list[list[str]] = [[]]
    for domains in item_domains[1:]:
        out.append(list(dict.fromkeys(domains)) if domains else [NO_DOMAIN])
    return out


@dataclass(frozen=True)
class ItemDomains:
    """CSR item → domain codes: item i's codes are ``codes[offsets[i]:offsets[i + 1]]``."""

    offsets: np.ndarray  # [n_items + 2] int64
    codes: np.ndarray  # [pairs] int64, positions in ``domains``
    n_domains: int

    @classmethod
    def from_lists(cls, item_domains: list[list[str]], domains: list[str]) -> ItemDomains:
        """From the dataset's item → domain names (index 0 = padding); ConfigError when an item
        names a domain ``domains`` lacks (weights.json of another dataset)."""
        if not item_domains or item_domains[0]:
            raise ConfigError("item_domains: index 0 must be the padding item with no domains")
        code = {d: i for i, d in enumerate(domains)}
        normalised = normalise_item_domains(item_domains)
        unknown = sorted({d for ds in normalised for d in ds if d not in code})
        if unknown:
            raise ConfigError(
                f"item_domains: domain(s) {unknown[:10]} are not in weights.json "
                f"(it was computed on another dataset?); weights.json has {domains}"
            )
        lengths = np.array([len(ds) for ds in normalised], dtype=np.int64)
        offsets = np.zeros(len(normalised) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        codes = np.array([code[d] for ds in normalised for d in ds], dtype=np.int64)
        return cls(offsets, codes, len(domains))

    @property
    def n_items(self) -> int:
        return len(self.offsets) - 2

    @property
    def lengths(self) -> np.ndarray:
        """Domains per item_idx [n_items + 1] (0 for the padding item)."""
        return np.diff(self.offsets)

    def pairs_of(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``items``, domain code) of every domain of every item in ``items``:
        the CSR rows of ``items`` concatenated, without a per-item loop."""
        items = np.asarray(items, dtype=np.int64)
        lengths = self.lengths[items]
        owner = np.repeat(np.arange(len(items)), lengths)
        # each pair's offset inside its item's row: 0, 1, … per item
        within = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return owner, self.codes[np.repeat(self.offsets[items], lengths) + within]

    def padded(self, keep: np.ndarray | None = None) -> np.ndarray:
        """[n_items + 1, m] domain codes per item, ``NO_CODE`` in unused slots (m = the most
        domains of an item, at least 1). ``keep`` (bool per domain): only those domains."""
        owner, codes = self.pairs_of(np.arange(self.n_items + 1))
        if keep is not None:
            kept = np.asarray(keep, dtype=bool)[codes]
            owner, codes = owner[kept], codes[kept]
        lengths = np.bincount(owner, minlength=self.n_items + 1)
        width = max(1, int(lengths.max(initial=0)))
        slot = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out = np.full((self.n_items + 1, width), NO_CODE, dtype=np.int64)
        out[owner, slot] = codes
        return out


__all__ = ["NO_CODE", "ItemDomains", "normalise_item_domains"]
