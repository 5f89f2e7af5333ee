"""Fuzzed corpus readers: manifests (CSV, TSV, JSONL), alignment files, frame labels, phone maps, ABX item
files and the sLM benchmarks' ``gold.csv``: a valid result or an InputError naming the file, never another
exception (``tests/fuzzing.py``)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fuzzing import (
    BOM,
    EXAMPLES,
    FUZZ,
    JSON,
    JSON_NASTY,
    JSON_NASTY_LINES,
    Scratch,
    csv_tables,
    mutate_npy,
    mutated_bytes,
    mutated_records,
    outcome,
)
from spidrkit.cli import main
from spidrkit.data.corpora.alignments import ITEM_HEADER, read_alignment_table, read_frame_labels, read_item_file
from spidrkit.data.corpora.audio import load_audio
from spidrkit.data.corpora.manifest import ManifestEntry, read_manifest
from spidrkit.data.corpora.readers import read_phone_map, read_zerospeech_alignments
from spidrkit.data.synth.sentences import load_sentences
from spidrkit.errors import EXIT_OK, EXIT_USAGE
from spidrkit.evaluation.metrics.abx import read_abx_labels
from spidrkit.evaluation.slm.bench import read_benchmark
from spidrkit.evaluation.slm.rules import pair_scores, summarize

CSV_SEEDS = (
    "fileid,path,num_samples\na,a.wav,16000\nb/c,b/c.flac,0\n",
    "fileid,path,num_samples,speaker\na,/abs/a.wav,16000,s1\nb,b.wav,32000,\n",
    'fileid,path,num_samples\n"x,y","p, q.wav",5\r\nz,z.wav,7\r\n',
    "path,num_samples,fileid\nq.wav,12,q\n",
)
TSV_SEEDS = (
    "/data/corpus\na.wav\t16000\nsub/b.flac\t0\n",
    "rel\n\na.wav\t1\nb/c.wav\t2\n",
)
JSONL_SEEDS = (
    '{"fileid": "a", "path": "a.wav", "num_samples": 16000}\n'
    '{"fileid": "b", "path": "/x/b.wav", "num_samples": 1, "speaker": "s"}\n',
    '{"fileid": "c/d", "path": "c/d.flac", "num_samples": 0, "speaker": null}\n\n',
)
# malformed inputs make readers warn (odd pickle protocols, conversions, stale settings): not the point here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SCRATCH = Scratch()
MANIFEST_RECORDS = mutated_records(
    ({"fileid": "a", "path": "a.wav", "num_samples": 16000}, {"fileid": "b/c", "path": "/x/c.flac",
                                                             "num_samples": 0, "speaker": "s1"}),
    st.one_of(JSON_NASTY, JSON_NASTY, JSON), ("other",))
CSV_ROWS = (["fileid", "path", "num_samples", "speaker"], ["a", "a.wav", "16000", "s1"], ["b", "b/b.flac", "0", ""])


@st.composite
def jsonl_records(draw) -> str:
    """JSONL lines of manifest records with a value or two replaced by any JSON (NaN, 1e400, lists...)."""
    rows = draw(st.lists(st.one_of(MANIFEST_RECORDS.map(json.dumps), MANIFEST_RECORDS.map(json.dumps),
                                   JSON.map(json.dumps), JSON_NASTY_LINES),
                         min_size=1, max_size=3))
    return "".join(r + "\n" for r in rows)


def _check_manifest(entries: list[ManifestEntry] | None) -> None:
    if entries is None:
        return
    assert len({e.fileid for e in entries}) == len(entries)
    for e in entries:
        assert type(e.num_samples) is int and e.num_samples >= 0
        assert isinstance(e.fileid, str) and os.path.isabs(e.path)
        assert e.speaker is None or isinstance(e.speaker, str)


@FUZZ
@given(data=mutated_bytes(CSV_SEEDS, csv_tables(CSV_ROWS)))
@example(data=b"fileid,path,num_samples\r\n\xe9,a.wav,1\r\n")  # Latin-1: was UnicodeDecodeError
@example(data=b'fileid,path,num_samples\n"' + b"x" * 200_000 + b'",a.wav,1\n')  # was csv.Error (field limit)
@example(data=b"fileid,path,num_samples\na,a,b.wav,1\n")  # an unquoted comma: more cells than columns
@example(data=b"fileid,path,num_samples,path\na,a.wav,1,b.wav\n")  # a column named twice
def test_csv_manifest(data):
    path = SCRATCH.write("m.csv", data)
    _check_manifest(outcome(lambda: read_manifest(path), path))


@FUZZ
@given(data=mutated_bytes(TSV_SEEDS))
@example(data=b"/data\n\t16000\n")  # no file name: was ValueError from Path.with_suffix
@example(data=b"/data\n/\t16000\n")
def test_tsv_manifest(data):
    path = SCRATCH.write("m.tsv", data)
    _check_manifest(outcome(lambda: read_manifest(path), path))


@FUZZ
@given(data=mutated_bytes(JSONL_SEEDS, jsonl_records()))
@example(data=b'{"fileid": "a", "path": "a.wav", "num_samples": Infinity}\n')  # was OverflowError
@example(data=b"[" * 3000 + b"\n")  # was RecursionError
@example(data=b'{"fileid": "a", "path": "a.wav", "num_samples": ' + b"9" * 5000 + b"}\n")  # was ValueError (digits)
@example(data=b'{"fileid": "a", "path": "a\\u0000.wav", "num_samples": 1}\n')  # a NUL in the path
def test_jsonl_manifest(data):
    path = SCRATCH.write("m.jsonl", data)
    _check_manifest(outcome(lambda: read_manifest(path), path))


def test_a_csv_manifest_with_a_bom_reads_its_header(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(BOM + CSV_SEEDS[0].encode())
    assert [(e.fileid, e.num_samples) for e in read_manifest(path)] == [("a", 16000), ("b/c", 0)]



# --- alignments, frame labels, phone maps, item files --------------------------------------------------------
ALIGNMENT_SEEDS = (
    "utt1 0.00 0.10 SIL s1\nutt1 0.10 0.25 AH s1\nutt2 0 0.5 B\n",
    "file onset offset phone\nu 0.0 0.05 K\n# a comment\nu\t0.05\t0.2\tAE\n",
)
FRAME_SEEDS = ("u1 SIL SIL AH AH B\nu2 1 1 2 2 2 2 3\n", "a/b 1 2 3 3 3 3 3\n\n# c\nc 3\n")
PHONE_MAP_SEEDS = ("SIL 0\nAH 1\n# x\n2 B\n3 -1\n",)
ITEM_SEEDS = (
    "#file onset offset #phone prev-phone next-phone speaker\nu1 0.1000 0.2500 AH SIL B s1\nu2 0.0 0.1 K AE T s2\n",
    "#file onset offset #phone prev-phone next-phone speaker\n\nu/1 1 2 a b c d\n",
)
PHONE_MAP = {"1": "a", "2": "b", "3": "c"}


def _check_alignments(result) -> None:
    if result is None:
        return
    for intervals in result.values():
        assert intervals == sorted(intervals, key=lambda iv: iv[0])
        for on, off, label in intervals:
            assert math.isfinite(on) and math.isfinite(off) and 0 <= on <= off and isinstance(label, str)


@FUZZ
@given(data=mutated_bytes(ALIGNMENT_SEEDS + FRAME_SEEDS + ITEM_SEEDS[:1]))
@example(data=b"u nan 0.1 AH\n")  # NaN and infinite times were accepted
@example(data=b"u 0 inf AH\n")
@example(data=b"u -1 0.1 AH\n")
def test_alignment_file(data):
    path = SCRATCH.write("phones.txt", data)
    result = outcome(lambda: read_alignment_table(path), path)
    if result is not None:
        _check_alignments(result[0])
        assert set(result[1]) <= set(result[0])
    _check_alignments((outcome(lambda: read_zerospeech_alignments(path, PHONE_MAP), path) or (None,))[0])


@FUZZ
@given(data=mutated_bytes(FRAME_SEEDS + ALIGNMENT_SEEDS[:1]), mapped=st.booleans())
def test_frame_labels(data, mapped):
    path = SCRATCH.write("frames.txt", data)
    frames = outcome(lambda: read_frame_labels(path, PHONE_MAP if mapped else None), path)
    assert frames is None or all(isinstance(x, str) for labels in frames.values() for x in labels)


@FUZZ
@given(data=mutated_bytes(PHONE_MAP_SEEDS))
def test_phone_map(data):
    path = SCRATCH.write("phones_map.txt", data)
    mapping = outcome(lambda: read_phone_map(path), path)
    assert mapping is None or all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


@FUZZ
@given(data=mutated_bytes(ITEM_SEEDS))
@example(data=ITEM_SEEDS[0].encode() + b"u3 nan 0.2 AH SIL B s1\n")  # was accepted
@example(data=b"\xff\xfe#\x00")  # UTF-16: was UnicodeDecodeError
def test_item_file(data):
    path = SCRATCH.write("dev.item", data)
    items = outcome(lambda: read_item_file(path), path)
    for it in items or []:
        assert math.isfinite(it.onset) and math.isfinite(it.offset) and 0 <= it.onset <= it.offset
    _check_alignments((outcome(lambda: read_zerospeech_alignments(path), path) or (None,))[0])


@FUZZ
@given(data=mutated_bytes(ITEM_SEEDS))
@example(data=ITEM_SEEDS[0].encode() + b"u3 0.3 0.2 AH SIL B s1\n")  # onset > offset: was passed to fastabx
@example(data=ITEM_SEEDS[0].encode() + b"u3 0.1 0.2 AH SIL\n")  # was polars ComputeError (ragged line)
@example(data=b"#file offset\nu 1\n")  # was polars ColumnNotFoundError
def test_abx_item_labels(data):
    """The item file as fastabx reads it (polars), checked by spidrkit before the ABX task is built."""
    path = SCRATCH.write("abx.item", data)
    labels = outcome(lambda: read_abx_labels(path), path)
    if labels is not None:
        assert labels.height >= 1 and set(ITEM_HEADER) <= set(labels.columns)
        assert labels["onset"].null_count() == 0 and (labels["onset"] <= labels["offset"]).all()


# --- sLM benchmarks: gold.csv ------------------------------------------------------------------------------
GOLD_SEEDS = {
    "lexical": ("id,filename,word,phones,correct,frequency,voice,length\n"
                "1,a,cat,k ae t,1,10,A,3\n1,b,kat,k a t,0,10,A,3\n2,c,dog,d o g,1,0.5,A,3\n2,d,dag,d a g,0,0.5,A,3\n",),
    "syntactic": ("id,filename,voice,type,subtype,correct,transcription\n"
                  "7,a,A,agr,n,1,the dog runs\n7,b,A,agr,n,0,the dog run\n",),
    "storycloze": ("id,filename,voice,correct,topic,transcription\n3,c,A,1,food,\"a, b\"\n3,d,A,0,food,c\n",),
}
GOLD_FILES = st.one_of(*(st.tuples(st.just(task), mutated_bytes(s, csv_tables(list(csv.reader(io.StringIO(s[0]))))))
                         for task, s in GOLD_SEEDS.items()))
LEXICAL = GOLD_SEEDS["lexical"][0].encode()


@FUZZ
@given(gold=GOLD_FILES)
@example(gold=("lexical", LEXICAL + b"3,a,x,x,1,1,A,1,extra\n"))  # more cells than columns: was AttributeError
@example(gold=("lexical", LEXICAL.replace(b"cat", b'"' + b"c" * 200_000 + b'"')))  # was csv.Error (field limit)
@example(gold=("lexical", LEXICAL.replace(b",a,", b"," + b"a" * 300 + b",")))  # was OSError (file name too long)
@example(gold=("syntactic", b"\xff\xfeid"))  # UTF-16: was UnicodeDecodeError
def test_gold_csv(gold):
    task, content = gold
    root = SCRATCH.root / f"bench_{task}"
    for name in "abcd":
        SCRATCH.write(f"bench_{task}/{task}/dev/{name}.wav", b"")
    path = SCRATCH.write(f"bench_{task}/{task}/dev/gold.csv", content)

    def score():
        split = next(s for s in read_benchmark(root) if s.task == task)
        pairs = pair_scores(split, {it.filename: float(len(it.filename)) for it in split.items})
        return split, summarize(pairs, n_bootstrap=2)

    result = outcome(score, path)
    if result is not None:
        assert all(it.path.is_file() and isinstance(it.correct, bool) for it in result[0].items)
        assert 0.0 <= result[1]["all"]["score"] <= 100.0


def test_a_gold_csv_with_a_bom_reads_its_header(tmp_path):
    folder = tmp_path / "lexical" / "dev"
    folder.mkdir(parents=True)
    for name in "abcd":
        (folder / f"{name}.wav").write_bytes(b"")
    (folder / "gold.csv").write_bytes(BOM + GOLD_SEEDS["lexical"][0].encode())
    (split,) = read_benchmark(tmp_path)
    assert [(it.filename, it.pair, it.correct) for it in split.items] == [
        ("a", "1", True), ("b", "1", False), ("c", "2", True), ("d", "2", False)]


# --- audio ---------------------------------------------------------------------------------------------------
def _audio(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


_TONE = np.sin(np.arange(400) / 5.0).astype(np.float32) * 0.5
AUDIO_SEEDS = (_audio(_TONE, 16000, "WAV", "PCM_16"), _audio(np.stack([_TONE, _TONE], 1), 8000, "WAV", "FLOAT"),
               _audio(_TONE, 22050, "FLAC", "PCM_16"))
# the fields of a canonical WAV header: channels, sample rate, byte rate, block align, bits, data size
WAV_FIELDS = st.sampled_from(((22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4)))
WAV_VALUES = st.sampled_from((0, 1, 2, 3, 7, 255, 65535, 2**31 - 1, 2**32 - 1))


@st.composite
def audio_files(draw) -> bytes:
    """A short WAV or FLAC file with a header field of the WAV set to an odd value, bytes edited, or cut."""
    data = draw(st.sampled_from(AUDIO_SEEDS))
    if data[:4] == b"RIFF" and draw(st.booleans()):
        (at, size), value = draw(WAV_FIELDS), draw(WAV_VALUES)
        data = data[:at] + (value % 2 ** (8 * size)).to_bytes(size, "little") + data[at + size:]
    return draw(mutate_npy(data)) if draw(st.integers(0, 2)) == 0 else data


@FUZZ
@given(data=st.one_of(audio_files(), st.binary(max_size=100)), suffix=st.sampled_from(("wav", "flac")))
@example(data=AUDIO_SEEDS[0][:24] + (1).to_bytes(4, "little") + AUDIO_SEEDS[0][28:], suffix="wav")  # 1 Hz
def test_audio_file(data, suffix):
    path = SCRATCH.write(f"a.{suffix}", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (truncated files and conversions warn)
        x = outcome(lambda: load_audio(path), path)
    assert x is None or (x.ndim == 1 and x.numel() > 0 and bool(torch.isfinite(x).all()))


@FUZZ
@given(data=mutated_bytes(("# the sentences\nThe cat sat.\n\nA dog ran home.\n",)))
@example(data=b"The cat sat.\n\xe9t\xe9\n")  # Latin-1: was UnicodeDecodeError
def test_sentence_list(data):
    path = SCRATCH.write("sentences.txt", data)
    sentences = outcome(lambda: load_sentences(path), path)
    assert sentences is None or all(s and s == s.strip() and not s.startswith("#") for s in sentences)


# --- the CLI on a fuzzed manifest: exit status 2 and one line naming the file, never 70 -------------------------
@settings(FUZZ, max_examples=max(1, EXAMPLES // 5))  # (the CLI costs 8 ms a call; the reader has its 500 above)
@given(data=mutated_bytes(CSV_SEEDS, csv_tables(CSV_ROWS)))
@example(data=b"fileid,path,num_samples\r\na,a.wav,NaN\r\n")
@example(data=b"\xff\xfef\x00i\x00")  # UTF-16
def test_cli_on_a_fuzzed_manifest(data):
    """``spidrkit units export UNITS --manifest M.csv``: a manifest that cannot be read is exit status 2 with one
    stderr line naming it; one that reads is used (exit 0 when it lists the utterance ``a``, else 2 naming the
    units file, or the manifest when it lists no file)."""
    manifest = SCRATCH.write("cli/m.csv", data)
    units = SCRATCH.write("cli/units.txt", "a 1 2 3\n")
    refused = outcome(lambda: read_manifest(manifest), manifest) is None
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = main(["units", "export", str(units), "--k", "4", "--manifest", str(manifest), "-o",
                     str(SCRATCH.root / "o"), "--force"])  # each example replaces the last one's export
    err = stderr.getvalue()
    assert code in (EXIT_OK, EXIT_USAGE) and (code == EXIT_USAGE) == bool(err) and "Traceback" not in err
    if code == EXIT_USAGE:
        assert err.startswith("spidrkit units: error: ") and err.count("\n") == 1
        assert str(manifest) in err or (not refused and str(units) in err)
