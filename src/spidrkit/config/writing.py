"""A config out: a nested dict of plain values (stored in checkpoints) and TOML (``config.toml`` of a run).

Both carry ``variant``, derived from the switches (:attr:`Config.variant <spidrkit.config.Config.variant>`),
for readers; reading checks it against the switches (:mod:`spidrkit.config.reading`).
"""

from __future__ import annotations

import dataclasses
from typing import Any


def to_dict(cfg: Any) -> dict[str, Any]:
    """``{"variant": ..., section: {key: value}}`` with tuples as lists."""
    out: dict[str, Any] = {"variant": cfg.variant}
    for f in dataclasses.fields(cfg):
        section = dataclasses.asdict(getattr(cfg, f.name))
        out[f.name] = {k: (list(x) if isinstance(x, tuple) else x) for k, x in section.items()}
    return out


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def toml_sections(sections: dict[str, dict[str, Any]]) -> str:
    """``{section: {key: value}}`` as TOML tables, a blank line between them."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"{chr(10) if lines else ''}[{section}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def to_toml(cfg: Any) -> str:
    d = to_dict(cfg)
    return f"variant = {toml_value(d.pop('variant'))}\n\n" + toml_sections(d)
