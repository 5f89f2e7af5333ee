"""Nothing existing is replaced without --force (the rule of README.md, "Commands"): every command that
writes a final path refuses an existing one before any work (exit 2, one stderr line naming the path and
--force) and leaves it as it was; with --force it is replaced."""

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


# ------------------------------------------------------------------ the Python API: the same rule, force=True
def test_the_api_writers_refuse_an_existing_file_and_replace_it_with_force(tmp_path):
    from spidrkit.extraction.unit_exports import export_km
    from spidrkit.extraction.units import write_units
    from spidrkit.io import OutputExistsError

    units = tmp_path / "u.txt"
    units.write_text("precious")
    with pytest.raises(OutputExistsError, match=f"write units: {units} exists; pass --force"):
        write_units(units, {"u0": [1, 2]}, k=4)
    assert units.read_text() == "precious"
    write_units(units, {"u0": [1, 2], "u1": [3]}, k=4, force=True)
    assert {u: v.frames() for u, v in read_units(units).items()} == {"u0": [1, 2], "u1": [3]}

    centroids = tmp_path / "C.npy"
    centroids.write_text("precious")
    model = KMeansModel(np.eye(3, dtype=np.float32))
    with pytest.raises(OutputExistsError, match=f"kmeans fit: {centroids} exists"):
        model.save(centroids)
    assert centroids.read_text() == "precious"
    assert KMeansModel.load(model.save(centroids, force=True)).k == 3

    wavs, km = _wavs(tmp_path / "wavs"), tmp_path / "km"
    km.mkdir()
    (km / "train.km").write_text("precious")
    with pytest.raises(OutputExistsError, match=f"units export: {km / 'train.km'} exists"):
        export_km(units, km, wavs)
    assert (km / "train.km").read_text() == "precious" and not (km / "train.tsv").exists()
    paths = export_km(units, km, wavs, force=True)
    assert paths["km"].read_text() == "1 2\n3\n"


@pytest.mark.parametrize("which", ["sweep", "probe", "budget"])
def test_the_api_report_folders_refuse_a_finished_one_before_any_work(tmp_path, which):
    from spidrkit.evaluation.metrics.probe import probe
    from spidrkit.evaluation.runs.budget import budget_curve
    from spidrkit.evaluation.sweep.run import sweep
    from spidrkit.io import OutputExistsError

    call = {"sweep": lambda **kw: sweep(str(tmp_path / "no.pt"), tmp_path / "C", out, **kw),
            "probe": lambda **kw: probe(str(tmp_path / "no.pt"), tmp_path / "C", out, **kw),
            "budget": lambda **kw: budget_curve(tmp_path / "norun", tmp_path / "C", out, **kw)}[which]
    out = tmp_path / "S"
    out.mkdir()
    (out / "report.json").write_text("{}")  # numbers written, the last file not: unfinished, a rerun goes on
    with pytest.raises(Exception) as unfinished:
        call()
    assert not isinstance(unfinished.value, OutputExistsError)
    last = out / ("budget.png" if which == "budget" else "report.html")
    last.write_text("precious")  # finished
    with pytest.raises(OutputExistsError, match=f"evaluate {which}: {last} exists; pass --force"):
        call()
    with pytest.raises(Exception) as forced:  # with force it goes on, to the missing model or run
        call(force=True)
    assert not isinstance(forced.value, OutputExistsError) and last.read_text() == "precious"


# ------------------------------------------------------------------------------------- data synth, demo
@pytest.mark.needs_flite
def test_synth_force_starts_a_corpus_of_other_settings_anew(tmp_path, capsys):
    out = tmp_path / "corpus"
    args = ["data", "synth", str(out), "--voices", "slt", "--hours", "0.003", "--workers", "1", "--no-progress"]
    assert main([*args, "--seed", "1"]) == 0
    (out / "notes.txt").write_text("mine")
    first = {p.name for p in (out / "records").glob("slt_*.json")}
    capsys.readouterr()
    assert main([*args, "--seed", "2"]) == 2
    err = _err(capsys)
    assert err.startswith(f"spidrkit data: error: {out} holds a corpus made with other settings (seed: 1 -> 2)")
    assert err.endswith("pass --force to delete that corpus and build this one")
    assert main([*args, "--seed", "2", "--force"]) == 0
    ref = tmp_path / "ref"  # the same corpus built in a new folder
    assert main([*args[:2], str(ref), *args[3:], "--seed", "2"]) == 0

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and p.name not in ("spidrkit.json", ".lock", "notes.txt")}

    assert first and files(out) == files(ref)  # nothing of the seed-1 corpus is left, nothing mixed
    assert (out / "notes.txt").read_text() == "mine"  # what is not the corpus's stays
    assert main([*args, "--seed", "2"]) == 0  # and a rerun with its settings resumes it


def test_demo_refuses_a_folder_of_other_files_and_resumes_its_own(tmp_path, capsys):
    from spidrkit.demo import check_demo_folder
    from spidrkit.io import OutputExistsError

    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    assert main(["demo", "-o", str(other)]) == 2
    assert _err(capsys) == (f"spidrkit demo: error: demo: {other} exists; pass --force to replace it (or choose a "
                            "new or empty folder, or a demo's to resume it)")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    check_demo_folder(other, force=True)  # --force: the demo writes into it
    check_demo_folder(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_demo_folder(tmp_path / "empty")
    demo = tmp_path / "demo"
    (demo / "corpus" / "records").mkdir(parents=True)
    (demo / "corpus" / "records" / "settings.json").write_text("{}")  # a demo stopped in its first stage
    check_demo_folder(demo)
    (demo / "corpus" / "records" / "settings.json").unlink()
    (demo / "demo.json").write_text("{}")  # a finished demo: its rerun resumes
    check_demo_folder(demo)
    (demo / "demo.json").unlink()
    with pytest.raises(OutputExistsError):
        check_demo_folder(demo)
