"""The token vocabulary of a unit language model: units ``0..k-1`` plus three special tokens.

Token ids: ``pad = 0``, ``bos = 1``, ``eos = 2``, unit ``u`` -> ``u + 3``. An utterance of units
``u_1 .. u_n`` (de-duplicated first when ``dedup``: runs of one unit collapse to one token, as in the
paper) is the sequence ``bos u_1 .. u_n eos``. The LM predicts every token after ``bos``: the ``n`` units
and ``eos``; a log-likelihood sums those ``n + 1`` terms, and its token-normalised form divides by
``n + 1``. ``bos`` is given, never predicted; ``pad`` is never predicted nor counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from spidrkit.errors import InputError
from spidrkit.io import write_json_atomic
from spidrkit.text_in import parse_json, read_text

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3
VOCAB_NAME = "vocab.json"


class VocabError(InputError):
    """Units that do not fit the vocabulary, or a vocabulary file that cannot be read."""


def dedup(units: Iterable[int]) -> list[int]:
    """Runs of one unit collapsed to one: ``[3, 3, 5, 3] -> [3, 5, 3]``."""
    out: list[int] = []
    for u in units:
        if not out or out[-1] != u:
            out.append(int(u))
    return out


@dataclass(frozen=True)
class UnitVocab:
    """``k`` units and whether utterances are de-duplicated before the LM sees them."""

    k: int
    dedup: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise VocabError(f"the number of units k must be an integer >= 1, got {self.k!r}")

    @property
    def size(self) -> int:
        """Token ids in all: ``k + 3``."""
        return self.k + OFFSET

    def encode(self, units: Sequence[int], where: str = "an utterance") -> list[int]:
        """``bos``, the (de-duplicated) units as tokens, ``eos``."""
        seq = dedup(units) if self.dedup else [int(u) for u in units]
        bad = [u for u in seq if not 0 <= u < self.k]
        if bad:
            raise VocabError(f"{where}: units {sorted(set(bad))[:5]} outside 0..{self.k - 1} (k = {self.k})")
        return [BOS, *(u + OFFSET for u in seq), EOS]

    def decode(self, tokens: Sequence[int]) -> list[int]:
        """The units of a token sequence (special tokens dropped)."""
        return [t - OFFSET for t in tokens if t >= OFFSET]

    def save(self, folder: str | os.PathLike) -> Path:
        return write_json_atomic(Path(folder) / VOCAB_NAME, {**asdict(self), "pad": PAD, "bos": BOS, "eos": EOS,
                                                             "offset": OFFSET})

    @classmethod
    def load(cls, folder: str | os.PathLike) -> UnitVocab:
        path = Path(folder) / VOCAB_NAME
        if not path.is_file():
            raise VocabError(f"{path}: no vocabulary (a unit LM run folder holds {VOCAB_NAME})")
        data = parse_json(read_text(path, VocabError), str(path), VocabError)
        if not isinstance(data, dict) or not isinstance(data.get("k"), int) or isinstance(data["k"], bool) \
                or data["k"] < 1:
            raise VocabError(f"{path}: not a unit LM vocabulary (a JSON object with k >= 1)")
        if (data.get("pad"), data.get("bos"), data.get("eos"), data.get("offset")) != (PAD, BOS, EOS, OFFSET):
            raise VocabError(f"{path}: special tokens differ from this spidrkit's (pad 0, bos 1, eos 2, offset 3)")
        return cls(data["k"], bool(data.get("dedup", True)))
