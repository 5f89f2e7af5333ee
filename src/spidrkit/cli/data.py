"""``spidrkit data``: build the aligned synthetic corpus, or read a real one into manifests.

- ``spidrkit data synth -o OUT [--voices ...] [--hours H] [--seed S] [--heldout-voice V] [--workers N]
  [--utterance-seconds LOW-HIGH]``:
  a multi-speaker corpus read by flite, with exact phone and word alignments, triphone item files and
  10 ms frame labels (see :mod:`spidrkit.data.synth.corpus`). Re-running the same command resumes it.
- ``spidrkit data synth-slm -o OUT [--pairs N] [--seed S] [--workers W] [--lm-hours H]``: synthetic sWUGGY-,
  sBLIMP- and tSC-style benchmarks (ZeroSpeech gold.csv) and the LM's training corpus
  (see :mod:`spidrkit.data.slm.build`). Re-running the same command resumes it.
- ``spidrkit data librispeech ROOT -o OUTDIR``: one manifest per split (OUTDIR/dev-clean.csv, ...).
- ``spidrkit data librilight ROOT -o OUTDIR``: one manifest per subset (small, medium, ...).
- ``spidrkit data folder ROOT -o MANIFEST [--alignments FILE]``: any folder of audio; with a phone
  alignment (ZeroSpeech layout or 10 ms frame labels), the item file and frame labels beside MANIFEST.

Python API: :func:`spidrkit.data.synth.corpus.synthesize_corpus`, :func:`spidrkit.data.slm.build.synthesize_slm`,
:mod:`spidrkit.data.corpora.readers`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spidrkit.cli import UserError
from spidrkit.cli.flags import add_output, show_progress
from spidrkit.config import SAMPLE_RATE

MAX_REPORTED = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spidrkit.data.synth.corpus import DEFAULT_NOISE
    from spidrkit.data.synth.engines import VOICES
    from spidrkit.data.synth.plan import DEFAULT_VOICES

    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("synth", help="build the aligned multi-speaker corpus (flite, festival, piper, espeak-ng)",
                       description="Build a multi-speaker English corpus: flite's and festival's voices with "
                       "their own phone and word alignments, piper's and espeak-ng's voices as training-only "
                       "speech (no alignments). Re-running resumes.",
                       epilog="example: spidrkit data synth -o corpus/ --hours 2 --heldout-voice kal16,ked")
    add_output(p, "OUT", "output folder", required=True, positional=True, type=Path)
    p.add_argument("--voices", nargs="+", default=["all"], choices=["all", *VOICES], metavar="VOICE",
                   help="corpus voices, or 'all' (default): every voice whose synthesiser is installed; "
                   f"available: {' '.join(VOICES)}; 'spidrkit data voices' lists them")
    p.add_argument("--hours", type=float, default=2.0, help="hours of speech in train + dev (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--heldout-voice", default=None, type=_voice_list, metavar="VOICE[,VOICE]",
                   help="keep these voices (with alignments: flite's, festival's) out of train/dev; they read "
                   "sentences of their own into a 'heldout' split")
    p.add_argument("--dev-fraction", type=float, default=0.1, help="share of sentences for dev (default: 0.1)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default: 2)")
    p.add_argument("--snr", type=float, nargs=2, default=list(DEFAULT_NOISE), metavar=("LOW", "HIGH"),
                   help=f"SNR range in dB of the light background noise (default: {DEFAULT_NOISE[0]:g} "
                   f"{DEFAULT_NOISE[1]:g})")
    p.add_argument("--no-noise", action="store_true", help="no background noise (dither only)")
    p.add_argument("--force", action="store_true",
                   help="write into an existing folder that is not a corpus of `data synth` (its files are replaced), "
                   "or start anew a corpus built with other settings (it is deleted first)")
    p.add_argument("--utterance-seconds", default=None, metavar="LOW-HIGH",
                   help="join consecutive sentences of one voice into utterances of LOW-HIGH seconds (e.g. 8-20) "
                   "with 0.15-0.6 s pauses of background noise (default: one sentence per utterance)")

    _add_synth_slm(sub, VOICES, DEFAULT_VOICES)
    p = sub.add_parser("voices", help="the corpus voices, their engines and whether they are installed",
                       description="List the voices 'data synth' can use. --profile measures each installed one "
                       "(median F0, F1, F2, seconds per character, spectral envelope) and names the pairs that "
                       "are one speaker (the known duplicates of other engines included when installed).",
                       epilog="example: spidrkit data voices --profile")
    p.add_argument("--profile", action="store_true", help="measure the installed voices (needs praat-parselmouth)")

    for name, what in (("librispeech", "split (dev-clean, train-clean-100, ...)"),
                       ("librilight", "subset (small, medium, large, ...)")):
        p = sub.add_parser(name, help=f"one manifest per {what} of a {name} folder",
                           description=f"Write one manifest per {what} of a {name} folder, with lengths and "
                           "speakers.", epilog=f"example: spidrkit data {name} /data/{name} -o manifests/")
        p.add_argument("root", type=Path, metavar="ROOT", help=f"the {name} folder, or one {what.split()[0]}")
        add_output(p, "OUTDIR", "manifest folder", required=True, type=Path)
        p.add_argument("--format", choices=["csv", "tsv", "jsonl"], default="csv", help="manifest format")
        p.add_argument("--threads", type=int, default=16, help="threads reading headers")
        p.add_argument("--force", action="store_true", help="replace existing manifests in OUTDIR")

    p = sub.add_parser("folder", help="a manifest of any folder of audio, with optional phone alignments",
                       description="List the audio of a folder, with lengths, as a manifest (CSV, fairseq TSV or "
                       "JSONL by the suffix of -o); with --alignments, the evaluation files beside it. "
                       "`spidrkit manifest DIR -o FILE` is the same command.",
                       epilog="example: spidrkit data folder wavs/ -o wavs.csv --alignments alignments.txt")
    add_folder_arguments(p)


def add_folder_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``data folder`` (and of its alias ``manifest``)."""
    from spidrkit.data.corpora.manifest import AUDIO_EXTENSIONS

    p.add_argument("root", type=Path, metavar="DIR", help="folder searched recursively for audio")
    add_output(p, "MANIFEST", "manifest to write (.csv, .tsv as fairseq, .jsonl)", required=True, type=Path)
    p.add_argument("--alignments", type=Path, default=None, metavar="FILE",
                   help="phone alignment ('file onset offset phone [speaker]') or 10 ms frame-label file")
    p.add_argument("--phone-map", type=Path, default=None, metavar="FILE",
                   help="'phone id' lines mapping the labels of --alignments (e.g. CPC's phones.txt)")
    p.add_argument("--speaker-from-dir", type=int, default=None, metavar="N",
                   help="the N-th folder below DIR names the speaker (1 = top level, as LibriSpeech)")
    p.add_argument("--ext", default=",".join(AUDIO_EXTENSIONS),
                   help="comma-separated audio extensions, case-insensitive (default: %(default)s)")
    p.add_argument("--sample-rate", type=int, default=SAMPLE_RATE,
                   help="rate the lengths are counted at (default: %(default)s, the model's)")
    p.add_argument("--threads", type=int, default=min(32, (os.cpu_count() or 1) * 4),
                   help="threads reading headers (default: %(default)s)")
    p.add_argument("--absolute", action="store_true", help="write absolute paths (CSV, JSONL)")
    p.add_argument("--force", action="store_true", help="replace an existing MANIFEST")


