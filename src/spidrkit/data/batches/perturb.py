"""Voice perturbation of the student's input (``data.voice_perturb``; ``docs/method.md#voice-perturbation``).

The teacher, and so the targets and the codebooks, read the clean utterance; the student reads the same
utterance in another voice, so predicting the targets rewards what the two share (the phones) over what
differs (the voice). Both run in the data loader's workers, never in the training step:

- ``"vtlp"``: one warp factor per utterance, log-uniform in ``data.voice_warp`` (default 0.85-1.18), put in
  ``batch["warp"]``; the log mel front end warps its filterbank by it (:func:`spidrkit.models.spectral.
  vtlp_warp`), so the frames stay those of the clean waveform and the cost is one extra matrix product.
- ``"praat"``: the "Change gender" manipulation of Praat (PSOLA; ``pip install praat-parselmouth``), as in
  ContentVec and SPIN: formant ratio U[1, 1.4], pitch ratio U[1, 2] and pitch range ratio U[1, 1.5], each
  inverted with probability 1/2, duration unchanged. ``batch["student_wav"]`` has the clean batch's shape
  (the output is cut or padded to it: PSOLA keeps the duration to a few samples) and each row's mean and
  variance.
- ``data.voice_eq = G`` (dB, 0: off; with either of the above or alone): a random 10-band equaliser, as in
  ContentVec: gains uniform in [-G, G] dB at :data:`EQ_CENTRES` (log-spaced, 60 Hz to 6.4 kHz), interpolated
  linearly in dB over log frequency (flat beyond the end bands), applied zero-phase to the whole utterance
  (:func:`equalize`), then given the clean row's mean and variance. The result is ``batch["student_wav"]``
  (with ``"vtlp"`` the warped filterbank reads it).

Draws are keyed by (seed, epoch, global batch index), like the masks, so a resumed run perturbs alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from spidrkit.config import SAMPLE_RATE, Config
from spidrkit.data.batches.dataset import batch_rng
from spidrkit.lazy import require

STREAM = 2  # the RNG stream of the perturbation (masks use 0 for training, 1 for validation)
FORMANT_RATIO = (1.0, 1.4)
PITCH_RATIO = (1.0, 2.0)
RANGE_RATIO = (1.0, 1.5)
PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0
EQ_CENTRES = tuple(float(f) for f in np.geomspace(60.0, 6400.0, 10))  # Hz, the equaliser's band centres


@dataclass(frozen=True)
class Hooks:
    """Several batch hooks run in order (picklable, for spawned workers)."""

    hooks: tuple

    def __call__(self, batch: dict) -> dict:
        for hook in self.hooks:
            batch = hook(batch)
        return batch


@dataclass(frozen=True)
class VoicePerturbHook:
    """Adds ``batch["warp"]`` (vtlp) and / or ``batch["student_wav"]`` (praat, the equaliser) to a training
    batch."""

    kind: str
    warp_range: tuple[float, float]
    seed: int
    rank: int = 0
    world_size: int = 1
    eq_db: float = 0.0

    @classmethod
    def from_config(cls, cfg: Config, rank: int = 0, world_size: int = 1) -> VoicePerturbHook | None:
        if cfg.data.voice_perturb == "none" and cfg.data.voice_eq == 0:
            return None
        if cfg.data.voice_perturb == "praat":
            require_parselmouth()
        return cls(cfg.data.voice_perturb, tuple(cfg.data.voice_warp), cfg.train.seed, rank, world_size,
                   float(cfg.data.voice_eq))

    def rng(self, batch: dict) -> np.random.Generator:
        return batch_rng(self.seed, STREAM, batch["index"], self.rank, self.world_size)

    def __call__(self, batch: dict) -> dict:
        rng = self.rng(batch)
        wav = batch["wav"]
        if self.kind == "vtlp":
            lo, hi = math.log(self.warp_range[0]), math.log(self.warp_range[1])
            batch["warp"] = torch.from_numpy(np.exp(rng.uniform(lo, hi, size=wav.shape[0]))).float()
        elif self.kind == "praat":
            batch["student_wav"] = torch.stack([change_voice(w, rng) for w in wav])
        if self.eq_db > 0:
            student = batch.get("student_wav", wav)
            gains = rng.uniform(-self.eq_db, self.eq_db, size=(wav.shape[0], len(EQ_CENTRES)))
            batch["student_wav"] = torch.stack([_same_moments(equalize(w, g), w) for w, g in zip(student, gains)])
        return batch


def require_parselmouth() -> None:
    """:class:`~spidrkit.lazy.MissingExtra` (the ``voices`` extra) when praat-parselmouth is not installed."""
    require("parselmouth", "data.voice_perturb = 'praat'")


def _ratio(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    r = float(rng.uniform(*bounds))
    return r if rng.random() < 0.5 else 1.0 / r


def change_voice(wav: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One utterance (L,) in another voice (Praat's "Change gender"), with its length, mean and variance."""
    import parselmouth
    from parselmouth.praat import call

    x = wav.double().numpy()
    formant, pitch, span = _ratio(rng, FORMANT_RATIO), _ratio(rng, PITCH_RATIO), _ratio(rng, RANGE_RATIO)
    sound = parselmouth.Sound(x, sampling_frequency=SAMPLE_RATE)
    f0 = call(sound.to_pitch(), "Get quantile", 0.0, 0.0, 0.5, "Hertz")
    median = (f0 if math.isfinite(f0) and f0 > 0 else 150.0) * pitch
    changed = call(sound, "Change gender", PITCH_FLOOR, PITCH_CEILING, formant, median, span, 1.0)
    y = np.asarray(changed.values[0], dtype=np.float64)
    y = np.pad(y[: len(x)], (0, max(0, len(x) - len(y))))
    y = (y - y.mean()) / max(float(y.std()), 1e-8) * float(x.std()) + float(x.mean())
    return torch.from_numpy(y).to(wav.dtype)


def eq_gain_db(freqs: np.ndarray, gains_db: np.ndarray) -> np.ndarray:
    """The equaliser's gain (dB) at ``freqs`` (Hz): ``gains_db`` at :data:`EQ_CENTRES`, linear in dB over log
    frequency between them, the end bands' gains beyond them."""
    return np.interp(np.log(np.maximum(freqs, 1e-3)), np.log(EQ_CENTRES), gains_db)


def equalize(wav: torch.Tensor, gains_db: np.ndarray) -> torch.Tensor:
    """One utterance (L,) through the zero-phase equaliser of ``gains_db`` (one per :data:`EQ_CENTRES` band)."""
    x = wav.double().numpy()
    spectrum = np.fft.rfft(x)
    gain = 10.0 ** (eq_gain_db(np.fft.rfftfreq(x.size, 1.0 / SAMPLE_RATE), np.asarray(gains_db)) / 20.0)
    return torch.from_numpy(np.fft.irfft(spectrum * gain, n=x.size)).to(wav.dtype)


def _same_moments(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``y`` given the mean and standard deviation of ``like``."""
    y64, ref = y.double(), like.double()
    return ((y64 - y64.mean()) / y64.std(unbiased=False).clamp_min(1e-8) * ref.std(unbiased=False)
            + ref.mean()).to(like.dtype)
