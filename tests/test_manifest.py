"""Manifests: round trips in the three formats, header-only scanning, and the ``spidrkit manifest`` CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from spidrkit.cli import main
from spidrkit.data.corpora.manifest import (
    ManifestEntry,
    ManifestError,
    read_manifest,
    scan_audio_dir,
    write_manifest,
)
from spidrkit.io import read_sidecar


def _entries(root) -> list[ManifestEntry]:
    return [
        ManifestEntry("19/198/19-198-0001", str(root / "19/198/19-198-0001.flac"), 1234, "19"),
        ManifestEntry("19/198/19-198-0002", str(root / "19/198/19-198-0002.flac"), 5, "19"),
        ManifestEntry("26/495/26-495-0000", str(root / "26/495/26-495-0000.wav"), 320000, "26"),
    ]


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl"])
def test_round_trip(tmp_path, suffix):
    root = tmp_path / "corpus"
    entries = _entries(root)
    out = write_manifest(entries, tmp_path / "manifests" / f"train.{suffix}")
    back = read_manifest(out)
    if suffix == "tsv":  # fairseq TSV stores no speakers
        entries = [ManifestEntry(e.fileid, e.path, e.num_samples) for e in entries]
    assert back == entries
    text = out.read_text().splitlines()
    if suffix == "tsv":
        assert text[0] == str(root)  # the root line
        assert text[1:] == [
            "19/198/19-198-0001.flac\t1234",
            "19/198/19-198-0002.flac\t5",
            "26/495/26-495-0000.wav\t320000",
        ]
    elif suffix == "csv":
        assert text[0] == "fileid,path,num_samples,speaker"
        assert text[1] == "19/198/19-198-0001,../corpus/19/198/19-198-0001.flac,1234,19"
    else:
        assert json.loads(text[2]) == {
            "fileid": "26/495/26-495-0000",
            "path": "../corpus/26/495/26-495-0000.wav",
            "num_samples": 320000,
            "speaker": "26",
        }


def test_tsv_keeps_file_ids_when_all_files_share_a_subfolder(tmp_path):
    root = tmp_path / "corpus"
    entries = [ManifestEntry(f"spk/{i}", str(root / f"spk/{i}.wav"), 100 + i) for i in range(3)]
    back = read_manifest(write_manifest(entries, tmp_path / "m.tsv"))
    assert [e.fileid for e in back] == ["spk/0", "spk/1", "spk/2"]
    assert (tmp_path / "m.tsv").read_text().splitlines()[0] == str(root)


def test_read_errors(tmp_path):
    (tmp_path / "a.csv").write_text("fileid,path\nx,x.wav\n")
    with pytest.raises(ManifestError, match="lacks num_samples"):
        read_manifest(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("fileid,path,num_samples\nx,x.wav,3\nx,y.wav,4\n")
    with pytest.raises(ManifestError, match="'x' appears more than once"):
        read_manifest(tmp_path / "b.csv")
    (tmp_path / "c.tsv").write_text("/root\nx.wav\t-3\n")
    with pytest.raises(ManifestError, match="negative"):
        read_manifest(tmp_path / "c.tsv")
    (tmp_path / "d.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ManifestError, match=r"d\.jsonl:1: bad row"):
        read_manifest(tmp_path / "d.jsonl")
    with pytest.raises(ManifestError, match="unknown manifest format"):
        write_manifest([], tmp_path / "e.txt")


def _corpus(root):
    """2 good 16 kHz files, a 44.1 kHz stereo one, a corrupt one, an empty one, and a non-audio file."""
    rng = np.random.default_rng(0)
    (root / "A" / "ch1").mkdir(parents=True)
    (root / "B").mkdir()
    sf.write(root / "A/ch1/u1.wav", rng.integers(-999, 999, 1234).astype(np.int16), 16000)
    sf.write(root / "A/ch1/u2.FLAC", rng.integers(-999, 999, 2500).astype(np.int16), 16000)
    sf.write(root / "B/st.wav", rng.integers(-999, 999, (4410 * 3 + 1, 2)).astype(np.int16), 44100)
    (root / "B/bad.wav").write_bytes(b"this is not audio" * 20)
    sf.write(root / "B/empty.wav", np.zeros(0, np.int16), 16000)
    (root / "B/notes.txt").write_text("not audio")


def test_scan_audio_dir(tmp_path):
    _corpus(tmp_path / "c")
    entries, failures = scan_audio_dir(tmp_path / "c", speaker_from_dir=1, num_threads=3, progress=False)
    got = {e.fileid: (e.num_samples, e.speaker, os.path.basename(e.path)) for e in entries}
    assert got == {
        "A/ch1/u1": (1234, "A", "u1.wav"),
        "A/ch1/u2": (2500, "A", "u2.FLAC"),
        "B/st": (4800, "B", "st.wav"),  # 13231 samples at 44.1 kHz -> round(13231 * 16000 / 44100) = 4800
    }
    reasons = {os.path.basename(p): r for p, r in failures}
    assert set(reasons) == {"bad.wav", "empty.wav"}
    assert reasons["bad.wav"].startswith("unreadable") and reasons["empty.wav"].startswith("empty")
    only_wav, _ = scan_audio_dir(tmp_path / "c", extensions=("wav",), progress=False)
    assert [e.fileid for e in only_wav] == ["A/ch1/u1", "B/st"]
    with pytest.raises(ManifestError, match="not 3 folder"):
        scan_audio_dir(tmp_path / "c", speaker_from_dir=3, progress=False)


def test_cli_writes_manifest_sidecar_and_skipped_list(tmp_path, capsys):
    _corpus(tmp_path / "c")
    out = tmp_path / "out" / "train.tsv"
    assert main(["manifest", str(tmp_path / "c"), "-o", str(out), "--quiet"]) == 0
    back = read_manifest(out)
    assert [(e.fileid, e.num_samples) for e in back] == [
        ("A/ch1/u1", 1234),
        ("A/ch1/u2", 2500),
        ("B/st", 4800),
    ]
    assert out.read_text().splitlines()[0] == str(tmp_path / "c")
    skipped = (tmp_path / "out" / "train.tsv.skipped.tsv").read_text().splitlines()
    assert len(skipped) == 3 and skipped[0] == "path\treason"
    side = read_sidecar(out)
    assert side["num_files"] == 3 and side["num_skipped"] == 2 and side["total_samples"] == 1234 + 2500 + 4800
    err = capsys.readouterr().err
    assert "bad.wav" in err and "empty.wav" in err
    # nothing to list, or a wrong suffix: a clean error (status 2), no traceback
    (tmp_path / "void").mkdir()
    assert main(["manifest", str(tmp_path / "void"), "-o", str(tmp_path / "v.csv"), "--quiet"]) == 2
    assert main(["manifest", str(tmp_path / "c"), "-o", str(tmp_path / "v.txt"), "--quiet"]) == 2
    assert main(["manifest", str(tmp_path / "nope"), "-o", str(tmp_path / "v.csv"), "--quiet"]) == 2
