"""Evaluation and checkpoint inputs refused before any work, each with one stderr line naming the user's thing:
slm-compare rows of two benchmarks or of two scorings under one label, rows lacking a field or a file, output
folders that are files, integer tensors where float weights belong, and a phone probe of one phone class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from spidrkit.cli import main
from spidrkit.evaluation.slm.bench import benchmark_record, read_benchmark
from support import LEXICAL, SWEEP_MODEL, SYNTACTIC, names_of, small_model, write_split


def _cli(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def _report(path: Path, bench: dict, **scoring) -> Path:
    cell = {"score": 60.0, "ci95": [55.0, 65.0], "pairs": 10}
    report = {**bench, "results": {"lexical/dev": {"all": cell}},
              "scoring": {"normalize": True, "bootstrap": 1000, **scoring}}
    path.write_text(json.dumps(report))
    return path


def _benchmark(root: Path, lexical: str = LEXICAL) -> Path:
    write_split(root / "lexical" / "dev", lexical, names_of(lexical))
    write_split(root / "syntactic" / "dev", SYNTACTIC, names_of(SYNTACTIC))
    return root


def _compare(tmp_path, capsys, rows, bench="nobench") -> tuple[int, str]:
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    return _cli(["evaluate", "slm-compare", bench, tmp_path / "rows.json", "-o", tmp_path / "out"], capsys)


# ------------------------------------------------------------------------------------------- case 1: benchmarks
def test_benchmark_record_identifies_the_files_and_gold_not_the_folder(tmp_path):
    one = _benchmark(tmp_path / "one")
    copy = shutil.copytree(one, tmp_path / "copy")
    other = _benchmark(tmp_path / "other", LEXICAL.replace("dog,d o g,1,5,A", "dog,d o g,0,5,A"))
    ids = [benchmark_record(b, read_benchmark(b))["benchmark_id"] for b in (one, copy, other)]
    assert ids[0] == ids[1] and ids[0] != ids[2] and len(ids[0]) == 16
    assert benchmark_record(one, read_benchmark(one))["splits"] == [
        {"task": "lexical", "split": "dev", "files": len(names_of(LEXICAL)), "gold": True},
        {"task": "syntactic", "split": "dev", "files": len(names_of(SYNTACTIC)), "gold": True}]


def test_compare_refuses_reports_of_two_benchmarks(tmp_path, capsys):
    one, other = _benchmark(tmp_path / "one"), _benchmark(tmp_path / "other", LEXICAL.replace(",1,5,A", ",1,6,A"))
    r0 = _report(tmp_path / "r0.json", benchmark_record(one, read_benchmark(one)))
    r1 = _report(tmp_path / "r1.json", benchmark_record(other, read_benchmark(other)))
    rows = [{"label": "phones", "report": str(r0)}, {"label": "spidr", "report": str(r1)}]
    code, err = _compare(tmp_path, capsys, rows)
    assert code == 2 and err == (f"spidrkit evaluate slm-compare: error: {tmp_path / 'rows.json'}: row 1 ('spidr') "
                                 f"({r1}) was "
                                 f"scored on benchmark {other}, row 0 ('phones') ({r0}) on {one} (other files or "
                                 "gold): compare scores of one benchmark\n")
    assert not (tmp_path / "out").exists()
    # against the command's BENCHMARK too: a report of `other` in a comparison on `one`
    code, err = _compare(tmp_path, capsys, rows[1:], bench=one)
    assert code == 2 and f"row 0 ('spidr') ({r1}) was scored on benchmark {other}, BENCHMARK {one} on {one}" in err
    code, _ = _compare(tmp_path, capsys, rows[:1], bench=one)
    assert code == 0 and (tmp_path / "out" / "report.json").is_file()


def test_compare_refuses_two_scorings_under_one_label(tmp_path, capsys):
    bench = benchmark_record("b", [])
    r0 = _report(tmp_path / "r0.json", bench)
    r1 = _report(tmp_path / "r1.json", bench, normalize=False)
    r2 = _report(tmp_path / "r2.json", bench, bootstrap=10)
    code, err = _compare(tmp_path, capsys, [{"label": "spidr", "report": str(r0)},
                                            {"label": "spidr", "report": str(r1)}])
    assert code == 2 and err == (f"spidrkit evaluate slm-compare: error: {tmp_path / 'rows.json'}: row 1 ('spidr') "
                                 f"({r1}) and "
                                 f"row 0 ('spidr') ({r0}) share the label 'spidr' but were scored with "
                                 "normalize=False and normalize=True: give them different labels or score them "
                                 "alike\n")
    code, err = _compare(tmp_path, capsys, [{"label": "spidr", "report": str(r0)},
                                            {"label": "spidr", "report": str(r2)}])
    assert code == 2 and "bootstrap=10 and bootstrap=1000" in err
    assert not (tmp_path / "out").exists()
    code, _ = _compare(tmp_path, capsys, [{"label": "spidr", "report": str(r0)},
                                          {"label": "summed", "report": str(r1)}])  # two labels: two rows
    assert code == 0
    assert set(json.loads((tmp_path / "out" / "report.json").read_text())["table"]) == {"spidr", "summed"}


# ------------------------------------------------------------------------------------------- case 2: rows
@pytest.mark.parametrize(("row", "tail"), [
    ({"label": "b", "report": "gone.json"}, "row 1 ('b'): report gone.json: no such file (an `evaluate slm` "
                                            "report.json)"),
    ({"label": "b", "units": "codebook:6"}, "row 1 ('b'): no 'lm' (give units and lm, or report: an existing "
                                            "report.json)"),
    ({"label": "b", "lm": "runs/lm"}, "row 1 ('b'): no 'units' (give units and lm, or report: an existing "
                                      "report.json)"),
    ({"label": "b", "units": "codebook:6", "lm": "./no/such/run"},
     "row 1 ('b'): lm ./no/such/run: no such folder (a `spidrkit lm train` run folder)"),
])
def test_compare_checks_every_row_before_scoring(tmp_path, capsys, row, tail):
    r0 = _report(tmp_path / "r0.json", benchmark_record("b", []))
    code, err = _compare(tmp_path, capsys, [{"label": "a", "report": str(r0)}, row])
    assert code == 2 and err == f"spidrkit evaluate slm-compare: error: {tmp_path / 'rows.json'}: {tail}\n"
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- case 3: output folders
@pytest.mark.parametrize("args", [
    ["evaluate", "slm", "BENCH", "--units", "phones", "--lm", "RUN", "-o", "{out}"],
    ["evaluate", "slm-compare", "BENCH", "ROWS.json", "-o", "{out}"],
    ["evaluate", "sweep", "--model", "M", "--corpus", "C", "-o", "{out}"],
    ["evaluate", "probe", "--model", "M", "--corpus", "C", "-o", "{out}"],
    ["evaluate", "budget", "RUN", "--corpus", "C", "-o", "{out}"],
    ["extract", "--model", "M", "IN", "-o", "{out}"],
    ["lm", "train", "UNITS", "-o", "{out}"],
    ["pretrain", "tiny", "-o", "{out}"],
    ["data", "synth", "-o", "{out}"],
    ["units", "export", "UNITS", "-o", "{out}"],
])
def test_an_output_folder_that_is_a_file_is_refused_first(tmp_path, capsys, args):
    afile = tmp_path / "AFILE"
    afile.write_text("kept")
    code, err = _cli([a.format(out=afile) for a in args], capsys)
    flag = args[args.index("{out}") - 1] if args[args.index("{out}") - 1].startswith("-") else "OUT"
    command = " ".join(args[:2]) if args[0] == "evaluate" else args[0]  # evaluate's messages name the action
    assert code == 2 and err == f"spidrkit {command}: error: {flag} {afile}: is a file, not a folder; give a " \
                                "folder path\n"
    assert afile.read_text() == "kept"


def test_check_output_dir_names_a_file_among_the_parents(tmp_path):
    from spidrkit.io import OutputPathError, check_output_dir

    (tmp_path / "AFILE").write_text("")
    with pytest.raises(OutputPathError) as e:
        check_output_dir(tmp_path / "AFILE" / "sub" / "out", "-o")
    assert str(e.value) == (f"-o {tmp_path / 'AFILE' / 'sub' / 'out'}: {tmp_path / 'AFILE'} is a file, not a "
                            "folder; give a path below a folder")
    assert check_output_dir(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    assert not (tmp_path / "new").exists()  # checked, not created


# ------------------------------------------------------------------------------------------- case 4: weights
def test_integer_weights_are_refused_not_cast(tmp_path, capsys):
    from spidrkit.checkpoints import CheckpointError, load, save_spidrkit
    from spidrkit.config import load_config

    cfg = load_config("tiny", SWEEP_MODEL)
    sd = small_model().state_dict()
    assert [k for k, v in sd.items() if not v.is_floating_point()] == ["current_step"]  # the one integer entry
    good = save_spidrkit(tmp_path / "good.safetensors", cfg, sd)
    assert load(good).model.state_dict()["current_step"].dtype == torch.long
    name = next(k for k, v in sd.items() if v.is_floating_point() and v.dim() == 2)
    bad = save_spidrkit(tmp_path / "bad.safetensors", cfg, {**sd, name: sd[name].round().long()})
    with pytest.raises(CheckpointError) as e:
        load(bad)
    assert str(e.value) == (f"{bad}: tensor {name!r} is int64, not float weights; these are not trained weights "
                            "(re-export the checkpoint)")
    capsys.readouterr()
    assert main(["extract", str(tmp_path), "--model", str(bad), "-o", str(tmp_path / "o")]) == 2  # the CLI: exit 2
    assert capsys.readouterr().err == (f"spidrkit extract: error: {bad}: tensor {name!r} is int64, not float weights; "
                                       "these are not trained weights (re-export the checkpoint)\n")
    assert not (tmp_path / "o").exists()
    flags = save_spidrkit(tmp_path / "flags.safetensors", cfg, {**sd, name: sd[name] > 0})
    with pytest.raises(CheckpointError, match=f"tensor {name!r} is bool, not float weights"):
        load(flags)


# ------------------------------------------------------------------------------------------- case 5: probe classes
@pytest.mark.needs_flite
def test_probe_of_one_phone_class_is_refused(speech_corpus, small_checkpoint, tmp_path, capsys):
    corpus = shutil.copytree(speech_corpus, tmp_path / "corpus")
    frames = corpus / "heldout_frames.txt"
    frames.write_text("".join(f"{line.split()[0]} " + " ".join(["aa"] * (len(line.split()) - 1)) + "\n"
                              for line in frames.read_text().splitlines() if line.strip()))
    code, err = _cli(["evaluate", "probe", "--model", small_checkpoint, "--corpus", corpus, "--layers", "1",
                      "--baselines", "none", "-o", tmp_path / "out", "--quiet"], capsys)
    assert code == 2 and err == (f"spidrkit evaluate probe: error: {frames}: the probe's heldout files have 1 "
                                 "phone class "
                                 "(aa); a phone probe needs 2 or more (give a corpus of several phones)\n")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- --model given another kind of model
def test_model_given_a_unit_lm_or_an_unsupported_transformers_folder_says_what_it_is(tmp_path, capsys):
    run = tmp_path / "lm_run"  # a unit LM run folder (vocab.json, best/, checkpoints/) and its best/ model
    (run / "best").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    for folder in (run, run / "best"):
        (folder / "vocab.json").write_text('{"k": 4}')
    (run / "best" / "config.json").write_text('{"model_type": "opt"}')
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    (bert / "model.safetensors").write_bytes(b"\0" * 16)
    for folder in (run, run / "best"):
        code, err = _cli(["extract", str(tmp_path), "--model", str(folder), "-o", str(tmp_path / "o")], capsys)
        assert code == 2 and err == (f"spidrkit extract: error: {folder} is a unit language model folder (spidrkit lm "
                                     "train): pass it to --lm, not as a speech model\n")
    code, err = _cli(["extract", str(tmp_path), "--model", str(bert), "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and err == (f"spidrkit extract: error: {bert}: a transformers model of model_type 'bert', which "
                                 "spidrkit does not load as a speech model; supported model_type: hubert, wav2vec2, "
                                 "wavlm, data2vec-audio\n")
    assert not (tmp_path / "o").exists()


def test_sweep_max_files_0_is_refused_before_any_model_or_corpus_is_read(tmp_path, capsys):
    code, err = _cli(["evaluate", "sweep", "--model", tmp_path / "no.pt", "--corpus", tmp_path / "none", "-o",
                      tmp_path / "o", "--max-files", "0"], capsys)
    assert code == 2 and err == "spidrkit evaluate sweep: error: max_files (--max-files) must be >= 1, got 0\n"
    assert not (tmp_path / "o").exists()
