"""Faults of extraction, k-means and manifests: each case exits with its documented status, prints
one stderr line naming the path or the input, leaves nothing partial under a final name, and a rerun of the
same command completes with outputs byte-equal to a run that never failed."""

from __future__ import annotations

import errno
import fnmatch
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import spidrkit.io as sio
from spidrkit.cli import main as cli_main
from spidrkit.data.batches.dataset import read_skipped
from spidrkit.data.corpora.audio import TruncatedAudioWarning, load_audio
from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest
from spidrkit.errors import EXIT_IO, EXIT_TEMPFAIL, EXIT_USAGE
from spidrkit.extraction.compute import NonFiniteFeaturesError
from spidrkit.extraction.extract import extract
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.units import read_units
from spidrkit.io import hold_lock, read_sidecar
from spidrkit.models.spidr import SpidR

SRC = str(Path(__file__).resolve().parents[1] / "src")
UNITS = ["--layers", "4", "--units", "codebook", "--batch-seconds", "1.5", "--quiet"]  # one 1.2 s file a batch


@pytest.fixture(scope="module")
def setup(micro_model, tmp_path_factory):
    """The micro model saved as a checkpoint, eight 1.2 s files in a folder, and the units of a clean run."""
    root = tmp_path_factory.mktemp("faults")
    ckpt = root / "model.pt"
    torch.save({"model": micro_model.state_dict()}, ckpt)
    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(8):
        sf.write(corpus / f"u{i}.wav", (0.1 * rng.standard_normal(19200)).astype(np.float32), 16000)
    assert cli_main(["extract", str(corpus), "--model", str(ckpt), *UNITS, "-o", str(root / "ref")]) == 0
    return micro_model, ckpt, corpus, root / "ref" / "units.txt"


def _cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err.splitlines()


def _one_line(err: list[str], *needles: str) -> str:
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and all(n in err[0] for n in needles), err[0]
    return err[0]


