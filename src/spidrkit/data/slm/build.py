"""Synthetic spoken-language-modelling benchmarks (sWUGGY, sBLIMP, tSC styles) and their LM corpus.

For machines without the ZeroSpeech 2021 and spoken StoryCloze sets, ``synthesize_slm(OUT)`` (CLI
``spidrkit data synth-slm OUT``) renders, with the corpus builder's flite voices, rendering and writing
functions (:mod:`spidrkit.data.synth.corpus`, :func:`spidrkit.data.synth.render.render_utterance`):

- ``OUT/lexical/{dev,test}/FILE.wav`` + ``gold.csv`` (``id, filename, word, phones, correct, frequency,
  voice, length``): words vs matched non-words (:mod:`spidrkit.data.slm.words`);
- ``OUT/syntactic/{dev,test}/FILE.wav`` + ``gold.csv`` (``id, filename, voice, type, subtype, correct,
  transcription``): grammatical vs ungrammatical minimal pairs (:mod:`spidrkit.data.slm.grammar`);
- ``OUT/storycloze/{dev,test}/FILE.wav`` + ``gold.csv`` (``id, filename, voice, correct, topic,
  transcription``): a 2-3 sentence story of one topic with its coherent last sentence (1) or a last
  sentence of another topic (0), the whole story in one wav;
- ``OUT/lm_train/``: the LM's training corpus, a corpus-builder folder (``train.csv``, ``dev.csv``,
  ``train_text.txt``, phone alignments, ...) of single sentences and same-topic 2-3 sentence utterances,
  read by the training voices only (the held-out voice never).

Every pair id is read by every voice (the held-out one included), so a test split of ``pairs`` ids has
``pairs x voices`` pairs (1,000 at the defaults); dev has a fifth as many ids. ``frequency`` is the
word's count in the texts of ``lm_train``'s train split (on both rows of a pair); at least 30 % of the
test words have frequency 0, so "all" and "in-vocab" (frequency >= 1) differ. Beside each gold.csv:
``SPLIT.csv`` (a manifest), ``SPLIT_phones.txt``, ``SPLIT_words.txt``, ``SPLIT_frames.txt`` and
``SPLIT.item`` (flite's alignments, for a phone topline). ``filename`` has no extension (ZeroSpeech).

Deterministic for (pairs, seed, voices, held-out voice, noise); every wav and its record are written
atomically, so an interrupted build resumes; a lock keeps two builds out of one folder; other settings on
an existing folder are an error. ``lm_hours`` may change between runs (the LM corpus grows in place and
the frequencies are recomputed).
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spidrkit.config import SAMPLE_RATE
from spidrkit.config.validation import with_overrides
from spidrkit.data.corpora.alignments import write_split_annotations
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.data.slm.plan import (
    DEFAULT_PAIRS,
    GOLD_COLUMNS,
    MIN_ABSENT_SHARE,
    SPLITS,
    TASKS,
    Item,
    absent_share,
    lm_train_texts,
    plan_slm,
    with_frequencies,
    word_counts,
)
from spidrkit.data.synth.corpus import RECORDS, check_settings, exclusive, synthesize_corpus
from spidrkit.data.synth.flite import Flite
from spidrkit.data.synth.plan import DEFAULT_VOICES, UtterancePlan
from spidrkit.data.synth.render import DEFAULT_NOISE, render_utterance
from spidrkit.errors import InputError
from spidrkit.io import atomic_write, write_json_atomic, write_sidecar, write_text_atomic

SLM_VERSION = 3  # bump whenever a change alters the rendered audio or the plan
DEFAULT_HELDOUT = "kal16"
DEFAULT_LM_HOURS = 1.0
LM_DIR = "lm_train"


def _wav(root: Path, item: Item) -> Path:
    return root / item.task / item.split / f"{item.filename}.wav"


def _record(root: Path, item: Item) -> Path:
    return root / item.task / RECORDS / f"{item.filename}.json"


def _render_item(root: Path, item: Item, noise) -> float:
    """Render one benchmark wav with the corpus builder's renderer; wav, then record, atomically."""
    import soundfile as sf

    plan = UtterancePlan(item.filename, item.split, item.voice, item.id, item.text, item.seed)
    audio, phone_tiers, word_tiers, _ = render_utterance(plan, noise)
    with atomic_write(_wav(root, item), "wb") as f:
        sf.write(f, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    write_json_atomic(_record(root, item), {"utt": item.filename, "voice": item.voice, "text": item.text,
                                            "num_samples": len(audio), "phones": phone_tiers,
                                            "words": word_tiers})
    return len(audio) / SAMPLE_RATE


def _render_items(root: str, items: list[Item], noise) -> float:
    """Worker entry point: render a chunk of items, return their seconds of speech."""
    return sum(_render_item(Path(root), it, noise) for it in items)


def _render_missing(root: Path, items: list[Item], noise, workers: int, progress: bool) -> dict:
    from spidrkit.progress import progress_bar

    todo = [it for it in items if not (_record(root, it).is_file() and _wav(root, it).is_file())]
    start, seconds = time.perf_counter(), 0.0
    with progress_bar(len(items), "benchmarks", "wav", progress, initial=len(items) - len(todo)) as bar:
        if workers <= 1 or len(todo) <= 1:
            for it in todo:
                seconds += _render_item(root, it, noise)
                bar.update(1)
        else:
            size = max(1, min(16, len(todo) // (4 * workers)))
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                jobs = {pool.submit(_render_items, str(root), todo[i : i + size], noise): min(size, len(todo) - i)
                        for i in range(0, len(todo), size)}
                try:
                    for job in as_completed(jobs):
                        seconds += job.result()
                        bar.update(jobs[job])
                except BaseException:
                    for job in jobs:
                        job.cancel()
                    raise
    return {"wavs": len(todo), "speech_seconds": round(seconds, 2),
            "wall_seconds": round(time.perf_counter() - start, 2), "workers": workers}


def _gold_csv(task: str, items: list[Item]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(GOLD_COLUMNS[task])
    for it in sorted(items, key=lambda i: (i.id, i.voice, -i.correct)):
        row = {"id": it.id, "filename": it.filename, "voice": it.voice, "correct": it.correct,
               "transcription": it.text, **dict(it.fields)}
        writer.writerow([row[c] for c in GOLD_COLUMNS[task]])
    return buf.getvalue()


def _write_split(root: Path, task: str, split: str, items: list[Item]) -> dict:
    """gold.csv, the manifest and the alignment files of one task's split, from the records."""
    records = {it.filename: json.loads(_record(root, it).read_text()) for it in items}
    write_text_atomic(root / task / split / "gold.csv", _gold_csv(task, items))
    ordered = sorted(records)
    write_manifest([ManifestEntry(u, str(root / task / split / f"{u}.wav"), records[u]["num_samples"],
                                  records[u]["voice"]) for u in ordered], root / task / f"{split}.csv")
    write_split_annotations(
        root / task / split,
        phones={u: [tuple(x) for x in records[u]["phones"]] for u in ordered},
        speakers={u: records[u]["voice"] for u in ordered},
        num_samples={u: records[u]["num_samples"] for u in ordered},
        sample_rate=SAMPLE_RATE,
        words={u: [tuple(x) for x in records[u]["words"]] for u in ordered},
    )
    seconds = sum(r["num_samples"] for r in records.values()) / SAMPLE_RATE
    return {"pairs": len({(it.id, it.voice) for it in items}), "ids": len({it.id for it in items}),
            "wavs": len(items), "hours": round(seconds / 3600, 4)}


@dataclass(frozen=True)
class SlmOptions:
    """Every option of :func:`synthesize_slm` (``spidrkit data synth-slm``): ``pairs`` pair ids per task in test
    (dev gets a fifth, at least 1), each read by every voice; ``lm_hours``: speech in ``lm_train`` (train +
    dev), read by ``voices`` except ``heldout_voice``; ``workers``: processes; ``noise``: the SNR range (dB)
    of the light background noise, None for none."""

    pairs: int = DEFAULT_PAIRS
    seed: int = 0
    workers: int = 2
    lm_hours: float = DEFAULT_LM_HOURS
    voices: Sequence[str] = DEFAULT_VOICES
    heldout_voice: str | None = DEFAULT_HELDOUT
    noise: tuple[float, float] | None = DEFAULT_NOISE
    progress: bool = True


def slm_options(options: SlmOptions | None = None, **overrides: Any) -> SlmOptions:
    """``options`` (default: all defaults) with ``overrides`` of its fields (:func:`~spidrkit.config.validation.
    with_overrides`)."""
    return with_overrides(SlmOptions, options, overrides, "synthesize_slm")


def _voices(voices: Sequence[str], heldout_voice: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every voice (once) and the LM corpus's voices (all but the held-out one); each voice loaded, so that a
    missing flite fails early, with the install hint."""
    voices = tuple(dict.fromkeys(voices))
    if heldout_voice is not None and heldout_voice not in voices:
        raise InputError(f"held-out voice {heldout_voice!r} is not among the voices {', '.join(voices)}")
    train_voices = tuple(v for v in voices if v != heldout_voice)
    if not train_voices:
        raise InputError("no voice is left for the LM corpus once the held-out voice is removed")
    for v in voices:
        Flite.instance().load_voice(v)
    return voices, train_voices


def synthesize_slm(out_dir: str | os.PathLike, options: SlmOptions | None = None, **overrides: Any) -> Path:
    """Build (or finish building) the three benchmarks and the LM corpus in ``out_dir``; return it.

    ``options``: an :class:`SlmOptions` (what each does), and/or its fields as keywords (``pairs=250,
    seed=0, ...``). Raises ``FliteError`` (with the install command) without flite, ``InputError`` on bad
    arguments or on a folder built with other settings.
    """
    o = slm_options(options, **overrides)
    out_dir = Path(out_dir)
    voices, train_voices = _voices(o.voices, o.heldout_voice)
    noise = tuple(float(x) for x in o.noise) if o.noise else None
    start = time.perf_counter()
    plan = plan_slm(o.pairs, o.seed, voices)
    counts = word_counts(lm_train_texts(plan.lm_pool, train_voices, o.lm_hours, o.seed))
    items = with_frequencies(plan.items, counts)
    if absent_share(items) < MIN_ABSENT_SHARE:
        raise InputError(f"only {absent_share(items):.0%} of the test words are absent from the LM corpus "
                         f"(lm_hours={o.lm_hours}); use fewer lm_hours")
    settings = {"slm_version": SLM_VERSION, "pairs": o.pairs, "seed": o.seed, "voices": list(voices),
                "heldout_voice": o.heldout_voice, "noise_snr_db": list(noise) if noise else None}
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir):
        check_settings(out_dir, settings)
        synthesize_corpus(out_dir / LM_DIR, voices=train_voices, hours=o.lm_hours, seed=o.seed, heldout_voice=None,
                          dev_fraction=0.1, workers=o.workers, noise=noise, sentences=plan.lm_pool, progress=o.progress)
        rendered = _render_missing(out_dir, items, noise, o.workers, o.progress)
        tasks = {t: {s: _write_split(out_dir, t, s, [i for i in items if (i.task, i.split) == (t, s)])
                     for s in SPLITS} for t in TASKS}
    lm_info = json.loads((out_dir / LM_DIR / "spidrkit.json").read_text())["splits"]
    write_sidecar(
        out_dir,
        kind="synthetic sLM benchmarks",
        synthesiser="flite (CMU), in-process",
        settings={**settings, "lm_hours": o.lm_hours},
        gold_columns={t: list(c) for t, c in GOLD_COLUMNS.items()},
        tasks=tasks,
        lexical_absent_share={s: round(absent_share(items, s), 4) for s in SPLITS},
        lm_train={"voices": list(train_voices), "splits": lm_info, "train_words": sum(counts.values()),
                  "train_vocabulary": len(counts)},
        rendered_this_run={**rendered, "total_wall_seconds": round(time.perf_counter() - start, 2)},
    )
    return out_dir
