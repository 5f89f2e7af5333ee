"""The entry points of weight I/O: load a model (with its provenance), build one from weights, convert.

What is understood (``docs/formats.md``):

- the released SpidR/DinoSR layout, architecture read from the shapes (:mod:`~spidrkit.checkpoints.released`);
- the original DinoSR checkpoint, fairseq names, attention biases folded (:mod:`~spidrkit.checkpoints.fairseq`);
- spidrkit's own files and model directories (``config.json`` + ``model.safetensors``), rebuilt from
  their stored config (:mod:`~spidrkit.checkpoints.native`);
- a training run folder (its latest checkpoint);
- a published model by name (``spidr_base``, ``dinosr_base_reproduced``, ``dinosr_base_original``),
  downloaded once into a cache and verified (:mod:`~spidrkit.checkpoints.named`);
- random weights only when asked for by name: ``random:base``, ``random:tiny`` or ``random:CONFIG.toml``, one fixed
  draw (:data:`RANDOM_WEIGHTS_SEED`), so every command and process gets the same model
  (:data:`RANDOM_PREFIX`). A bare preset name is an error: it used to give random weights silently.
- other encoders (:mod:`spidrkit.encoders`, returned as an :class:`~spidrkit.encoders.HFEncoder`): a Hugging
  Face model directory (``config.json`` with ``model_type`` hubert / wav2vec2 / wavlm / data2vec-audio, and
  its weights) and the original fairseq HuBERT / wav2vec 2.0 checkpoints;
- a Hugging Face Hub repo id (``OWNER/NAME``, ``OWNER/NAME@REVISION`` or ``hf://...``, :mod:`spidrkit.hub`)
  holding a spidrkit model directory or a ``transformers`` encoder: fetched into the Hugging Face cache, then
  loaded as the local directory (provenance ``hf://OWNER/NAME@COMMIT``). A name that is none of the above and
  looks like a path is "no such file or folder".

Files are read without executing any of their code (:mod:`~spidrkit.checkpoints.reading`). Provenance is
returned beside the model (:class:`~spidrkit.checkpoints.provenance.Loaded`), never attached to it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from spidrkit.checkpoints.contents import listing, state_dict_of
from spidrkit.checkpoints.errors import CheckpointError
from spidrkit.checkpoints.fairseq import from_fairseq, is_fairseq_state_dict
from spidrkit.checkpoints.named import NAMED_WEIGHTS, fetch_weights
from spidrkit.checkpoints.native import (
    DIR_WEIGHTS,
    is_model_dir,
    is_spidrkit_config,
    read_model_dir,
    save_model_dir,
    save_spidrkit,
    stored_config,
)
from spidrkit.checkpoints.provenance import CheckpointInfo, Loaded, model_info, weights_sha256
from spidrkit.checkpoints.reading import read_checkpoint
from spidrkit.checkpoints.released import WEIGHT_FIELDS, contradictions, refuse_contradictions, released_config
from spidrkit.checkpoints.run import latest_checkpoint
from spidrkit.config import PRESETS, Config, ConfigError, load_config
from spidrkit.encoders import (
    EncoderError,
    HFEncoder,
    fairseq_family,
    hf_model_type,
    hub_directory,
    load_directory,
    load_fairseq_encoder,
)
from spidrkit.encoders.hf import FAMILIES
from spidrkit.encoders.pretrained import declared_model_type, weights_file
from spidrkit.errors import naming
from spidrkit.hub import HubError, HubRef, commit_of, hub_ref, looks_like_path, missing_path
from spidrkit.io import file_sha256, refuse_overwrite
from spidrkit.models.spidr import SpidR

RANDOM_PREFIX = "random:"
RANDOM_WEIGHTS_SEED = 0  # random:PRESET is one fixed draw


def _as_config(config: Config | str | os.PathLike | None) -> Config | None:
    if config is None or isinstance(config, Config):
        return config
    try:
        return load_config(config)
    except ConfigError as e:
        raise CheckpointError(str(e)) from e


def load_checkpoint(
    path: str | os.PathLike,
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
) -> tuple[Config, dict[str, torch.Tensor], CheckpointInfo]:
    """Read a checkpoint of any supported kind: its config, a state dict in our layout, and its provenance.

    ``variant`` (``spidr``/``dinosr``) overrides what the file says; ``config`` (a Config, preset name or
    TOML file) supplies what the weights of a foreign file cannot tell (strides, heads, dropouts).
    """
    path = Path(path)
    with naming(path):
        return from_raw(path, read_raw(path), variant, config)


def read_raw(path: Path) -> dict[str, Any]:
    """The raw content of a spidrkit model directory or of a checkpoint file (no code runs)."""
    return read_model_dir(path) if is_model_dir(path) else read_checkpoint(path)


def from_raw(path: Path, raw: dict[str, Any], variant: str | None, config: Config | str | os.PathLike | None
             ) -> tuple[Config, dict[str, torch.Tensor], CheckpointInfo]:
    """:func:`load_checkpoint` of what :func:`read_raw` read from ``path``."""
    model_dir = is_model_dir(path)
    base = _as_config(config)
    sd = state_dict_of(raw)
    native = raw.get("format") == "spidrkit" or is_spidrkit_config(raw.get("config"))
    if (native or not is_fairseq_state_dict(sd)) and (bad := [k for k, v in sd.items()
                                                                if not isinstance(v, torch.Tensor)]):
        # (a fairseq state dict keeps non-tensor entries, e.g. '_ema', which its mapping drops)
        raise CheckpointError(f"{path}: state dict entry {bad[0]!r} is a {type(sd[bad[0]]).__name__}, not a tensor")
    if native:
        source, cfg = "spidrkit", stored_config(raw, variant, path)
        if base is not None:
            told = {k: getattr(cfg.model, k) for k in (*WEIGHT_FIELDS, "conv_strides", "num_heads")}
            refuse_contradictions(path, contradictions(vars(base.model), told, "file's own config"))
            warnings.warn(f"{path}: config= is ignored, the file carries its own config", stacklevel=2)
    elif is_fairseq_state_dict(sd):
        source, (cfg, sd) = "fairseq", from_fairseq(raw, sd, variant, base, path)
    else:
        source, cfg = "released", released_config(raw, sd, variant, base, path)
    step = raw.get("step") if isinstance(raw.get("step"), int) else None
    if step is None and isinstance(sd.get("current_step"), torch.Tensor):
        with contextlib.suppress(IndexError, ValueError, RuntimeError, OverflowError):  # empty, NaN: no step
            step = int(sd["current_step"].reshape(-1)[0])
    sha = file_sha256(path / DIR_WEIGHTS if model_dir else path)
    info = CheckpointInfo(source, cfg.variant, str(path.resolve()), sha, step, cfg)
    return cfg, sd, info


def _floats(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v.float() if v.is_floating_point() else v
    return out


def build_model(cfg: Config, sd: Mapping[str, torch.Tensor], where: str = "checkpoint") -> SpidR:
    """A SpidR of ``cfg`` holding exactly the weights of ``sd``; :class:`CheckpointError` listing the
    missing, unexpected and wrongly shaped entries otherwise. A missing teacher (a student-only export)
    is copied from the student with a warning; a missing ``current_step`` is set to 0."""
    sd = _floats(sd)
    # (building on the meta device would skip the random init, but its first use imports torch._dynamo,
    # which costs more than initialising a BASE model)
    model = SpidR(cfg.model)
    expected = model.state_dict()
    if not any(k.startswith("teacher.") for k in sd) and any(k.startswith("student.") for k in sd):
        warnings.warn(f"{where}: no teacher weights; the teacher is a copy of the student", stacklevel=3)
        sd.update({"teacher." + k[len("student.") :]: v.clone() for k, v in sd.items() if k.startswith("student.")})
    sd.setdefault("current_step", torch.zeros(1, dtype=torch.long))
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {listing(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes: {listing(wrong)}")
        raise CheckpointError(f"{where} does not fit a {cfg.variant} model: " + "; ".join(parts))
    _check_float_weights(sd, expected, where)
    model.load_state_dict({k: sd[k] for k in expected}, strict=True)
    return model.eval()


def _check_float_weights(sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], where: str) -> None:
    """Integer or bool tensors where the model holds float weights: :class:`CheckpointError` naming the first
    (``load_state_dict`` would cast them without a word); integer entries of the model (``current_step``) stay."""
    bad = [k for k, v in expected.items() if v.is_floating_point() and not sd[k].is_floating_point()]
    if bad:
        more = f" (and {len(bad) - 1} more: {listing(bad[1:])})" if len(bad) > 1 else ""
        raise CheckpointError(f"{where}: tensor {bad[0]!r} is {str(sd[bad[0]].dtype).removeprefix('torch.')}, not "
                              f"float weights{more}; these are not trained weights (re-export the checkpoint)")


def _random_model(spec: str, variant: str | None) -> tuple[SpidR, CheckpointInfo]:
    """``random:PRESET_OR_TOML``: a model of that config with random weights, asked for explicitly."""
    source = spec[len(RANDOM_PREFIX):]
    if not source:
        raise CheckpointError(f"{spec!r}: name a preset or a TOML config after 'random:' (random:base, random:tiny)")
    try:
        cfg = load_config(source, variant=variant)
    except ConfigError as e:
        raise CheckpointError(f"{spec!r}: {e}") from e
    with torch.random.fork_rng(devices=[]):  # the same weights in every command and process, the caller's RNG
        torch.manual_seed(RANDOM_WEIGHTS_SEED)  # untouched: `kmeans fit-corpus` and `lm units` agree on random:tiny
        model = SpidR(cfg.model).eval()
    return model, CheckpointInfo("preset", cfg.variant, source, None, None, cfg)


def _not_a_model(name: str) -> CheckpointError:
    """A preset name or config file given where a model is expected: say how to get what was meant."""
    return CheckpointError(
        f"{name!r} is a config, not a checkpoint: pass a checkpoint file, a published model "
        f"({', '.join(NAMED_WEIGHTS)}), or '{RANDOM_PREFIX}{name}' for a model with RANDOM weights (its "
        "features and units mean nothing: for tests only)"
    )


def _encoder(make, where: str, variant: str | None, config) -> HFEncoder:
    """A foreign encoder built by ``make()``, its errors as :class:`CheckpointError`; ``variant`` and
    ``config`` (SpidR/DinoSR settings) are refused."""
    if variant is not None or config is not None:
        raise CheckpointError(f"{where}: variant/config apply to SpidR/DinoSR checkpoints only, not to a "
                              "HuBERT / wav2vec 2.0 / WavLM / data2vec encoder")
    try:
        return make()
    except EncoderError as e:
        raise CheckpointError(str(e)) from e


def _weights_id(file: Path | None, model: torch.nn.Module) -> str:
    return file_sha256(file) if file is not None and file.suffix != ".json" else weights_sha256(model)


def _foreign(p: Path, variant, config, normalization: str) -> Loaded | None:
    """A Hugging Face model directory (source ``"transformers"``), else ``None``."""
    if p.is_dir() and hf_model_type(p) is not None:
        enc = _encoder(lambda: load_directory(p, normalization), str(p), variant, config)
        info = CheckpointInfo("transformers", enc.family, str(p.resolve()), _weights_id(weights_file(p), enc))
        return Loaded(enc, info)
    return None


def _hub_or_missing(name: str, revision: str | None) -> HubRef:
    """What a name that is no local file or folder means: a preset (an error saying so), a Hub repo, or a
    missing path (an error saying so)."""
    if name in PRESETS:
        raise _not_a_model(name)
    try:
        ref = hub_ref(name, revision)
    except HubError as e:
        raise CheckpointError(str(e)) from e
    if ref is not None:
        return ref
    if revision is not None:
        raise CheckpointError(f"revision={revision!r} applies to a Hub repo id (OWNER/NAME), not to {name}")
    hint = "" if looks_like_path(name) or "/" in name else (
        f" (a published model is one of {', '.join(NAMED_WEIGHTS)}; a Hub repo is OWNER/NAME)")
    raise CheckpointError(missing_path(name) + hint)


def _fetch(ref: HubRef) -> Path:
    try:
        return hub_directory(ref)
    except HubError as e:
        raise CheckpointError(str(e)) from e


def _spidr_normalization(normalization: str, source: object) -> None:
    """SpidR/DinoSR read standardised audio: another ``normalization`` is a mistake, said as such."""
    if normalization not in ("auto", "standardize"):
        raise CheckpointError(f"normalization={normalization!r} applies to HuBERT / wav2vec 2.0 / WavLM / data2vec "
                              f"encoders; {source} is a SpidR/DinoSR model, which always reads standardised audio "
                              "(leave normalization at 'auto')")


def load(
    path_or_name: str | os.PathLike,
    device: str | torch.device = "cpu",
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
    normalization: str = "auto",
    revision: str | None = None,
) -> Loaded:
    """A SpidR/DinoSR model in eval mode on ``device`` and its provenance, from any supported checkpoint
    or model directory (see the module doc), a training run folder (its latest checkpoint), a published
    model's name (``spidr_base``...: downloaded once, verified at every load), a Hugging Face Hub repo id
    (``OWNER/NAME``, at ``revision`` or ``OWNER/NAME@REVISION``; ``docs/hub.md``), or
    ``random:PRESET_OR_TOML`` (random weights, only on this explicit request).

    A Hugging Face model directory (local or on the Hub) or a fairseq HuBERT / wav2vec 2.0 checkpoint gives an
    :class:`~spidrkit.encoders.HFEncoder` (source ``"transformers"`` or ``"fairseq"``, variant its family);
    ``normalization`` (``auto``, ``raw``, ``standardize``, ``preprocessor``) is its input normalisation.

    The provenance (:class:`CheckpointInfo`) is returned beside the model, never attached to it: pass it
    on (``provenance=``) to what writes outputs, so their sidecars name the checkpoint.
    """
    name = str(path_or_name)
    p = Path(path_or_name).expanduser()
    if name.startswith(RANDOM_PREFIX) and not p.exists() and revision is None:
        _spidr_normalization(normalization, name)
        model, info = _random_model(name, variant)
        return Loaded(model.to(device), info)
    if name in NAMED_WEIGHTS and not p.exists() and revision is None:
        p, variant = fetch_weights(name), variant or NAMED_WEIGHTS[name].variant
    ref = None
    if revision is not None or not p.exists():
        ref = _hub_or_missing(name, revision)
        p = _fetch(ref)
    loaded = _load_local(p, name, device, variant, config, normalization)
    return loaded if ref is None else Loaded(loaded.model, replace(loaded.info, path=ref.uri(commit_of(p))))


def _not_a_speech_model(p: Path) -> CheckpointError | None:
    """A folder that is some other model: a unit LM (a run folder, its best/ or last/), or a ``transformers``
    model of a type that is no speech encoder spidrkit wraps."""
    if (p / "vocab.json").is_file() and ((p / "config.json").is_file() or (p / "best").is_dir()
                                         or (p / "last").is_dir()):
        return CheckpointError(f"{p} is a unit language model folder (spidrkit lm train): pass it to --lm, not as "
                               "a speech model")
    kind = declared_model_type(p)
    if kind is not None:
        return CheckpointError(f"{p}: a transformers model of model_type {kind!r}, which spidrkit does not load as a "
                               f"speech model; supported model_type: {', '.join(FAMILIES)}")
    return None


def _no_checkpoints(p: Path) -> CheckpointError:
    return CheckpointError(f"{p} is a folder without checkpoints (expected a run dir with checkpoints/, or a model "
                           "directory with config.json and model.safetensors)")


def _load_local(p: Path, name: str, device: str | torch.device, variant: str | None,
                config: Config | str | os.PathLike | None, normalization: str) -> Loaded:
    """:func:`load` of a local file or folder ``p`` (``name``: as the caller gave it)."""
    foreign = _foreign(p, variant, config, normalization)
    if foreign is not None:
        return Loaded(foreign.model.to(device), foreign.info)
    if p.is_dir() and (other := _not_a_speech_model(p)) is not None:
        raise other
    if p.is_dir() and not is_model_dir(p):  # a training run folder: its latest checkpoint
        latest = latest_checkpoint(p)
        if latest is None:
            raise _no_checkpoints(p)
        p = latest
    if p.suffix == ".toml" and p.is_file():
        raise _not_a_model(name)
    raw = read_raw(p)
    sd = state_dict_of(raw)
    if fairseq_family(raw, sd) is not None:
        model = _encoder(lambda: load_fairseq_encoder(raw, sd, p, normalization), str(p), variant, config)
        return Loaded(model.to(device), CheckpointInfo("fairseq", model.family, str(p.resolve()), file_sha256(p)))
    _spidr_normalization(normalization, p)
    cfg, sd, info = from_raw(p, raw, variant, config)
    model = build_model(cfg, sd, str(p))
    return Loaded(model.to(device), info)


def load_model(path_or_name: str | os.PathLike, device: str | torch.device = "cpu", variant: str | None = None,
               config: Config | str | os.PathLike | None = None, normalization: str = "auto",
               revision: str | None = None) -> SpidR | HFEncoder:
    """The model of :func:`load`, without its provenance."""
    return load(path_or_name, device, variant, config, normalization, revision).model


def resolve_model(
    model: SpidR | Loaded | str | os.PathLike,
    provenance: CheckpointInfo | None = None,
    device: str | torch.device = "cpu",
    variant: str | None = None,
) -> Loaded:
    """What a consumer (extraction, evaluation) was given, as a model on ``device`` and its provenance:
    a path or name is loaded, a :class:`Loaded` is taken as is (``provenance``, when given,
    replaces its own), a bare model gets ``provenance`` or an in-memory identity (:func:`model_info`)."""
    if isinstance(model, str | os.PathLike):
        loaded = load(model, "cpu", variant)
    elif isinstance(model, Loaded):
        loaded = model if provenance is None else Loaded(model.model, provenance)
    else:
        loaded = Loaded(model, model_info(model, provenance))
    return Loaded(loaded.model.to(device).eval(), loaded.info)


def convert(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    variant: str | None = None,
    config: Config | str | os.PathLike | None = None,
    force: bool = False,
    teacher: bool = False,
) -> Path:
    """Rewrite any supported checkpoint as a self-describing spidrkit file (``.pt`` or ``.safetensors``), or
    as a model directory (``config.json`` + ``model.safetensors``) when ``out_path`` ends with a path
    separator or is an existing directory. ``in_path`` may also be a published model's name. An existing
    output file (or a folder's ``config.json`` / ``model.safetensors``) is replaced only with ``force``.

    ``teacher=True`` writes the EMA teacher's Transformer in the student's place, so every command that
    reads the model's features reads the teacher's (its convolutional front end is the student's: they share
    it); a file without teacher weights (a student-only export) is an error.

    The weights are checked by building the model first, so a file that converts is a file that loads.
    """
    to_dir = str(out_path).endswith((os.sep, "/")) or Path(out_path).is_dir()
    refuse_overwrite([Path(out_path) / "config.json", Path(out_path) / "model.safetensors"] if to_dir
                     else [Path(out_path)], force, "convert", error=CheckpointError)
    if str(in_path) in NAMED_WEIGHTS and not Path(in_path).exists():
        in_path, variant = fetch_weights(str(in_path)), variant or NAMED_WEIGHTS[str(in_path)].variant
    if Path(out_path).resolve() == Path(in_path).resolve():
        raise CheckpointError("convert: the output would overwrite the input; choose another path")
    cfg, sd, info = load_checkpoint(in_path, variant, config)
    if teacher and not any(k.startswith("teacher.") for k in sd):
        raise CheckpointError(f"{in_path} has no teacher weights (a student-only export): convert it without "
                              "--teacher")
    model = build_model(cfg, sd, str(in_path))
    if teacher:
        model.student.load_state_dict(model.teacher.state_dict())
        info = replace(info, path=f"{info.path} (teacher)")
    if to_dir:
        return save_model_dir(out_path, cfg, model.state_dict(), info)
    return save_spidrkit(out_path, cfg, model.state_dict(), info)