def _add_synth_slm(sub, voices, default_voices) -> None:
    from spidrkit.data.slm.build import DEFAULT_HELDOUT, DEFAULT_LM_HOURS, DEFAULT_PAIRS

    p = sub.add_parser("synth-slm", help="synthetic sWUGGY / sBLIMP / tSC benchmarks and their LM corpus",
                       description="Render sWUGGY-, sBLIMP- and tSC-style benchmarks (ZeroSpeech gold.csv) "
                       "and the LM's training corpus with flite. Re-running resumes.",
                       epilog="example: spidrkit data synth-slm -o slm_bench/ --pairs 100")
    add_output(p, "OUT", "output folder", required=True, positional=True, type=Path)
    p.add_argument("--pairs", type=int, default=DEFAULT_PAIRS,
                   help=f"pair ids per task in test, each read by every voice; dev has a fifth "
                   f"(default: {DEFAULT_PAIRS})")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default: 2)")
    p.add_argument("--lm-hours", type=float, default=DEFAULT_LM_HOURS,
                   help=f"hours of speech in the LM corpus, train + dev (default: {DEFAULT_LM_HOURS:g})")
    p.add_argument("--voices", nargs="+", default=list(default_voices), choices=voices, metavar="VOICE",
                   help=f"flite voices (default: {' '.join(default_voices)})")
    p.add_argument("--heldout-voice", default=DEFAULT_HELDOUT, metavar="VOICE",
                   help=f"reads the benchmarks but not the LM corpus; 'none' for none (default: {DEFAULT_HELDOUT})")
    p.add_argument("--force", action="store_true",
                   help="write into an existing folder that is not a build of `data synth-slm` (files replaced)")


