"""``spidrkit push``: a model as a Hugging Face Hub repo (``docs/hub.md``).

The repo holds the model folder that ``spidrkit convert IN OUT/`` writes (``config.json`` +
``model.safetensors``) and its model card (``README.md``, :mod:`~spidrkit.checkpoints.card`); it loads back with
``spidrkit.load("OWNER/NAME")`` and gives the same features, bit for bit. The source is a training run folder
(its latest checkpoint; the card gives its training hours), a checkpoint file of any layout spidrkit reads, a
spidrkit model folder, or a published model's name. The provenance written into the folder names the source
by its file name (``RUN/checkpoints/step_N.pt``), not by its absolute path on this machine.

A dry run writes the folder and the card to ``output`` and uploads nothing; otherwise the folder is written to
``output`` (or a temporary folder) and uploaded by :func:`spidrkit.hub.upload` (``HF_TOKEN``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from spidrkit.checkpoints.card import CardFacts, ReportFigures, model_ids, read_report, render_card
from spidrkit.checkpoints.contents import state_dict_of
from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.loading import build_model, from_raw, read_raw
from spidrkit.checkpoints.named import NAMED_WEIGHTS, fetch_weights
from spidrkit.checkpoints.native import DIR_CONFIG, DIR_WEIGHTS, is_model_dir, save_model_dir
from spidrkit.checkpoints.run import latest_checkpoint
from spidrkit.encoders import fairseq_family
from spidrkit.hub import hub_ref, missing_path, upload
from spidrkit.io import file_sha256, refuse_overwrite, write_text_atomic

CARD = "README.md"
FILES = [DIR_CONFIG, DIR_WEIGHTS, CARD]  # what a pushed repo holds
_NOT_ENCODER = ("teacher", "heads", "codebooks", "mask_embedding", "current_step")  # state dict prefixes


@dataclass(frozen=True)
class Pushed:
    """What :func:`push` did: the folder written (``None`` when it was temporary), the repo's URL (``None`` for a
    dry run), the SHA-256 of ``model.safetensors``, and the reports that measured another checkpoint."""

    folder: Path | None
    url: str | None
    sha256: str
    card: str
    other_checkpoint_reports: tuple[str, ...] = ()


def _source_file(source: str | os.PathLike) -> tuple[Path, str]:
    """The checkpoint file (or model folder) to publish, and the name the provenance gives it."""
    name = str(source)
    p = Path(source).expanduser()
    if name in NAMED_WEIGHTS and not p.exists():
        return fetch_weights(name), name
    if not p.exists():
        raise CheckpointError(missing_path(name))
    if p.is_dir() and not is_model_dir(p):
        latest = latest_checkpoint(p)
        if latest is None:
            raise CheckpointError(f"{p}: neither a run folder with checkpoints/ nor a spidrkit model folder "
                                  "(config.json + model.safetensors); push a run, a checkpoint file or a model folder")
        return latest, f"{p.resolve().name}/{latest.relative_to(p).as_posix()}"
    return p, p.resolve().name


@contextlib.contextmanager
def _staging(output: str | os.PathLike | None, force: bool) -> Iterator[Path]:
    """``output`` (created; its model files replaced only with ``force``), else a temporary folder."""
    if output is None:
        with tempfile.TemporaryDirectory(prefix="spidrkit-push-") as tmp:
            yield Path(tmp)
        return
    folder = Path(output).expanduser()
    refuse_overwrite([folder / f for f in FILES], force, "push", "choose another --output", CheckpointError)
    folder.mkdir(parents=True, exist_ok=True)
    yield folder


def _hours(raw: dict) -> float | None:
    elapsed = raw.get("elapsed")
    ok = isinstance(elapsed, int | float) and not isinstance(elapsed, bool) and elapsed > 0
    return float(elapsed) / 3600 if ok else None


def push(source: str | os.PathLike, repo_id: str, *, private: bool = False,
         reports: Sequence[str | os.PathLike] = (), output: str | os.PathLike | None = None, dry_run: bool = False,
         variant: str | None = None, force: bool = False) -> Pushed:
    """Publish ``source`` (a run folder, a checkpoint file, a model folder, a published model's name) as the Hub
    model repo ``repo_id`` (``OWNER/NAME``; created ``private`` when missing): its model folder and model card,
    with the figures of ``reports`` (``report.json`` of a sweep or an sLM evaluation). ``dry_run``: write them to
    ``output`` only. ``variant`` is for released files that do not say it; ``force`` replaces files in ``output``.
    """
    from spidrkit import __version__

    ref = hub_ref(str(repo_id))
    if ref is None or ref.revision is not None or str(repo_id).startswith("hf://"):
        raise CheckpointError(f"push: {repo_id!r} is not a Hub repo id; expected OWNER/NAME (an owner is your user "
                              "name or an organisation of yours)")
    if dry_run and output is None:
        raise CheckpointError("push: --dry-run writes the model folder and its card locally: give --output DIR")
    figures: list[ReportFigures] = [read_report(r) for r in reports]  # (bad reports fail before any writing)
    path, public = _source_file(source)
    raw = read_raw(path)
    family = fairseq_family(raw, state_dict_of(raw))
    if family is not None:
        raise CheckpointError(f"push: {path} is a fairseq {family} checkpoint; push publishes SpidR/DinoSR models")
    cfg, sd, info = from_raw(path, raw, variant, None)
    model = build_model(cfg, sd, str(path))
    info = replace(info, path=public)
    state = model.state_dict()
    num_params = sum(v.numel() for k, v in state.items() if v.is_floating_point() and not k.startswith(_NOT_ENCODER))
    with _staging(output, force) as folder:
        save_model_dir(folder, cfg, state, info)
        sha = file_sha256(folder / DIR_WEIGHTS, length=64)
        facts = CardFacts(ref.repo_id, cfg, info, sha, num_params, _hours(raw), __version__)
        card = render_card(facts, figures)
        write_text_atomic(folder / CARD, card)
        step = f" step {info.step}" if info.step is not None else ""
        url = None if dry_run else upload(folder, ref.repo_id, FILES, private=private,
                                          message=f"spidrkit push: {cfg.variant}{step} from {public}")
    others = tuple(f.path for f in figures if f.model is not None and f.model not in model_ids(facts))
    return Pushed(folder if output is not None else None, url, sha, card, others)
