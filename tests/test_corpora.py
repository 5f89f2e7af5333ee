"""Readers for LibriSpeech, Libri-Light, ZeroSpeech alignments and audio folders; alignment file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spidrkit.cli import main
from spidrkit.data.corpora.alignments import (
    Item,
    intervals_from_frames,
    read_alignment_table,
    read_alignments,
    read_frame_labels,
    read_item_file,
    write_alignments,
    write_item_file,
)
from spidrkit.data.corpora.manifest import read_manifest
from spidrkit.data.corpora.readers import (
    CorpusError,
    FolderScan,
    folder_corpus,
    read_librilight,
    read_librispeech,
    read_phone_map,
    read_zerospeech_alignments,
)


def _audio(path: Path, n: int, rate: int = 16000, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = (0.1 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
    sf.write(path, x, rate, format=fmt)
    return path


@pytest.fixture
def librispeech(tmp_path) -> Path:
    root = tmp_path / "LibriSpeech"
    files = {
        "dev-clean/84/121123/84-121123-0000.flac": 8000,
        "dev-clean/84/121123/84-121123-0001.flac": 4800,
        "dev-clean/174/50561/174-50561-0002.flac": 16000,
        "train-clean-100/19/198/19-198-0000.flac": 3200,
    }
    for rel, n in files.items():
        _audio(root / rel, n)
    (root / "dev-clean/84/121123/84-121123.trans.txt").write_text("84-121123-0000 HELLO\n")
    (root / "README.TXT").write_text("not audio")
    return root


def test_librispeech_one_manifest_per_split(librispeech, tmp_path, capsys):
    scans = read_librispeech(librispeech, progress=False)
    assert sorted(scans) == ["dev-clean", "train-clean-100"]
    dev = {e.fileid: (e.num_samples, e.speaker) for e in scans["dev-clean"].entries}
    assert dev == {"84-121123-0000": (8000, "84"), "84-121123-0001": (4800, "84"), "174-50561-0002": (16000, "174")}
    assert main(["data", "librispeech", str(librispeech), "-o", str(tmp_path / "m"), "--quiet"]) == 0
    back = read_manifest(tmp_path / "m" / "dev-clean.csv")
    assert {(e.fileid, e.num_samples, e.speaker) for e in back} == {(k, n, s) for k, (n, s) in dev.items()}
    assert all(Path(e.path).is_file() for e in back)
    assert [(e.fileid, e.speaker) for e in read_manifest(tmp_path / "m" / "train-clean-100.csv")] == [
        ("19-198-0000", "19")
    ]
    assert "dev-clean: 3 files" in capsys.readouterr().out
    # a split folder given directly is read as that one split
    assert list(read_librispeech(librispeech / "dev-clean", progress=False)) == ["dev-clean"]


def test_librispeech_bad_layout_and_missing_root(librispeech, tmp_path, capsys):
    _audio(librispeech / "dev-clean/84/121123/84-999-0000.flac", 100)  # chapter does not match its folder
    with pytest.raises(CorpusError, match="SPEAKER-CHAPTER-UTT"):
        read_librispeech(librispeech, progress=False)
    assert main(["data", "librispeech", str(tmp_path / "nowhere"), "-o", str(tmp_path / "m")]) == 2
    assert "no folder" in capsys.readouterr().err


def test_librilight_ids_keep_speaker_and_book(tmp_path):
    root = tmp_path / "librilight"
    _audio(root / "small/100/sea_fairies/01_baum.flac", 1600)
    _audio(root / "small/200/emma/01_baum.flac", 3200)  # same name, other speaker
    _audio(root / "small/200/emma/02_austen.flac", 8000, rate=8000)  # 8 kHz: counted at 16 kHz
    _audio(root / "medium/300/book/a.flac", 160)
    scans = read_librilight(root, progress=False)
    assert sorted(scans) == ["medium", "small"]
    small = {e.fileid: (e.num_samples, e.speaker) for e in scans["small"].entries}
    assert small == {
        "100/sea_fairies/01_baum": (1600, "100"),
        "200/emma/01_baum": (3200, "200"),
        "200/emma/02_austen": (16000, "200"),
    }
    assert main(["data", "librilight", str(root), "-o", str(tmp_path / "out"), "--format", "jsonl", "--quiet"]) == 0
    assert len(read_manifest(tmp_path / "out" / "small.jsonl")) == 3


def test_alignment_file_round_trip_and_header(tmp_path):
    al = {"u1": [(0.0, 0.12, "SIL"), (0.12, 0.2, "AH")], "u2": [(0.0, 0.5, "B")]}
    path = write_alignments(tmp_path / "a.txt", al, {"u1": "s1", "u2": "s2"})
    assert path.read_text().splitlines()[1] == "u1 0.1200 0.2000 AH s1"
    phones, speakers = read_alignment_table(path)
    assert phones == al and speakers == {"u1": "s1", "u2": "s2"}
    # ZeroSpeech-style TSV with a header line, unsorted lines, no speaker column
    tsv = tmp_path / "z.tsv"
    tsv.write_text("file\tonset\toffset\tphone\nf 0.30 0.50 b\nf 0.00 0.30 a\n")
    assert read_alignments(tsv) == {"f": [(0.0, 0.3, "a"), (0.3, 0.5, "b")]}
    tsv.write_text("f 0.30 0.20 b\n")
    with pytest.raises(ValueError, match="before onset"):
        read_alignments(tsv)


def test_item_file_round_trip_and_fastabx_reads_it(tmp_path):
    from fastabx.dataset import read_labels

    items = [Item("f1", 0.1, 0.18, "AH", "SIL", "B", "spk1"), Item("f2", 1.25, 1.3125, "ZH", "EH", "ER", "spk2")]
    path = write_item_file(tmp_path / "x.item", items)
    assert path.read_text().splitlines()[0] == "#file onset offset #phone prev-phone next-phone speaker"
    assert read_item_file(path) == [items[0], Item("f2", 1.25, 1.3125, "ZH", "EH", "ER", "spk2")]
    df = read_labels(path, "#file", "onset", "offset")
    assert df["#phone"].to_list() == ["AH", "ZH"] and float(df["offset"][1]) == 1.3125
    phones, speakers = read_zerospeech_alignments(path)
    assert phones == {"f1": [(0.1, 0.18, "AH")], "f2": [(1.25, 1.3125, "ZH")]}
    assert speakers == {"f1": "spk1", "f2": "spk2"}


def test_frame_files_with_a_phone_map(tmp_path):
    (tmp_path / "phones.txt").write_text("SIL 0\nAH 1\nB 2\n")
    frames = tmp_path / "converted_aligned_phones.txt"
    frames.write_text("u1 0 0 0 1 1 2 2 2 0\n")
    phone_map = read_phone_map(tmp_path / "phones.txt")
    assert read_frame_labels(frames, phone_map)["u1"][:4] == ["SIL", "SIL", "SIL", "AH"]
    phones, speakers = read_zerospeech_alignments(frames, phone_map)
    assert phones == {"u1": [(0.0, 0.03, "SIL"), (0.03, 0.05, "AH"), (0.05, 0.08, "B"), (0.08, 0.09, "SIL")]}
    assert speakers == {}
    assert intervals_from_frames(["a", "a", "b"], rate=50) == [(0.0, 0.04, "a"), (0.04, 0.06, "b")]


def test_folder_with_alignments_writes_the_evaluation_files(tmp_path, capsys):
    root = tmp_path / "audio"
    _audio(root / "spkA" / "one.wav", 16000)
    _audio(root / "spkB" / "two.flac", 8000)
    _audio(root / "spkB" / "three.ogg", 4000, fmt="OGG")
    (root / "notes.txt").write_text("x")
    al = tmp_path / "align.txt"
    al.write_text(
        "one 0.0 0.2 SIL\none 0.2 0.25 AH\none 0.25 0.27 B\none 0.27 0.5 T\none 0.5 1.0 SIL\n"
        "two 0.0 0.1 SIL\ntwo 0.1 0.3 IY\ntwo 0.3 0.5 SIL\n"
        "ghost 0.0 1.0 SIL\n"
    )
    scan = FolderScan(extensions=("wav", "flac", "ogg"), speaker_from_dir=1, progress=False)
    result = folder_corpus(root, tmp_path / "out" / "corpus.csv", al, scan=scan)
    entries = {e.fileid: e for e in read_manifest(result.manifest)}
    assert {k: (e.num_samples, e.speaker) for k, e in entries.items()} == {
        "spkA/one": (16000, "spkA"), "spkB/two": (8000, "spkB"), "spkB/three": (4000, "spkB"),
    }
    assert result.unmatched == ["ghost"] and result.unaligned == ["spkB/three"]
    items = read_item_file(tmp_path / "out" / "corpus.item")
    # 'B' lasts 20 ms (< 30 ms): only AH and T of 'one' and IY of 'two' are centre phones
    assert [(i.file, i.phone, i.prev, i.next, i.speaker) for i in items] == [
        ("spkA/one", "AH", "SIL", "B", "spkA"), ("spkA/one", "T", "B", "SIL", "spkA"),
        ("spkB/two", "IY", "SIL", "SIL", "spkB"),
    ]
    frames = read_frame_labels(tmp_path / "out" / "corpus_frames.txt")
    assert len(frames["spkA/one"]) == 100 and len(frames["spkB/two"]) == 50
    assert frames["spkB/two"][9:11] == ["SIL", "IY"] and frames["spkB/two"][29:31] == ["IY", "SIL"]
    assert main(["data", "folder", str(root), "-o", str(tmp_path / "m.csv"), "--alignments", str(al), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "wrote" in out.out and "1 aligned ids have no audio" in out.err
    assert main(["data", "folder", str(root), "-o", str(tmp_path / "m2.csv"), "--alignments",
                 str(tmp_path / "out" / "corpus.item")]) == 2
    assert "centre phones only" in capsys.readouterr().err
