"""Nothing existing is replaced without --force (issue 25, rule 2): every command that writes a final path
refuses an existing one before any work (exit 2, one stderr line naming the path and --force) and leaves it
as it was; with --force it is replaced."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from spidrkit.cli import main
from spidrkit.extraction.kmeans import KMeansModel
from spidrkit.extraction.units import read_units


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# (argv with {out} for the existing path and {tmp} for the test folder; the existing path, relative to tmp;
#  the spidrkit command and the action named in the message)
CASES = [
    (["kmeans", "fit", "{tmp}/feats", "-k", "4", "-o", "{tmp}/C"], "C.npy", "kmeans", "kmeans fit"),
    (["kmeans", "fit-corpus", "{tmp}/corpus", "--model", "mfcc", "-o", "{tmp}/C.npy"], "C.npy", "kmeans",
     "kmeans fit-corpus"),
    (["kmeans", "apply", "{tmp}/feats", "--centroids", "{tmp}/none.npy", "-o", "{out}"], "u.txt", "kmeans",
     "kmeans apply"),
    (["lm", "units", "{tmp}/corpus", "--units", "phones", "-o", "{out}"], "u.txt", "lm", "lm units"),
    (["units", "export", "{tmp}/u.txt", "-o", "{tmp}/km"], "km/train.km", "units", "units export"),
    (["units", "export", "{tmp}/u.txt", "-o", "{tmp}/km", "--name", "dev"], "km/dev.tsv", "units",
     "units export"),
    (["evaluate", "abx", "{tmp}/feats", "{tmp}/x.item", "-o", "{out}"], "abx.json", "evaluate", "evaluate abx"),
    (["evaluate", "units", "{tmp}/u.txt", "{tmp}/labels.txt", "-o", "{out}"], "q.json", "evaluate",
     "evaluate units"),
    (["evaluate", "units", "{tmp}/u.txt", "{tmp}/labels.txt", "--plot", "{out}"], "p.png", "evaluate",
     "evaluate units"),
    (["evaluate", "map", "{tmp}/feats", "{tmp}/words.txt", "-o", "{out}"], "map.json", "evaluate", "evaluate map"),
    (["evaluate", "plot-perplexity", "{tmp}/metrics.jsonl", "-o", "{out}"], "f.png", "evaluate",
     "evaluate plot-perplexity"),
    (["evaluate", "sweep", "--model", "M", "--corpus", "C", "-o", "{tmp}/S"], "S/report.html", "evaluate",
     "evaluate sweep"),
    (["evaluate", "probe", "--model", "M", "--corpus", "C", "-o", "{tmp}/S"], "S/report.html", "evaluate",
     "evaluate probe"),
    (["evaluate", "slm", "BENCH", "--units", "phones", "--lm", "RUN", "-o", "{tmp}/S"], "S/report.html",
     "evaluate", "evaluate slm"),
    (["evaluate", "slm-compare", "BENCH", "ROWS.json", "-o", "{tmp}/S"], "S/report.html", "evaluate",
     "evaluate slm-compare"),
    (["evaluate", "budget", "RUN", "--corpus", "C", "-o", "{tmp}/S"], "S/budget.png", "evaluate",
     "evaluate budget"),
    (["data", "folder", "{tmp}/wavs", "-o", "{out}"], "m.csv", "data", "data folder"),
    (["manifest", "{tmp}/wavs", "-o", "{out}"], "m.csv", "manifest", "data folder"),
]


@pytest.mark.parametrize(("argv", "existing", "command", "action"), CASES,
                         ids=[f"{c[3]}:{c[1]}" for c in CASES])
def test_an_existing_output_is_refused_before_any_work(tmp_path, capsys, argv, existing, command, action):
    path = tmp_path / existing
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious")
    args = [a.format(out=path, tmp=tmp_path) for a in argv]  # the inputs do not exist: the output comes first
    assert main(args) == 2
    command = action if command == "evaluate" else command  # evaluate's messages name the action
    assert _err(capsys) == (f"spidrkit {command}: error: {action}: {path} exists; pass --force to replace it (or "
                            "choose another output)")
    assert path.read_text() == "precious"
    assert main([*args, "--force"]) == 2  # with --force the command goes on, to the missing inputs
    assert "exists; pass --force" not in capsys.readouterr().err


@pytest.mark.parametrize("action", ["synth", "synth-slm"])
def test_a_synth_build_into_a_folder_of_other_files_is_refused(tmp_path, capsys, action):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert main(["data", action, str(out)]) == 2
    assert _err(capsys) == (f"spidrkit data: error: data {action}: {out} exists; pass --force to replace it (or "
                            "choose a new or empty folder)")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _wavs(folder, n=2):
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"u{i}.wav", np.random.default_rng(i).standard_normal(8000) * 0.1, 16000)
    return folder


def test_data_folder_with_force_replaces_the_manifest(tmp_path, capsys):
    wavs, manifest = _wavs(tmp_path / "wavs"), tmp_path / "m.csv"
    manifest.write_text("precious")
    assert main(["data", "folder", str(wavs), "-o", str(manifest), "--quiet"]) == 2
    assert manifest.read_text() == "precious"
    assert main(["data", "folder", str(wavs), "-o", str(manifest), "--quiet", "--force"]) == 0
    rows = manifest.read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith("u0")


def test_kmeans_fit_and_apply_with_force_replace_their_outputs(tmp_path, capsys):
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(feats / f"u{i}.npy", rng.standard_normal((20, 8)).astype(np.float32))
    centroids, units = tmp_path / "C.npy", tmp_path / "u.txt"
    centroids.write_text("precious")
    units.write_text("precious")
    fit = ["kmeans", "fit", str(feats), "-k", "4", "-o", str(centroids), "--quiet", "--backend", "sklearn"]
    apply = ["kmeans", "apply", str(feats), "--centroids", str(centroids), "-o", str(units), "--quiet"]
    assert main(fit) == 2 and centroids.read_text() == "precious"
    assert main([*fit, "--force"]) == 0
    assert KMeansModel.load(centroids).k == 4
    assert main(apply) == 2 and units.read_text() == "precious"
    assert main([*apply, "--force"]) == 0
    assert sorted(read_units(units)) == ["u0", "u1", "u2"]


def test_an_unfinished_report_folder_is_finished_by_a_rerun_without_force(tmp_path, capsys):
    """A sweep stopped by a full disk has written its numbers (report.json) but not its last file (report.html):
    its rerun, as the disk-full message says, is not refused."""
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "report.json").write_text("{}")
    assert main(["evaluate", "sweep", "--model", str(tmp_path / "no.pt"), "--corpus", str(tmp_path / "C"), "-o",
                 str(tmp_path / "S")]) == 2
    err = _err(capsys)
    assert "exists; pass --force" not in err and str(tmp_path / "no.pt") in err