def _no_temp(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if sio.TMP_MARK in p.name]


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full("*.pt")``: every atomic write of a file matching the pattern fails with ENOSPC."""
    original = sio._WriteRecorder.write

    def arm(pattern: str) -> None:
        def write(self, data):
            if fnmatch.fnmatch(Path(self._f.name).name.split(sio.TMP_MARK)[0].lstrip("."), pattern):
                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise self.error
            return original(self, data)

        monkeypatch.setattr(sio._WriteRecorder, "write", write)

    yield arm
    monkeypatch.setattr(sio._WriteRecorder, "write", original)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------ case 1: file ids with whitespace
def test_ids_with_spaces_go_to_units_jsonl_and_txt_is_refused_before_computing(setup, tmp_path, capsys):
    _, ckpt, corpus, ref = setup
    spaced = tmp_path / "spaced"
    spaced.mkdir()
    for p in sorted(corpus.glob("*.wav"))[:3]:
        (spaced / p.name.replace("u", "my utt ")).write_bytes(p.read_bytes())
    rc, _, err = _cli(capsys, "extract", spaced, "--model", ckpt, *UNITS, "--units-format", "txt", "-o", tmp_path / "t")
    _one_line(err, "'my utt 0'", "contains whitespace", "--units-format jsonl")
    assert rc == EXIT_USAGE and not list((tmp_path / "t").glob("units*"))  # nothing computed
    with pytest.warns(UserWarning, match="units.jsonl"):
        rc, out, err = _cli(capsys, "extract", spaced, "--model", ckpt, *UNITS, "-o", tmp_path / "j")
    assert rc == 0 and str(tmp_path / "j" / "units.jsonl") in out
    assert err == ["spidrkit extract: warning: file ids contain whitespace (e.g. 'my utt 0'): the units go to "
                   "units.jsonl (a units.txt line cannot hold them)"]  # the warning, one line (cli.main)
    got = read_units(tmp_path / "j" / "units.jsonl")
    want = read_units(ref)
    assert {k: v.frames() for k, v in got.items()} == {f"my utt {i}": want[f"u{i}"].frames() for i in range(3)}
    assert read_sidecar(tmp_path / "j")["format"] == "jsonl"
    first = (tmp_path / "j" / "units.jsonl").read_bytes()
    with pytest.warns(UserWarning, match="units.jsonl"):
        assert _cli(capsys, "extract", spaced, "--model", ckpt, *UNITS, "-o", tmp_path / "j")[0] == 0
    assert (tmp_path / "j" / "units.jsonl").read_bytes() == first


# --------------------------------------------------------------- case 2: the units merge lock
def test_stale_merge_lock_is_taken_over_and_a_live_one_exits_75(setup, tmp_path, capsys):
    _, ckpt, corpus, ref = setup
    out = tmp_path / "o"
    out.mkdir()
    lock = out / "units.merge.lock"
    lock.write_text(f"{_dead_pid()}\n")  # the old format: a bare pid, its process gone
    with pytest.warns(UserWarning, match="taking over the lock"):
        rc, stdout, err = _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out)
    assert rc == 0 and (out / "units.txt").read_bytes() == ref.read_bytes() and not lock.exists()
    assert err == [f"spidrkit extract: warning: {lock}: taking over the lock of pid None on None (that process is "
                   "gone)"]
    # a crash during the merge: journals done, the lock held by a live process -> 75, nothing claimed
    (out / "units.txt").unlink()
    (out / "units.part0-of-1.jsonl").write_text("".join(
        f'{{"utt": "{u}", "units": {v.frames()}}}\n' for u, v in read_units(ref).items()))
    holder = {"host": socket.gethostname(), "pid": os.getppid(), "started": "2026-01-01T00:00:00+00:00"}
    lock.write_text(__import__("json").dumps(holder))
    rc, stdout, err = _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out)
    _one_line(err, str(lock), f"pid {os.getppid()}", "--force")
    assert rc == EXIT_TEMPFAIL and not (out / "units.txt").exists() and "units.txt" not in stdout
    with pytest.warns(UserWarning, match="forced"):
        rc, stdout, err = _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out, "--force")
    assert rc == 0 and (out / "units.txt").read_bytes() == ref.read_bytes() and not lock.exists()
    assert not list(out.glob("units.part*"))


# ------------------------------------------------------------ case 3: two extractions, one folder
def test_second_extraction_into_a_locked_folder_exits_75(setup, tmp_path, capsys):
    _, ckpt, corpus, ref = setup
    out = tmp_path / "o"
    with hold_lock(out / "extract.lock", what="test"):
        rc, _, err = _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out)
        _one_line(err, f"the extraction folder {out}", "--force")
        assert rc == EXIT_TEMPFAIL and not (out / "units.txt").exists() and not list(out.glob("units.part*"))
    assert _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out)[0] == 0
    assert (out / "units.txt").read_bytes() == ref.read_bytes()


@pytest.mark.slow
def test_two_concurrent_unsharded_extractions(setup, tmp_path):
    _, ckpt, corpus, ref = setup
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "spidrkit.cli", "extract", str(corpus), "--model", str(ckpt), *UNITS, "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(), p.stdout.read(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _, _ in results) in ([0, 0], [0, EXIT_TEMPFAIL])
    for rc, _, err in results:
        if rc == EXIT_TEMPFAIL:
            _one_line(err.splitlines(), str(out / "extract.lock"))
        else:
            assert "Traceback" not in err
    assert (out / "units.txt").read_bytes() == ref.read_bytes()
    assert not list(out.glob("units.part*")) and not (out / "extract.lock").exists()


# ------------------------------------------------------------------ case 6: disk full, OS errors
def test_full_disk_while_journaling_units_then_rerun(setup, tmp_path, capsys):
    """A real write failure (a file-size limit: EFBIG) in the middle of a journal line."""
    _, ckpt, corpus, ref = setup
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "spidrkit.cli", "extract", str(corpus), "--model", str(ckpt), *UNITS, "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"}
    limit = 1600  # > the sidecar, < the journal of 8 files

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=small_files)
    journal = out / "units.part0-of-1.partial.jsonl"
    _one_line(r.stderr.splitlines(), "I/O error", str(journal), "File too large")
    assert r.returncode == EXIT_IO and not (out / "units.txt").exists() and journal.stat().st_size == limit
    assert not journal.read_bytes().endswith(b"\n")  # a torn last line, cut off on resume
    assert _cli(capsys, *cmd[3:])[0] == 0  # the same command, with space back
    assert (out / "units.txt").read_bytes() == ref.read_bytes() and not list(out.glob("units.part*"))


def test_full_disk_while_merging_units_then_rerun(setup, tmp_path, capsys, disk_full):
    _, ckpt, corpus, ref = setup
    out = tmp_path / "o"
    disk_full("units.txt")
    rc, _, err = _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out)
    _one_line(err, str(out / "units.txt"), "No space left on device")
    assert rc == EXIT_IO and not (out / "units.txt").exists() and (out / "units.part0-of-1.jsonl").is_file()
    _no_temp(out)
    disk_full("nothing")
    assert _cli(capsys, "extract", corpus, "--model", ckpt, *UNITS, "-o", out)[0] == 0
    assert (out / "units.txt").read_bytes() == ref.read_bytes()


def test_full_disk_while_writing_features_then_rerun(setup, tmp_path, capsys, disk_full):
    _, ckpt, corpus, _ = setup
    few = write_manifest([ManifestEntry(f"u{i}", str(corpus / f"u{i}.wav"), 19200) for i in range(3)],
                         tmp_path / "few.csv")
    args = ["extract", few, "--model", ckpt, "--layers", "2", "--batch-seconds", "1.5", "--quiet"]
    assert _cli(capsys, *args, "-o", tmp_path / "ref")[0] == 0
    disk_full("u*.pt")
    rc, _, err = _cli(capsys, *args, "-o", tmp_path / "o")
    _one_line(err, str(tmp_path / "o"), ".pt", "No space left on device")
    assert rc == EXIT_IO and not list((tmp_path / "o").glob("*.pt"))
    _no_temp(tmp_path / "o")
    disk_full("nothing")
    assert _cli(capsys, *args, "-o", tmp_path / "o")[0] == 0
    for p in (tmp_path / "ref").glob("*.pt"):
        assert (tmp_path / "o" / p.name).read_bytes() == p.read_bytes()


def test_full_disk_while_writing_centroids_or_a_manifest(setup, tmp_path, capsys, disk_full):
    _, ckpt, corpus, _ = setup
    few = write_manifest([ManifestEntry(f"u{i}", str(corpus / f"u{i}.wav"), 19200) for i in range(3)],
                         tmp_path / "few.csv")
    assert _cli(capsys, "extract", few, "--model", ckpt, "--layers", "2", "--quiet", "-o", tmp_path / "f")[0] == 0
    fit = ["kmeans", "fit", tmp_path / "f", "-k", "4", "--backend", "sklearn", "--niter", "5", "--quiet"]
    assert _cli(capsys, *fit, "-o", tmp_path / "ref.npy")[0] == 0
    disk_full("C.npy")
    rc, _, err = _cli(capsys, *fit, "-o", tmp_path / "C.npy")
    _one_line(err, str(tmp_path / "C.npy"), "No space left on device")
    assert rc == EXIT_IO and not (tmp_path / "C.npy").exists()
    disk_full("train.csv")
    rc, _, err = _cli(capsys, "manifest", corpus, "-o", tmp_path / "train.csv", "--quiet")
    _one_line(err, str(tmp_path / "train.csv"), "No space left on device")
    assert rc == EXIT_IO and not (tmp_path / "train.csv").exists()
    _no_temp(tmp_path)
    disk_full("nothing")
    assert _cli(capsys, *fit, "-o", tmp_path / "C.npy")[0] == 0
    assert (tmp_path / "C.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert _cli(capsys, "manifest", corpus, "-o", tmp_path / "train.csv", "--quiet")[0] == 0


# ------------------------------------------------------------------------------ case 8: NaN weights
def test_nan_weights_are_refused_in_extraction_and_kmeans(setup, tmp_path, capsys):
    model, _, corpus, _ = setup
    bad = SpidR(model.cfg).eval()
    bad.load_state_dict(model.state_dict())
    with torch.no_grad():
        bad.student.layers[2].attention.proj.weight.fill_(float("nan"))  # NaN from layer 3 on
    with pytest.raises(NonFiniteFeaturesError, match="non-finite features .* at layer 4 for u0: the model's weights"):
        extract(bad, corpus, tmp_path / "f", layers=[4], progress=False)
    assert not list((tmp_path / "f").glob("*.pt"))
    with pytest.raises(NonFiniteFeaturesError, match="layer 4 for u0"):
        extract(bad, corpus, tmp_path / "u", layers=[4], units="codebook", progress=False)
    assert not (tmp_path / "u" / "units.txt").exists()
    # features written with NaN (by an older version): fit and apply refuse them, naming the file
    extract(model, corpus, tmp_path / "ok", layers=[4], progress=False)
    x = torch.load(tmp_path / "ok" / "u3.pt")
    x[5, 0] = float("nan")
    torch.save(x, tmp_path / "ok" / "u3.pt")
    rc, _, err = _cli(capsys, "kmeans", "fit", tmp_path / "ok", "-k", "4", "--quiet", "-o", tmp_path / "C.npy")
    _one_line(err, str(tmp_path / "ok" / "u3.pt"), "NaN")
    assert rc == EXIT_USAGE and not (tmp_path / "C.npy").exists()
    KMeansModel(torch.randn(4, 64)).save(tmp_path / "C.npy")
    rc, _, err = _cli(capsys, "kmeans", "apply", tmp_path / "ok", "--centroids", tmp_path / "C.npy", "--quiet",
                      "-o", tmp_path / "units.txt")
    _one_line(err, str(tmp_path / "ok" / "u3.pt"), "NaN")
    assert rc == EXIT_USAGE and not (tmp_path / "units.txt").exists()


# --------------------------------------------------------------------------- case 12: smaller items
def test_missing_file_in_a_manifest_names_it(setup, tmp_path, capsys):
    _, ckpt, corpus, _ = setup
    gone = tmp_path / "gone.wav"
    write_manifest([ManifestEntry("u0", str(corpus / "u0.wav"), 48000), ManifestEntry("gone", str(gone), 48000)],
                   tmp_path / "m.csv")
    rc, _, err = _cli(capsys, "extract", tmp_path / "m.csv", "--model", ckpt, *UNITS, "-o", tmp_path / "o")
    _one_line(err, str(gone), "no such file", "--skip-bad")
    assert rc == EXIT_USAGE and not (tmp_path / "o" / "units.txt").exists()


def test_truncated_wav_warns_naming_it(tmp_path):
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    sf.write(tmp_path / "full.wav", x, 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.warns(TruncatedAudioWarning, match=r"cut.wav: truncated WAV: the header declares 16000 samples, "
                                                   r"the file holds 7989"):
        assert load_audio(tmp_path / "cut.wav").shape == (7989,)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_audio(tmp_path / "full.wav").shape == (16000,)


def test_all_bad_manifest_exits_2_naming_it(setup, tmp_path, capsys):
    _, ckpt, _, _ = setup
    (tmp_path / "a.wav").write_bytes(b"not audio at all")
    manifest = write_manifest([ManifestEntry("a", str(tmp_path / "a.wav"), 16000),
                               ManifestEntry("b", str(tmp_path / "b.wav"), 16000)], tmp_path / "m.csv")
    with pytest.warns(UserWarning, match="2 files cannot be decoded"):
        rc, _, err = _cli(capsys, "extract", manifest, "--model", ckpt, *UNITS, "--skip-bad", "-o", tmp_path / "o")
    assert err[0].startswith("spidrkit extract: warning: 2 files cannot be decoded")  # the warning, then the error
    _one_line(err[1:], str(manifest), "skipped.tsv")
    assert rc == EXIT_USAGE and [r[0] for r in read_skipped(tmp_path / "o")] == ["a", "b"]


def test_folder_of_mp3_names_the_extensions_and_ext_reads_it(setup, tmp_path, capsys):
    _, ckpt, corpus, _ = setup
    mp3 = tmp_path / "mp3"
    mp3.mkdir()
    sf.write(mp3 / "s.mp3", sf.read(corpus / "u0.wav")[0], 16000, format="MP3")
    for cmd in (["extract", mp3, "--model", ckpt, *UNITS, "-o", tmp_path / "o"],
                ["manifest", mp3, "-o", tmp_path / "m.csv"]):
        rc, _, err = _cli(capsys, *cmd, "--quiet")
        _one_line(err, str(mp3), ".wav, .flac", "1 .mp3", "--ext mp3")
        assert rc == EXIT_USAGE
    assert _cli(capsys, "manifest", mp3, "-o", tmp_path / "m.csv", "--ext", "mp3", "--quiet")[0] == 0
    assert _cli(capsys, "extract", mp3, "--model", ckpt, *UNITS, "-o", tmp_path / "o", "--ext", "mp3")[0] == 0
    assert list(read_units(tmp_path / "o" / "units.txt")) == ["s"]


def test_centroids_of_another_model_warn_and_a_checkpoint_is_not_centroids(setup, tmp_path, capsys):
    _, ckpt, corpus, _ = setup
    KMeansModel(torch.randn(4, 64), {"layer": 4, "model": "spidr:0123456789abcdef"}).save(tmp_path / "C.npy")
    with pytest.warns(UserWarning, match="features have model='spidr:.*', the centroids were fit on "
                                         "model='spidr:0123456789abcdef'"):
        rc, _, _ = _cli(capsys, "extract", corpus, "--model", ckpt, "--layers", "4", "--units",
                        f"kmeans:{tmp_path / 'C.npy'}", "--quiet", "-o", tmp_path / "o")
    assert rc == 0
    rc, _, err = _cli(capsys, "extract", corpus, "--model", ckpt, "--layers", "4", "--units", f"kmeans:{ckpt}",
                      "--quiet", "-o", tmp_path / "o2")
    _one_line(err, str(ckpt), "not a centroids file")
    assert rc == EXIT_USAGE
    assert _cli(capsys, "extract", corpus, "--model", ckpt, "--layers", "4", "--quiet", "-o", tmp_path / "f")[0] == 0
    rc, _, err = _cli(capsys, "kmeans", "apply", tmp_path / "f", "--centroids", ckpt, "--quiet",
                      "-o", tmp_path / "u.txt")
    _one_line(err, str(ckpt), "not a centroids file")
    assert rc == EXIT_USAGE and not (tmp_path / "u.txt").exists()


# ------------------------------------------------------------------------------- case 13: --skip-bad
def test_skip_bad_lists_bad_files_and_extracts_the_rest(setup, tmp_path, capsys):
    _, ckpt, corpus, ref = setup
    entries = [ManifestEntry(p.stem, str(p), 19200) for p in sorted(corpus.glob("*.wav"))]
    (tmp_path / "bad.wav").write_bytes(b"RIFF....garbage")
    entries += [ManifestEntry("bad", str(tmp_path / "bad.wav"), 48000),
                ManifestEntry("gone", str(tmp_path / "gone.wav"), 48000)]
    manifest = write_manifest(entries, tmp_path / "m.csv")
    args = ["extract", manifest, "--model", ckpt, *UNITS, "-o", tmp_path / "o"]
    rc, _, err = _cli(capsys, *args)
    _one_line(err, "--skip-bad")
    assert rc == EXIT_USAGE and ("bad.wav" in err[0] or "gone.wav" in err[0])
    with pytest.warns(UserWarning, match="2 files cannot be decoded"):
        rc, out, err = _cli(capsys, *args, "--skip-bad")
    assert rc == 0 and "2 bad files skipped" in out and len(err) == 1
    assert err[0].startswith("spidrkit extract: warning: 2 files cannot be decoded and have no output")
    assert (tmp_path / "o" / "units.txt").read_bytes() == ref.read_bytes()
    rows = read_skipped(tmp_path / "o")
    assert sorted(r[0] for r in rows) == ["bad", "gone"] and "no such file" in dict((r[0], r[2]) for r in rows)["gone"]
    listed = (tmp_path / "o" / "skipped.tsv").read_bytes()
    with pytest.warns(UserWarning, match="2 files cannot be decoded"):  # retried, not listed twice
        assert _cli(capsys, *args, "--skip-bad")[0] == 0
    assert (tmp_path / "o" / "skipped.tsv").read_bytes() == listed
    assert (tmp_path / "o" / "units.txt").read_bytes() == ref.read_bytes()
