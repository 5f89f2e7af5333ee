"""Progress of the long steps: a bar on a terminal, whole lines throttled in a log, nothing when disabled
(``evaluate slm`` scoring, k-means fitting, ``manifest``, ``data synth``, the helper they share:
spidrkit.progress.progress_bar, the only user of tqdm)."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
import torch

from spidrkit import progress
from spidrkit.cli import main
from spidrkit.extraction.features_io import save_features
from spidrkit.io import write_sidecar
from spidrkit.progress import progress_bar
from support import SYNTACTIC, audio, names_of, write_split


def _bars(err: str) -> list[str]:
    """The progress lines of a log, without their times and rates."""
    return [line.split(" [")[0] for line in err.splitlines() if re.search(r": \d+/\d+ \w+ \[", line)]


@pytest.fixture
def long_interval(monkeypatch):
    """Throttled to one line an hour: each bar writes its first and its last line only."""
    monkeypatch.setattr(progress, "LOG_PROGRESS_SECONDS", 3600.0)


def test_in_a_log_a_bar_is_whole_lines_throttled(capsys, monkeypatch, long_interval):
    with progress_bar(1000, "slow", "file") as bar:
        for _ in range(1000):
            bar.update(1)
    err = capsys.readouterr().err
    assert "\r" not in err and _bars(err) == ["slow: 0/1000 file", "slow: 1000/1000 file"]
    monkeypatch.setattr(progress, "LOG_PROGRESS_SECONDS", 0.0)  # unthrottled: lines as it goes, counts rising
    with progress_bar(5, "fast", "pair", leave=False) as bar:  # a log keeps the last line even so
        for _ in range(5):
            bar.update(1)
    counts = [int(re.search(r": (\d+)/5", line).group(1)) for line in _bars(capsys.readouterr().err)]
    assert len(counts) >= 3 and counts[0] == 0 and counts[-1] == 5 and counts == sorted(counts)
    with progress_bar(5, "off", enabled=False) as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""



def test_in_a_log_postfix_and_refresh_are_throttled_too(capsys, long_interval):
    """The sweep's bar changes its postfix at every stage: in a log that is no line, only the first and the last
    (the last once, though its last update and its close fall within the same second)."""
    with progress_bar(3, "sweep", "step") as bar:
        for stage in range(3):
            bar.set_postfix_str(f"stage {stage}")
            bar.refresh()
            bar.update(1)
    err = capsys.readouterr().err
    assert _bars(err) == ["sweep: 0/3 step", "sweep: 3/3 step"] and err.count("stage 2") == 1

def test_on_a_terminal_it_is_a_redrawn_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    with progress_bar(4, "tty", "file") as bar:
        bar.update(4)
    assert "\rtty: 100%" in term.getvalue() and "4/4" in term.getvalue()


def test_evaluate_slm_shows_units_and_lm_scoring_per_split(slm_models, tmp_path, capsys, long_interval):
    bench = tmp_path / "bench"
    write_split(bench / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC), audio)
    argv = ["evaluate", "slm", str(bench), "--model", str(slm_models["encoder"]), "--units", "codebook:6",
            "--lm", str(slm_models["lm"]), "-o", str(tmp_path / "out"), "--bootstrap", "10"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    n = len(names_of(SYNTACTIC))
    assert _bars(err) == [f"syntactic/dev units: 0/{n} file", f"syntactic/dev units: {n}/{n} file",
                          f"syntactic/dev LM scores: 0/{n} file", f"syntactic/dev LM scores: {n}/{n} file"]
    assert re.search(rf"^syntactic/dev: {n} files: units [\d.]+ s, LM [\d.]+ s$", err, re.M)
    assert main([*argv[:-4], "-o", str(tmp_path / "quiet"), "--bootstrap", "10", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert _bars(err) == [] and "syntactic/dev" not in err


def _features(folder, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for i in range(4):
        save_features(folder, f"utt{i}", torch.randn(60, 8, generator=g))
    write_sidecar(folder, model="spidr", layer=6)
    return folder


def test_kmeans_fit_shows_sampling_seeding_and_iterations(tmp_path, capsys, long_interval):
    folder = _features(tmp_path / "feats")
    argv = ["kmeans", "fit", str(folder), "-k", "5", "--niter", "7", "--backend", "sklearn", "--seed", "1"]
    assert main([*argv, "-o", str(tmp_path / "C")]) == 0
    bars = _bars(capsys.readouterr().err)
    assert bars[:4] == ["sampling frames: 0/4 file", "sampling frames: 4/4 file",
                        "k-means++ seeding: 1/5 centroid", "k-means++ seeding: 5/5 centroid"]
    assert bars[4] == "k-means iterations (sklearn): 0/7 iteration"
    assert re.fullmatch(r"k-means iterations \(sklearn\): [1-7]/7 iteration", bars[5]) and len(bars) == 6
    assert main([*argv, "-o", str(tmp_path / "D"), "--quiet"]) == 0
    assert _bars(capsys.readouterr().err) == []


def test_kmeans_fit_corpus_shows_files_and_iterations(tmp_path, capsys, long_interval):
    from spidrkit.data.corpora.manifest import write_manifest
    from support import syllable_corpus

    write_manifest(syllable_corpus(tmp_path / "corpus", n_files=3, seconds=0.5), tmp_path / "corpus" / "train.csv")
    argv = ["kmeans", "fit-corpus", str(tmp_path / "corpus"), "--model", "mfcc", "-k", "4", "--split", "train"]
    assert main([*argv, "-o", str(tmp_path / "C")]) == 0
    bars = _bars(capsys.readouterr().err)
    assert bars[:2] == ["features: 0/3 file", "features: 3/3 file"]
    assert "k-means++ seeding: 4/4 centroid" in bars
    assert re.fullmatch(r"k-means iterations \((faiss|sklearn)\): [1-9]\d*/50 iteration", bars[-1])
    assert main([*argv, "-o", str(tmp_path / "D"), "--quiet"]) == 0
    assert _bars(capsys.readouterr().err) == []


# ------------------------------------------------------------------------- one home for tqdm
SRC = Path(__file__).resolve().parents[1] / "src"
TQDM_USERS = {"spidrkit/progress.py": {"tqdm"},  # the one progress display
              "spidrkit/training/loop.py": {"tqdm.contrib.logging"}}  # log records above the training bar


def _tqdm_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        found |= {n for n in names if n == "tqdm" or n.startswith("tqdm.")}
    return found


def test_only_spidrkit_progress_imports_tqdm():
    """A raw tqdm bar writes ``\\r``-redrawn lines into a log: every bar goes through progress_bar."""
    used = {path.relative_to(SRC).as_posix(): imports for path in sorted(SRC.rglob("*.py"))
            if (imports := _tqdm_imports(path))}
    assert used == TQDM_USERS


def test_manifest_writes_throttled_lines_to_a_log(tmp_path, capsys, monkeypatch):
    """``manifest`` (a raw tqdm bar before): whole lines in a log, the last with every file; none with
    --no-progress."""
    from support import syllable_corpus

    monkeypatch.setattr(progress, "LOG_PROGRESS_SECONDS", 3600.0)
    syllable_corpus(tmp_path / "corpus", n_files=5, seconds=0.2)
    assert main(["manifest", str(tmp_path / "corpus"), "-o", str(tmp_path / "a.csv")]) == 0
    err = capsys.readouterr().err
    desc = f"reading headers under {tmp_path / 'corpus'}"
    assert "\r" not in err and _bars(err) == [f"{desc}: 0/5 file", f"{desc}: 5/5 file"]
    assert main(["manifest", str(tmp_path / "corpus"), "-o", str(tmp_path / "b.csv"), "--no-progress"]) == 0
    assert _bars(capsys.readouterr().err) == []


@pytest.mark.needs_flite
def test_data_synth_writes_throttled_lines_to_a_log(flite, tmp_path, capsys, long_interval):
    argv = ["data", "synth", "--hours", "0.003", "--voices", "slt", "--workers", "1", "--no-noise"]
    assert main([*argv, "-o", str(tmp_path / "a")]) == 0
    bars = _bars(capsys.readouterr().err)
    assert len(bars) == 2 and bars[0].startswith("synthesising: 0/") and bars[0].endswith(" utt")
    n = int(re.search(r"0/(\d+)", bars[0]).group(1))
    assert n >= 2 and bars[1] == f"synthesising: {n}/{n} utt"
    assert main([*argv, "-o", str(tmp_path / "b"), "--no-progress"]) == 0
    assert _bars(capsys.readouterr().err) == []
