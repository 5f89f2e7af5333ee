"""The unit LM itself: a ``transformers`` OPT causal LM sized by :class:`~spidrkit.lm.config.LMModelConfig`,
saved as a model folder (``save_pretrained``: ``config.json``, ``model.safetensors``) with the vocabulary
(``vocab.json``) and a sidecar (``spidrkit.json``: step, validation loss), and loaded back by
:func:`load_lm` (from a local folder, or from a Hugging Face Hub repo holding one: ``docs/hub.md``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch

from spidrkit.errors import InputError
from spidrkit.hub import HubError, commit_of, hub_ref, missing_path, snapshot
from spidrkit.io import fsync_dir, read_sidecar, write_sidecar
from spidrkit.lazy import require
from spidrkit.lm.config import LMModelConfig
from spidrkit.lm.vocab import BOS, EOS, PAD, UnitVocab

if TYPE_CHECKING:
    from transformers import OPTForCausalLM

WHICH = ("best", "last")
HUB_FILES = ["*.json", "*.safetensors"]  # what a unit LM repo needs (a model folder, or a run's best/ and last/)


class LMError(InputError):
    """A unit LM run folder or model folder that cannot be read as asked."""


def _transformers(module: str = "transformers") -> ModuleType:
    """``transformers`` (or one of its modules), imported on first use; :class:`~spidrkit.lazy.MissingExtra`
    naming the ``lm`` extra when it is not installed."""
    return require(module, "a unit language model", extra="lm")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bars of ``transformers`` while a small model folder is written or read."""
    hf_logging = _transformers("transformers.utils.logging")
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def build_model(m: LMModelConfig, vocab: UnitVocab) -> OPTForCausalLM:
    """A randomly initialised OPT decoder over ``vocab.size`` tokens (pre-LayerNorm, ReLU, tied embeddings,
    learned positions: OPT-125M's architecture at these dimensions)."""
    transformers = _transformers()
    config = transformers.OPTConfig(
        vocab_size=vocab.size, hidden_size=m.dim, num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
        ffn_dim=m.ffn_dim, max_position_embeddings=m.context, word_embed_proj_dim=m.dim, dropout=m.dropout,
        attention_dropout=m.attention_dropout, activation_dropout=0.0, layerdrop=0.0, do_layer_norm_before=True,
        activation_function="relu", pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
        tie_word_embeddings=True,
    )
    return transformers.OPTForCausalLM(config)


def save_model_dir(model: OPTForCausalLM, vocab: UnitVocab, folder: str | os.PathLike, **info: Any) -> Path:
    """Write ``folder`` as a whole: into a temporary sibling first, then renamed over the old one (a crash
    leaves the old folder or the new one under the final name, and at worst a ``.old`` sibling)."""
    folder = Path(folder)
    tmp, old = folder.with_name(f".{folder.name}.tmp"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_transformers():
        model.save_pretrained(tmp, safe_serialization=True)
    vocab.save(tmp)
    write_sidecar(tmp, kind="unit-lm", **info)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _local(run_dir: str | os.PathLike, revision: str | None) -> tuple[Path, str | None]:
    """The local folder of ``run_dir`` and, for a Hub repo id (fetched into the Hugging Face cache), its
    ``hf://OWNER/NAME@COMMIT``."""
    path = Path(run_dir).expanduser()
    if path.exists() and revision is None:
        return path, None
    try:
        ref = hub_ref(str(run_dir), revision)
        if ref is None:
            raise LMError(f"revision={revision!r} applies to a Hub repo id (OWNER/NAME), not to {run_dir}"
                          if revision is not None else missing_path(str(run_dir)))
        folder = snapshot(ref, HUB_FILES)
    except HubError as e:
        raise LMError(str(e)) from e
    return folder, ref.uri(commit_of(folder))


def load_lm(run_dir: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu",
            revision: str | None = None) -> tuple[OPTForCausalLM, UnitVocab, dict[str, Any]]:
    """``(model, vocab, info)`` of a unit LM run folder: its ``best/`` (lowest validation loss) or
    ``last/`` model, in eval mode on ``device``; ``run_dir`` may also be a model folder itself, or a Hugging
    Face Hub repo id holding either (``OWNER/NAME``, at ``revision`` or ``OWNER/NAME@REVISION``). ``info``:
    the model folder's sidecar (``step``, ``valid_loss``, ``k``...) plus ``which`` and ``path`` (a Hub repo:
    ``hf://OWNER/NAME@COMMIT[/which]``). A run trained without validation data has no ``best/``: load it
    with ``which="last"`` (or ``load_lm(RUN / "last")``, the model folder)."""
    run_dir, uri = _local(run_dir, revision)
    if (run_dir / "config.json").is_file() and (run_dir / "vocab.json").is_file():
        folder = run_dir
    else:
        if which not in WHICH:
            raise LMError(f"which: expected one of {', '.join(WHICH)}, got {which!r}")
        folder = run_dir / which
    if not (folder / "config.json").is_file():
        hint = (f"that run had no validation data, so no best/ model: its last model is {run_dir / 'last'}"
                if which == "best" and (run_dir / "last").is_dir()
                else "train one with `spidrkit lm train UNITS -o RUN_DIR`")
        raise LMError(f"{folder}: no unit LM model folder here ({hint})")
    vocab = UnitVocab.load(folder)
    with _quiet_transformers():
        model = _transformers().OPTForCausalLM.from_pretrained(folder).to(device).eval()
    if model.config.vocab_size != vocab.size:
        raise LMError(f"{folder}: the model has {model.config.vocab_size} tokens, vocab.json {vocab.size}")
    try:
        info = read_sidecar(folder)
    except (FileNotFoundError, ValueError):
        info = {}
    if uri is None:
        return model, vocab, {**info, "which": folder.name, "path": str(folder)}
    which = "repo" if folder == run_dir else folder.name  # (a snapshot folder is named after its commit)
    return model, vocab, {**info, "which": which, "path": uri + ("" if folder == run_dir else f"/{which}")}
