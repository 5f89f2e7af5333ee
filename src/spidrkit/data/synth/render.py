"""One utterance of the synthetic corpus (:mod:`spidrkit.data.synth.corpus`), rendered in memory with flite.

Each utterance draws its own prosody from its seed: speaking rate, pitch, a resampling "speed" factor,
a level and optionally light coloured noise at a random SNR, then a 1-LSB dither. The phone and word
intervals are flite's own segment timings, carried through the speed change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spidrkit.config import SAMPLE_RATE
from spidrkit.data.corpora.alignments import Interval
from spidrkit.data.synth import engines
from spidrkit.data.synth.flite import SILENCE, FliteError
from spidrkit.data.synth.plan import UtterancePlan

DEFAULT_NOISE = (30.0, 50.0)  # SNR range in dB of the light background noise
# prosody ranges (log-uniform for the ratios)
_STRETCH = (0.85, 1.18)
_F0_SHIFT = (0.88, 1.14)
_SPEED = (0.95, 1.05)
_PEAK = (0.3, 0.9)
_NOISE_EXPONENT = (0.0, 1.5)  # noise power spectrum ~ f^-exponent (white .. between pink and brown)


@dataclass(frozen=True)
class Prosody:
    duration_stretch: float
    f0_shift: float
    speed: float
    peak: float
    snr_db: float | None
    noise_exponent: float | None


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_prosody(rng: np.random.Generator, noise: tuple[float, float] | None) -> Prosody:
    stretch = _log_uniform(rng, *_STRETCH)
    f0 = _log_uniform(rng, *_F0_SHIFT)
    speed = _log_uniform(rng, *_SPEED)
    peak = float(rng.uniform(*_PEAK))
    snr = float(rng.uniform(*noise)) if noise else None
    exponent = float(rng.uniform(*_NOISE_EXPONENT)) if noise else None
    return Prosody(stretch, f0, speed, peak, snr, exponent)


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise of power spectrum ~ f^-exponent (shaped in a power-of-two FFT: fast for any n)."""
    size = 1 << max(0, n - 1).bit_length()
    spectrum = np.fft.rfft(rng.standard_normal(size))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum * f ** (-exponent / 2), size)[:n]


def _merge_silences(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for on, off, label in intervals:
        if off <= on:
            continue
        if out and label == SILENCE and out[-1][2] == SILENCE:
            out[-1] = (out[-1][0], off, label)
        else:
            out.append((on, off, label))
    return out


def render_utterance(plan: UtterancePlan, noise: tuple[float, float] | None = DEFAULT_NOISE
                     ) -> tuple[np.ndarray, list[Interval], list[Interval], Prosody]:
    """Synthesise one utterance: (int16 samples at 16 kHz, phone intervals, word intervals, prosody).

    Times are in seconds on the output's time axis; the phones tile [0, duration] exactly.
    """
    return render_part(plan, noise)[:4]


def render_part(plan: UtterancePlan, noise: tuple[float, float] | None = DEFAULT_NOISE
                ) -> tuple[np.ndarray, list[Interval], list[Interval], Prosody, float]:
    """:func:`render_utterance` plus the RMS of the background noise it added (full scale 1; 0 without
    noise): what the pauses of a joined utterance (:mod:`spidrkit.data.synth.long`) continue."""
    import soxr

    rng = np.random.default_rng(plan.seed)
    prosody = draw_prosody(rng, noise)
    r = engines.synthesize(plan.voice, plan.text, prosody.duration_stretch, prosody.f0_shift, seed=plan.seed)
    x = r.samples.astype(np.float64) / 32768.0
    if r.segments:
        # diphone voices stop the waveform inside the final pause: pad it to the last segment's end
        x = np.pad(x, (0, max(0, round(r.segments[-1][1] * r.sample_rate) - len(x))))
    # reading the samples as if taken at sample_rate * speed and resampling to 16 kHz divides times by speed
    y = soxr.resample(x, r.sample_rate * prosody.speed, SAMPLE_RATE)
    phones, words = _timings(r, prosody.speed, len(y) / SAMPLE_RATE, plan.utt)
    peak = float(np.max(np.abs(y))) or 1.0
    y *= prosody.peak / peak
    level = 0.0
    if noise:
        speech = np.zeros(len(y), dtype=bool)
        for on, off, label in phones or [(0.0, len(y) / SAMPLE_RATE, "speech")]:
            if label != SILENCE:
                speech[int(on * SAMPLE_RATE) : int(off * SAMPLE_RATE)] = True
        power = float(np.mean(y[speech] ** 2)) if speech.any() else float(np.mean(y**2))
        n = _coloured_noise(rng, len(y), prosody.noise_exponent)
        y += n * math.sqrt(power / 10 ** (prosody.snr_db / 10) / max(float(np.mean(n**2)), 1e-20))
        level = math.sqrt(power / 10 ** (prosody.snr_db / 10))
    return _quantise(y, rng), phones, words, prosody, level


def _timings(r, speed: float, duration: float, utt: str) -> tuple[list[Interval] | None, list[Interval] | None]:
    """The phone and word intervals of a rendering on the output's time axis (None, None for a voice
    without alignments)."""
    if not r.segments:
        return None, None
    try:
        labels = [engines.PHONE_MAP[p] for p, _ in r.segments]
    except KeyError as e:
        raise FliteError(f"phone {e.args[0]!r} has no ARPAbet mapping ({utt})") from None
    ends = np.array([e for _, e in r.segments], dtype=np.float64)
    bounds = np.minimum(np.concatenate([[0.0], ends / speed]), duration)
    bounds[-1] = duration
    bounds = np.round(np.maximum.accumulate(bounds), 4)
    phones = _merge_silences([(float(bounds[i]), float(bounds[i + 1]), lab) for i, lab in enumerate(labels)])
    return phones, [(float(bounds[a]), float(bounds[b + 1]), w) for w, a, b in r.words]


def _quantise(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add the 1-LSB Gaussian dither (no digital silence) and round to 16-bit samples."""
    y = y + rng.standard_normal(len(y)) / 32768.0
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)


def pause_samples(rng: np.random.Generator, n: int, level: float, exponent: float | None) -> np.ndarray:
    """``n`` samples of the corpus's background: coloured noise of spectrum ~ f^-exponent scaled to the RMS
    ``level`` (full scale 1; exactly, over these samples) plus the 1-LSB dither, as 16-bit samples."""
    y = np.zeros(n)
    if level > 0 and n > 0:
        noise = _coloured_noise(rng, n, exponent or 0.0)
        y = noise * (level / math.sqrt(max(float(np.mean(noise**2)), 1e-30)))
    return _quantise(y, rng)
