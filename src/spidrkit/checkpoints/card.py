"""The model card of a pushed model: the ``README.md`` of its Hub repo (``docs/hub.md``).

YAML front matter for the Hub (``library_name: spidrkit``, tags), then: the model (variant, architecture,
parameters), its training (steps, hours of training time when the run recorded them), its weights (the SHA-256
of ``model.safetensors`` and the model id that the sidecars of its outputs will carry), its provenance (the
checkpoint it was written from), the figures of the evaluation reports given, how to load it, and the full
config (TOML).

Reports (:func:`read_report`) are ``report.json`` files of spidrkit (``docs/formats.md``):

- a layer sweep (``spidrkit evaluate sweep``, the demo): the best layer by mean ABX (ABX within and across
  speakers, word MAP), and the unit source with the best PNMI (with its ABX);
- an sLM evaluation (``spidrkit evaluate slm``): each scored split's score over all pairs (and sWUGGY's
  in-vocabulary pairs) with its 95 % bootstrap interval.

Each report's figures name the model it measured; one that measured another checkpoint is said so.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.provenance import CheckpointInfo
from spidrkit.config import Config

SLM_TASKS = {"lexical": "sWUGGY", "syntactic": "sBLIMP", "storycloze": "spoken StoryCloze"}
SLM_GROUPS = {"all": "all pairs", "in_vocab": "in-vocabulary pairs"}


@dataclass(frozen=True)
class CardFacts:
    """What the card says of the model (everything but the reports)."""

    repo_id: str
    cfg: Config
    source: CheckpointInfo  # the checkpoint the model folder was written from
    weights_sha256: str  # full SHA-256 of the folder's model.safetensors
    num_params: int  # parameters of the model, codebooks aside
    hours: float | None = None  # training time the run recorded (None: not recorded)
    version: str = ""  # spidrkit's


@dataclass(frozen=True)
class ReportFigures:
    """The lines a report gives the card, and the model id it measured (``None``: not said)."""

    path: str
    lines: tuple[str, ...]
    model: str | None


def _number(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _pct(v: Any) -> str:
    x = _number(v)
    return "–" if x is None else f"{x:.2f} %"


def _sweep_lines(results: Mapping[str, Any]) -> list[str]:
    lines = []
    best = results.get("best_layer")
    row = (results.get("layers") or {}).get(str(best)) or {}
    if best is not None and row:
        extra = f", word MAP {_pct(row['map'])}" if _number(row.get("map")) is not None else ""
        lines.append(f"best layer by mean ABX: **layer {best}**: ABX within speaker {_pct(row.get('abx_within'))}, "
                     f"across speakers {_pct(row.get('abx_across'))}{extra}")
    units = {k: v for k, v in (results.get("units") or {}).items() if _number((v or {}).get("pnmi")) is not None}
    if units:
        name = max(units, key=lambda k: units[k]["pnmi"])
        u = units[name]
        lines.append(f"best PNMI: **{name}**: PNMI {u['pnmi']:.3f}, ABX within speaker {_pct(u.get('abx_within'))}, "
                     f"across speakers {_pct(u.get('abx_across'))}")
    return lines


def _slm_lines(report: Mapping[str, Any]) -> list[str]:
    lines = []
    units = (report.get("inputs") or {}).get("units")
    for key, groups in (report.get("results") or {}).items():
        task = SLM_TASKS.get(key.split("/", 1)[0], key)
        for group, label in SLM_GROUPS.items():
            cell = (groups or {}).get(group)
            if not isinstance(cell, Mapping) or _number(cell.get("score")) is None:
                continue
            low, high = (cell.get("ci95") or [None, None])[:2]
            lines.append(f"{task} ({key}, {label}): **{_pct(cell['score'])}** (95 % CI {_pct(low)} – {_pct(high)}, "
                         f"{cell.get('pairs', '?')} pair ids" + (f"; units {units})" if units else ")"))
    return lines


def report_figures(report: Mapping[str, Any], path: str) -> ReportFigures:
    """The figures of a sweep's or an sLM evaluation's ``report.json`` (already read); :class:`CheckpointError`
    for another JSON."""
    if isinstance(report.get("scoring"), Mapping) and isinstance(report.get("results"), Mapping):
        lines = _slm_lines(report)
        model = (report.get("inputs") or {}).get("encoder")
    elif isinstance(report.get("results"), Mapping) and "layers" in report["results"]:
        lines = _sweep_lines(report["results"])
        model = (report["results"].get("info") or {}).get("model")
    else:
        raise CheckpointError(f"{path}: not a report spidrkit push reads (the report.json of `spidrkit evaluate "
                              "sweep`, of the demo, or of `spidrkit evaluate slm`)")
    if not lines:
        raise CheckpointError(f"{path}: a report without figures to show (no best layer, PNMI or scored split)")
    return ReportFigures(path, tuple(lines), model if isinstance(model, str) else None)


def read_report(path: str | os.PathLike) -> ReportFigures:
    """The figures of the ``report.json`` at ``path``."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no such file or folder: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable JSON report ({e})") from e
    if not isinstance(report, dict):
        raise CheckpointError(f"{path}: not a report spidrkit push reads (a JSON object is expected)")
    return report_figures(report, str(path))


