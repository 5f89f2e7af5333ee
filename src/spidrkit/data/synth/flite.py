"""The flite speech synthesiser, called in-process through its C library (ctypes), with exact timings.

flite (CMU, BSD-style licence; Debian/Ubuntu package ``flite``, which pulls in ``libflite1``) builds an
utterance structure whose ``Segment`` relation holds every phone with the time it ends, and whose
``SylStructure`` relation links each phone to its word. The waveform is generated on the same time axis,
so these are the synthesiser's own alignments, not a forced alignment. Calling the library instead of the
``flite`` program also saves a process start and a wav round trip per utterance.

flite's clustergen voices (awb, rms, slt) draw excitation noise from the C library's ``rand()``; the
generator is re-seeded before each utterance, so a rendering depends only on (text, voice, settings, seed).

Voices: ``awb`` (Scottish English, male), ``rms`` (US, male), ``slt`` (US, female), ``kal16`` (US, male,
diphone), all 16 kHz, and ``kal`` (8 kHz diphone). Phones come in flite's lower-case CMU set; see
``ARPABET`` for the mapping to the 39 CMUdict ARPAbet phones plus ``SIL``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import shutil
from dataclasses import dataclass

import numpy as np

from spidrkit.errors import InputError

VOICES = ("awb", "rms", "slt", "kal16", "kal")
INSTALL_HINT = "flite is not installed: run 'sudo apt-get install flite' (Debian/Ubuntu; it brings libflite1)"

SILENCE = "SIL"
# flite's CMU phone set -> CMUdict ARPAbet (39 phones, no stress) + SIL. flite's schwa 'ax' is CMUdict's
# unstressed AH (AH0), so it maps to AH; its pause 'pau' is SIL.
_SAME = "aa ae ah ao aw ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh"
ARPABET = {p: p.upper() for p in _SAME.split(" ")} | {"ax": "AH", "axr": "ER", "pau": SILENCE}
PHONES = tuple(sorted(set(ARPABET.values())))


class FliteError(InputError):
    """flite is missing, a voice cannot be loaded, or synthesis failed."""


@dataclass(frozen=True)
class Rendering:
    """One synthesised utterance: int16 samples and the synthesiser's own segment and word timings.

    ``segments``: (flite phone, end time in s) in order; a segment starts where the previous one ends
    (the first at 0). ``words``: (word, index of its first segment, index of its last segment).
    """

    samples: np.ndarray  # int16, mono
    sample_rate: int
    segments: list[tuple[str, float]]
    words: list[tuple[str, int, int]]


class _Wave(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_char_p),
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("num_channels", ctypes.c_int),
        ("samples", ctypes.POINTER(ctypes.c_short)),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("features", ctypes.c_void_p), ("ffunctions", ctypes.c_void_p)]


class _Module(ctypes.Structure):
    """flite's ``cst_synth_module``: an utterance feature naming a step's function, and its default."""

    _fields_ = [("hookname", ctypes.c_char_p), ("defhook", ctypes.c_void_p)]


# flite's text synthesis (synth_method_text of cst_synth.c) up to and with the post-lexical rules: the
# Segment and SylStructure relations are final there; the duration and f0 models and the waveform synthesis
# that follow only add times, targets and units. (step, its default function in libflite or None; the
# bytes live as long as the module, so the C array may point at them)
_TEXT_TO_PHONES = (
    (b"tokenizer_func", "default_tokenization"),
    (b"textanalysis_func", "default_textanalysis"),
    (b"pos_tagger_func", "default_pos_tagger"),
    (b"phrasing_func", "default_phrasing"),
    (b"lexical_insertion_func", "default_lexical_insertion"),
    (b"pause_insertion_func", "default_pause_insertion"),
    (b"intonation_func", "cart_intonation"),
    (b"postlex_func", None),
)


_P = ctypes.c_void_p
_SIGNATURES = {
    "flite_init": (ctypes.c_int, []),
    "flite_synth_text": (_P, [ctypes.c_char_p, _P]),
    "new_utterance": (_P, []),
    "utt_set_input_text": (None, [_P, ctypes.c_char_p]),
    "utt_init": (_P, [_P, _P]),
    "apply_synth_method": (_P, [_P, ctypes.POINTER(_Module)]),
    "flite_feat_set_float": (None, [_P, ctypes.c_char_p, ctypes.c_float]),
    "utt_wave": (ctypes.POINTER(_Wave), [_P]),
    "utt_relation": (_P, [_P, ctypes.c_char_p]),
    "relation_head": (_P, [_P]),
    "item_next": (_P, [_P]),
    "item_as": (_P, [_P, ctypes.c_char_p]),
    "item_parent": (_P, [_P]),
    "item_daughter": (_P, [_P]),
    "item_last_daughter": (_P, [_P]),
    "item_feat_string": (ctypes.c_char_p, [_P, ctypes.c_char_p]),
    "item_feat_float": (ctypes.c_float, [_P, ctypes.c_char_p]),
    "delete_utterance": (None, [_P]),
}


def _load(stem: str) -> ctypes.CDLL:
    """Load ``lib<stem>`` (global symbols, as flite's voice libraries need the core's)."""
    names = [ctypes.util.find_library(stem), f"lib{stem}.so.1", f"lib{stem}.so", f"lib{stem}.dylib"]
    errors = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            return ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            errors.append(str(e))
    raise FliteError(f"cannot load lib{stem} ({'; '.join(errors) or 'not found'})")


def flite_available() -> bool:
    """True when the flite library can be loaded (what ``synthesize_corpus`` needs)."""
    try:
        Flite.instance()
        return True
    except FliteError:
        return False


class Flite:
    """The flite library of this process (one per process: use ``Flite.instance()``)."""

    _instance: Flite | None = None

    def __init__(self):
        try:
            self._lib = _load("flite")
            for dep in ("flite_cmulex", "flite_usenglish"):
                _load(dep)
        except FliteError as e:
            hint = (
                "the flite program is installed but not its library: run 'sudo apt-get install libflite1'"
                if shutil.which("flite") else INSTALL_HINT
            )
            raise FliteError(f"{e}; {hint}") from None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self._lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self._lib.flite_init()
        self._libc = ctypes.CDLL(None)
        self._to_phones = (_Module * (len(_TEXT_TO_PHONES) + 1))(*(
            _Module(hook, ctypes.cast(getattr(self._lib, default), _P) if default else None)
            for hook, default in _TEXT_TO_PHONES))  # the zeroed last entry ends the list
        self._voices: dict[str, tuple[ctypes.CDLL, ctypes._Pointer]] = {}

    @classmethod
    def instance(cls) -> Flite:
        if cls._instance is None:
            cls._instance = Flite()
        return cls._instance

    def load_voice(self, name: str):
        """The voice ``name`` (loaded and registered on first use)."""
        if name not in self._voices:
            if name not in VOICES:
                raise FliteError(f"unknown flite voice {name!r}; choose from {', '.join(VOICES)}")
            lib = _load(f"flite_cmu_us_{name}")
            register = getattr(lib, f"register_cmu_us_{name}")
            register.restype, register.argtypes = ctypes.POINTER(_Voice), [ctypes.c_char_p]
            voice = register(None)
            if not voice:
                raise FliteError(f"flite could not register voice {name!r}")
            self._voices[name] = (lib, voice)
        return self._voices[name][1]

    def synthesize(self, text: str, voice: str, duration_stretch: float = 1.0, f0_shift: float = 1.0,
                   seed: int = 0) -> Rendering:
        """Render ``text`` with ``voice``; ``duration_stretch`` > 1 is slower, ``f0_shift`` scales pitch.

        ``f0_shift`` acts on the awb, slt and kal voices; rms ignores it (its pitch is fixed).
        """
        lib = self._lib
        v = self.load_voice(voice)
        lib.flite_feat_set_float(v.contents.features, b"duration_stretch", float(duration_stretch))
        lib.flite_feat_set_float(v.contents.features, b"f0_shift", float(f0_shift))
        self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        utt = lib.flite_synth_text(text.encode("utf-8"), ctypes.cast(v, _P))
        if not utt:
            raise FliteError(f"flite failed on {text!r}")
        try:
            wave = lib.utt_wave(utt)
            if not wave or wave.contents.num_samples <= 0:
                raise FliteError(f"flite made no audio for {text!r}")
            w = wave.contents
            n = w.num_samples * w.num_channels
            samples = np.ctypeslib.as_array(w.samples, shape=(n,)).copy()
            if w.num_channels > 1:
                samples = samples.reshape(-1, w.num_channels)[:, 0].copy()
            segments, words = self._timings(utt)
            return Rendering(samples, int(w.sample_rate), segments, words)
        finally:
            lib.delete_utterance(utt)

    def phones(self, text: str, voice: str) -> tuple[list[str], list[tuple[str, int, int]]]:
        """The segments and words ``synthesize(text, voice)`` gives, without times and without rendering.

        flite's text analysis, lexicon, letter-to-sound and post-lexical rules run as in :meth:`synthesize`
        (the same steps of the voice, the same utterance), then stop before the duration model: about 0.1 ms
        a word, 7 times faster than rendering it with ``kal16``, 250 times with ``slt``. Returns (flite phone
        of each segment, words as in :class:`Rendering`). A text without words is no error here: one pause
        and no words (``synthesize`` finds no audio in it).
        """
        lib = self._lib
        v, data = self.load_voice(voice), text.encode("utf-8")  # a text that cannot be encoded fails here
        utt = lib.new_utterance()
        try:
            lib.utt_set_input_text(utt, data)
            lib.utt_init(utt, ctypes.cast(v, _P))
            if not lib.apply_synth_method(utt, self._to_phones):
                raise FliteError(f"flite failed on {text!r}")
            segments, words = self._timings(utt, timed=False)
            return [name for name, _ in segments], words
        finally:
            lib.delete_utterance(utt)

    def _timings(self, utt, timed: bool = True) -> tuple[list[tuple[str, float]], list[tuple[str, int, int]]]:
        """(segment, end time) and words of ``utt``; the times are NaN when not ``timed`` (not yet set)."""
        lib = self._lib
        segments: list[tuple[str, float]] = []
        words: list[tuple[str, int, int]] = []
        last_word = None
        seg = lib.relation_head(lib.utt_relation(utt, b"Segment"))
        while seg:
            i = len(segments)
            name = lib.item_feat_string(seg, b"name").decode()
            segments.append((name, float(lib.item_feat_float(seg, b"end")) if timed else math.nan))
            in_syl = lib.item_as(seg, b"SylStructure")
            word = lib.item_parent(lib.item_parent(in_syl)) if in_syl else None
            if word and word == last_word:
                label, first, _ = words[-1]
                words[-1] = (label, first, i)
            elif word:
                words.append((self._word_label(word), i, i))
            last_word = word
            seg = lib.item_next(seg)
        return segments, words

    def _word_label(self, word) -> str:
        """The word as written (its token) when the token is one word, else flite's word name.

        flite renames homographs ('read' in the past tense becomes 'red'); the token keeps the spelling.
        """
        lib = self._lib
        name = lib.item_feat_string(word, b"name").decode()
        in_token = lib.item_as(word, b"Token")
        token = lib.item_parent(in_token) if in_token else None
        if token and lib.item_daughter(token) == lib.item_last_daughter(token):
            name = lib.item_feat_string(token, b"name").decode()
        return name.lower()
