"""The one ``--units`` grammar of every command (``extract``, ``evaluate slm``, ``lm units``, the demo).

``codebook`` (the codebook argmax of the layers asked), ``codebook:L`` (of layer ``L``), ``kmeans:FILE``
(the nearest of the centroids in ``FILE``) and ``phones`` (the gold phones of an aligned corpus). Each
command says which kinds it accepts; what a kind then needs (a codebook layer, centroids fitted on the same
encoder) is checked by the command, which knows the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spidrkit.errors import InputError

KINDS = ("codebook", "kmeans", "phones")
FORMS = {"codebook": "codebook or codebook:L (a layer)", "kmeans": "kmeans:FILE (centroids)",
         "phones": "phones (gold phones)"}


@dataclass(frozen=True)
class UnitsSyntax:
    """What a ``--units`` text says: its kind, the layer of ``codebook:L`` and the path of ``kmeans:FILE``."""

    kind: str
    layer: int | None = None
    path: str | None = None
    text: str = ""


def parse_unit_syntax(text: str, accepted: Sequence[str] = KINDS,
                      error: type[InputError] = InputError) -> UnitsSyntax:
    """``text`` read by the grammar above, or ``error`` naming the forms ``accepted`` here."""
    kind, sep, rest = text.strip().partition(":")
    syntax = None
    if kind == "codebook" and not sep:
        syntax = UnitsSyntax("codebook", text=text)
    elif kind == "codebook" and rest:
        if not rest.isdigit() or int(rest) < 1:
            raise error(f"--units codebook:L takes a layer number >= 1, got {text!r}")
        syntax = UnitsSyntax("codebook", layer=int(rest), text=text)
    elif kind == "kmeans" and rest:
        syntax = UnitsSyntax("kmeans", path=rest, text=text)
    elif kind == "phones" and not sep:
        syntax = UnitsSyntax("phones", text=text)
    if syntax is None or syntax.kind not in accepted:
        raise error(f"--units must be {', '.join(FORMS[k] for k in accepted)}; got {text!r}")
    return syntax