def _model_rows(f: CardFacts) -> list[str]:
    m = f.cfg.model
    first = m.num_layers - m.num_codebooks + 1
    src = f.source
    made = f"{src.step:,} steps" if src.step is not None else "steps not recorded"
    made += f", {f.hours:.2f} hours of training time" if f.hours is not None else ""
    made += f" (`train.max_steps` {f.cfg.train.max_steps:,})"
    return [
        "| | |", "|---|---|",
        f"| variant | {f.cfg.variant} |",
        f"| architecture | {m.num_layers} layers of width {m.dim} ({m.num_heads} heads, FFN {m.ffn_dim}), frontend "
        f"{m.frontend}; {m.num_codebooks} codebooks of {m.codebook_size} on layers {first}-{m.num_layers} |",
        f"| parameters | {f.num_params / 1e6:.1f} M (codebooks aside) |",
        f"| training | {made} |",
        f"| weights | `model.safetensors`, SHA-256 `{f.weights_sha256}`; model id `{f.cfg.variant}:"
        f"{f.weights_sha256[:16]}` in the sidecars of what it produces |",
        f"| provenance | written from `{src.path}` ({src.source} checkpoint, SHA-256 `{src.sha256}`, model id "
        f"`{src.model_id}`) by spidrkit {f.version} |",
    ]


def model_ids(facts: CardFacts) -> tuple[str, str]:
    """The ids a report on this model may name: the source checkpoint's and the pushed folder's."""
    return facts.source.model_id, f"{facts.cfg.variant}:{facts.weights_sha256[:16]}"


def _figure_lines(figures: Sequence[ReportFigures], ids: tuple[str, ...]) -> list[str]:
    if not figures:
        return []
    out = ["", "## Evaluation"]
    for fig in figures:
        measured = f"`{fig.model}`" if fig.model else "a model it does not name"
        other = fig.model is not None and fig.model not in ids
        out += ["", f"From `{Path(fig.path).name}`, measured on {measured}"
                + (" (another checkpoint than the one pushed):" if other else ":"), ""]
        out += [f"- {line}" for line in fig.lines]
    return out


def render_card(facts: CardFacts, figures: Sequence[ReportFigures] = ()) -> str:
    """The ``README.md`` of the repo."""
    variant, repo = facts.cfg.variant, facts.repo_id
    front = ["---", "library_name: spidrkit", "tags:", "- audio", "- speech", "- self-supervised-learning",
             f"- {variant}", "- spidrkit", "pipeline_tag: feature-extraction", "---", ""]
    intro = [f"# {repo}", "", f"A {variant} self-supervised speech model (features and discrete units of 16 kHz "
             "speech), a spidrkit model folder (`config.json` + `model.safetensors`) published with `spidrkit "
             "push`.", ""]
    use = ["", "## Use", "", "```python", "import spidrkit", "", f'model, info = spidrkit.load("{repo}")  # or '
           f'"{repo}@REVISION"', "feats = model.layer_outputs(wav, layers=[6])[6]  # (B, T, dim), layers 1-based",
           "```", "", "```sh", f"spidrkit extract wavs/ --model {repo} --layers 6 -o feats/", "```", ""]
    config = ["## Config", "", "<details><summary>the full config (TOML)</summary>", "", "```toml",
              facts.cfg.to_toml().rstrip(), "```", "", "</details>", ""]
    return "\n".join(front + intro + _model_rows(facts) + _figure_lines(figures, model_ids(facts)) + use + config)