def run(args: argparse.Namespace) -> int:
    from spidrkit.data.corpora.alignments import AlignmentError
    from spidrkit.data.corpora.manifest import ManifestError
    from spidrkit.data.corpora.readers import CorpusError
    from spidrkit.data.synth.flite import FliteError
    from spidrkit.io import check_output_dir, refuse_overwrite

    if args.action in ("synth", "synth-slm"):
        _check_synth_out(check_output_dir(args.output, "-o"), args)
    elif args.action in ("librispeech", "librilight"):
        check_output_dir(args.output, "-o")
    elif args.action == "folder":
        refuse_overwrite([args.output], args.force, "data folder")
    try:
        actions = {"synth": _synth, "synth-slm": _synth_slm, "librispeech": _corpus, "librilight": _corpus,
                   "folder": _folder, "voices": _voices}
        return actions[args.action](args)
    except FliteError as e:
        raise UserError(str(e)) from e
    except (CorpusError, AlignmentError, ManifestError, ValueError) as e:
        raise UserError(str(e)) from e


def _check_synth_out(out: Path, args: argparse.Namespace) -> None:
    """An existing folder is resumed when a build of this command made it (its records/settings.json);
    a folder of other files is written into only with --force."""
    from spidrkit.data.synth.corpus import RECORDS, SETTINGS
    from spidrkit.io import refuse_overwrite

    if out.is_dir() and any(out.iterdir()) and not (out / RECORDS / SETTINGS).is_file():
        refuse_overwrite([out], args.force, f"data {args.action}", "choose a new or empty folder")


def _voice_list(text: str) -> list[str]:
    from spidrkit.data.synth.engines import VOICES
    from spidrkit.data.synth.plan import heldout_list

    names = heldout_list(text)
    unknown = [n for n in names if n not in VOICES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown voice(s) {', '.join(unknown) or repr(text)}; choose from "
                                         f"{', '.join(VOICES)}")
    return names


def _voices(args) -> int:
    from spidrkit.data.synth import engines

    found, absent = engines.available_voices()
    print(f"{'voice':16s} {'engine':9s} {'aligned':8s} {'installed':10s} description")
    for name, v in engines.VOICES.items():
        print(f"{name:16s} {v.engine:9s} {'yes' if v.aligned else 'no':8s} {'yes' if name in found else 'no':10s} "
              f"{v.description}")
    for name, why in absent.items():
        print(f"  {name}: {why}")
    if not args.profile:
        return 0
    try:
        import parselmouth  # noqa: F401
    except ImportError:
        raise UserError("--profile needs praat-parselmouth: pip install praat-parselmouth") from None
    targets = {n: (engines.VOICES[n].engine, engines.VOICES[n].ident) for n in found}
    for dup in engines.DUPLICATES:
        engine, ident = dup.split(":")
        if engine == "festival" and engines.missing("festival") is None and engines.festival_has(ident):
            targets[dup] = (engine, ident)
    profiles = {n: engines.voice_profile(*t) for n, t in targets.items()}
    print(f"\n{'voice':22s} {'F0 Hz':>7s} {'F1 Hz':>7s} {'F2 Hz':>7s} {'s/char':>7s}")
    for n, pr in profiles.items():
        print(f"{n:22s} {pr['f0']:7.1f} {pr['f1']:7.1f} {pr['f2']:7.1f} {pr['rate']:7.4f}")
    names = list(profiles)
    pairs = sorted((engines.profile_distance(profiles[a], profiles[b]), a, b)
                   for i, a in enumerate(names) for b in names[i + 1:])
    print(f"\nclosest pairs (spectral envelope distance; one speaker under {engines.SAME_SPEAKER_DISTANCE:g}):")
    for d, a, b in pairs[:5]:
        print(f"  {d:6.1f}  {a} - {b}" + ("  <- one speaker" if d < engines.SAME_SPEAKER_DISTANCE else ""))
    return 0


def _synth(args) -> int:
    from spidrkit.data.synth.corpus import synthesize_corpus
    from spidrkit.io import read_sidecar

    voices = "all" if args.voices == ["all"] else tuple(args.voices)
    if "all" in args.voices and len(args.voices) > 1:
        raise UserError("--voices: give 'all' alone or a list of voices")
    out = synthesize_corpus(  # its warnings are one line each (cli.main)
        args.output, voices=voices, hours=args.hours, seed=args.seed, heldout_voice=args.heldout_voice,
        dev_fraction=args.dev_fraction, workers=args.workers, noise=None if args.no_noise else tuple(args.snr),
        progress=show_progress(args), utterance_seconds=args.utterance_seconds, force=args.force,
    )
    info = read_sidecar(out)
    for split, t in info["splits"].items():
        print(f"{split}: {t['utterances']} utterances, {t['hours'] * 60:.1f} min, speakers {' '.join(t['speakers'])}")
    run_info = info["rendered_this_run"]
    if run_info["utterances"]:
        rate = run_info["speech_seconds"] / max(run_info["wall_seconds"], 1e-9)
        print(f"rendered {run_info['utterances']} utterances in {run_info['wall_seconds']:.0f} s "
              f"({rate:.0f} min of speech per min)")
    print(f"wrote {out}")
    return 0


def _synth_slm(args) -> int:
    from spidrkit.data.slm.build import synthesize_slm
    from spidrkit.io import read_sidecar

    heldout = None if args.heldout_voice.lower() == "none" else args.heldout_voice
    out = synthesize_slm(args.output, pairs=args.pairs, seed=args.seed, workers=args.workers, lm_hours=args.lm_hours,
                         voices=tuple(args.voices), heldout_voice=heldout, progress=show_progress(args))
    info = read_sidecar(out)
    for task, splits in info["tasks"].items():
        print(f"{task}: " + ", ".join(f"{s} {t['pairs']} pairs ({t['ids']} ids), {t['hours'] * 60:.1f} min"
                                      for s, t in splits.items()))
    lm = info["lm_train"]["splits"]
    print("lm_train: " + ", ".join(f"{s} {t['utterances']} utterances, {t['hours'] * 60:.1f} min"
                                   for s, t in lm.items())
          + f"; test words absent from it: {info['lexical_absent_share']['test']:.0%}")
    print(f"took {info['rendered_this_run']['total_wall_seconds']:.0f} s; wrote {out}")
    return 0


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise UserError(f"{flag} {value}: give a number >= 1")
    return value


def _write_folder_sidecar(args, options, result) -> None:
    """``MANIFEST``'s sidecar, and ``MANIFEST.skipped.tsv`` listing the files left out (if any)."""
    from spidrkit.io import write_sidecar, write_text_atomic

    failures = result.scan.failures
    if failures:
        skipped = args.output.with_name(args.output.name + ".skipped.tsv")
        write_text_atomic(skipped, "path\treason\n" + "".join(f"{p}\t{r}\n" for p, r in failures))
        print(f"{len(failures)} files skipped, listed in {skipped}", file=sys.stderr)
    write_sidecar(args.output, kind="manifest", root=str(args.root.resolve()), extensions=list(options.extensions),
                  sample_rate=options.sample_rate, num_files=len(result.scan.entries), num_skipped=len(failures),
                  total_samples=sum(e.num_samples for e in result.scan.entries),
                  speaker_from_dir=options.speaker_from_dir, alignments=str(args.alignments or "") or None)


def _report_failures(failures) -> None:
    for path, reason in failures[:MAX_REPORTED]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(failures) > MAX_REPORTED:
        print(f"... and {len(failures) - MAX_REPORTED} more skipped files", file=sys.stderr)


def _corpus(args) -> int:
    from spidrkit.data.corpora.readers import read_librilight, read_librispeech, write_split_manifests
    from spidrkit.io import refuse_overwrite

    reader = read_librispeech if args.action == "librispeech" else read_librilight
    scans = reader(args.root, threads=args.threads, progress=show_progress(args))
    refuse_overwrite([args.output / f"{split}.{args.format}" for split, scan in scans.items() if scan.entries],
                     args.force, f"data {args.action}")
    for scan in scans.values():
        _report_failures(scan.failures)
    written = write_split_manifests(scans, args.output, args.format)
    if not written:
        raise UserError(f"no readable audio under {args.root}")
    for split, path in written.items():
        entries = scans[split].entries
        hours = sum(e.num_samples for e in entries) / SAMPLE_RATE / 3600
        speakers = len({e.speaker for e in entries})
        print(f"{split}: {len(entries)} files, {hours:.2f} h, {speakers} speakers -> {path}")
    return 0


def _folder(args) -> int:
    from spidrkit.data.corpora.manifest import manifest_format, parse_extensions
    from spidrkit.data.corpora.readers import FolderScan, folder_corpus, read_phone_map

    options = FolderScan(parse_extensions(args.ext), args.speaker_from_dir,
                         _positive(args.sample_rate, "--sample-rate"), _positive(args.threads, "--threads"),
                         show_progress(args), not args.absolute)
    manifest_format(args.output)
    phone_map = read_phone_map(args.phone_map) if args.phone_map else None
    result = folder_corpus(args.root, args.output, args.alignments, phone_map, options)
    _write_folder_sidecar(args, options, result)
    _report_failures(result.scan.failures)
    hours = sum(e.num_samples for e in result.scan.entries) / options.sample_rate / 3600
    print(f"wrote {result.manifest}: {len(result.scan.entries)} files, {hours:.2f} h")
    if result.annotations:
        print(f"alignments for {len(result.scan.entries) - len(result.unaligned)} files: "
              + ", ".join(str(p) for p in result.annotations.values()))
        if result.unaligned:
            print(f"warning: {len(result.unaligned)} audio files have no alignment, e.g. {result.unaligned[0]}",
                  file=sys.stderr)
        if result.unmatched:
            print(f"warning: {len(result.unmatched)} aligned ids have no audio, e.g. {result.unmatched[0]}",
                  file=sys.stderr)
    return 0
