"""``spidrkit evaluate abx | units | map | plot-perplexity``: the same numbers as the Python functions, JSON
output with its inputs, clear errors for missing files and mismatched file ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spidrkit.cli import main
from spidrkit.data.corpora.alignments import (
    frame_labels,
    triphone_items,
    write_alignments,
    write_frame_labels,
    write_item_file,
)
from spidrkit.evaluation.metrics.abx import abx, abx_units
from spidrkit.evaluation.metrics.units import unit_quality
from spidrkit.evaluation.metrics.word_map import word_map
from spidrkit.extraction.features_io import save_features
from spidrkit.extraction.units import write_units

PHONES = ["AA", "IY", "S", "T", "M", "N"]
LEXICON = {"sat": ["S", "AA", "T"], "tea": ["T", "IY"], "mat": ["M", "AA", "T"], "neat": ["N", "IY", "T"],
           "miss": ["M", "IY", "S"]}
SPEAKERS = ("s1", "s2", "s3")
RATE = 50  # the features' frame rate (no sidecar: the CLI takes the default model's, 50 Hz)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """12 utterances of 3 speakers from a 5-word lexicon; features at 50 Hz = phone embedding + speaker
    offset + noise; units = phone index (with 15 % of frames replaced by noise); labels at 100 Hz."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    phone_emb = rng.normal(size=(len(PHONES), 16))
    speaker_emb = {s: 0.8 * rng.normal(size=16) for s in SPEAKERS}
    phones, words, speakers, frames, units = {}, {}, {}, {}, {}
    feats_dir = root / "features"
    for i in range(12):
        utt, spk = f"utt{i:02d}", SPEAKERS[i % 3]
        t, p_iv, w_iv = 0.1, [(0.0, 0.1, "SIL")], []
        for word in rng.choice(list(LEXICON), size=6):
            start = t
            for ph in LEXICON[word]:
                n = int(rng.integers(3, 7))  # 60-120 ms
                p_iv.append((round(t, 4), round(t + n / 50, 4), ph))
                t += n / 50
            w_iv.append((round(start, 4), round(t, 4), str(word)))
        p_iv.append((round(t, 4), round(t + 0.1, 4), "SIL"))
        t += 0.1
        phones[utt], words[utt], speakers[utt] = p_iv, w_iv, spk
        n_frames = round(t * 50)
        lab50 = frame_labels(p_iv, n_frames, rate=50)
        frames[utt] = frame_labels(p_iv, round(t * 100), rate=100)
        idx = np.array([PHONES.index(p) if p in PHONES else len(PHONES) for p in lab50])
        emb = np.vstack([phone_emb, np.zeros((1, 16))])[idx] + speaker_emb[spk] + 0.6 * rng.normal(size=(n_frames, 16))
        save_features(feats_dir, utt, torch.tensor(emb, dtype=torch.float32))
        noisy = rng.random(n_frames) < 0.15
        units[utt] = np.where(noisy, rng.integers(0, 12, n_frames), idx)
    paths = {
        "features": feats_dir,
        "item": write_item_file(root / "eval.item", triphone_items(phones, speakers)),
        "words": write_alignments(root / "words.txt", words, speakers),
        "labels": write_frame_labels(root / "frames.txt", frames),
        "units": write_units(root / "units.txt", units),
        "root": root,
    }
    return paths


def run_cli(args, capsys) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_abx_matches_the_function(data, capsys, tmp_path):
    out = tmp_path / "abx.json"
    code, printed, _ = run_cli(["abx", data["features"], data["item"], "-o", out], capsys)
    assert code == 0
    within = abx(data["features"], data["item"], speaker="within", frequency=RATE, progress=False)
    across = abx(data["features"], data["item"], speaker="across", frequency=RATE, progress=False)
    result = json.loads(out.read_text())
    assert result["results"]["abx_within"] == pytest.approx(within, abs=1e-9)
    assert result["results"]["abx_across"] == pytest.approx(across, abs=1e-9)
    assert result["results"]["distance"] == "angular"
    assert result["inputs"]["item"] == str(data["item"]) and len(result["inputs"]["item_sha256"]) == 16
    assert f"{within:.2f}" in printed and f"{across:.2f}" in printed
    assert within < 25  # the features carry the phone: far better than chance

    code, printed, _ = run_cli(["abx", data["features"], data["item"], "--speaker", "across", "--context", "any"],
                               capsys)
    any_context = abx(data["features"], data["item"], speaker="across", context="any", frequency=RATE, progress=False)
    assert code == 0 and f"{any_context:.2f}" in printed and "abx_within" not in printed


def test_the_frame_rate_comes_from_the_option_or_the_sidecar(data, capsys, tmp_path):
    """Features recorded (sidecar) or declared (--frame-rate) at 25 Hz are scored at 25 Hz."""
    import shutil

    from spidrkit.io import write_sidecar

    at_25 = abx(data["features"], data["item"], speaker="within", frequency=25, progress=False)
    out = tmp_path / "a.json"
    code, _, _ = run_cli(["abx", data["features"], data["item"], "--speaker", "within", "--frame-rate", "25",
                          "-o", out], capsys)
    assert code == 0 and json.loads(out.read_text())["results"]["abx_within"] == at_25
    folder = shutil.copytree(data["features"], tmp_path / "features")
    write_sidecar(folder, frame_rate=25.0)
    code, _, _ = run_cli(["abx", folder, data["item"], "--speaker", "within", "-o", out, "--force"], capsys)
    assert code == 0 and json.loads(out.read_text())["results"]["abx_within"] == at_25
    code, _, err = run_cli(["map", folder, data["words"], "--frame-rate", "0"], capsys)
    assert code == 2 and "--frame-rate must be > 0" in err


def test_abx_of_units(data, capsys, tmp_path):
    out = tmp_path / "u.json"
    code, printed, _ = run_cli(["abx", data["units"], data["item"], "--speaker", "within", "-o", out],
                               capsys)
    assert code == 0
    expected = abx_units(data["units"], data["item"], speaker="within", frequency=RATE, progress=False)
    assert json.loads(out.read_text())["results"]["abx_within"] == pytest.approx(expected, abs=1e-9)
    assert json.loads(out.read_text())["results"]["distance"] == "identical"
    assert f"{expected:.2f}" in printed

    code, _, err = run_cli(["abx", data["units"], data["item"], "--distance", "angular"], capsys)
    assert code == 2 and "identical" in err


def test_units_matches_unit_quality(data, capsys, tmp_path):
    from spidrkit.data.corpora.alignments import read_frame_labels

    out, png = tmp_path / "q.json", tmp_path / "pgc.png"
    code, printed, _ = run_cli(["units", data["units"], data["labels"], "--ignore", "SIL", "--plot", png, "-o", out],
                               capsys)
    assert code == 0
    q = unit_quality(data["units"], read_frame_labels(data["labels"]), unit_rate=RATE, ignore_labels=["SIL"])
    got = json.loads(out.read_text())["results"]
    for key in ("pnmi", "phone_purity", "cluster_purity", "codebook_perplexity", "bitrate"):
        assert got[key] == pytest.approx(q[key], abs=1e-12)
        assert (f"{q[key]:.3f}" if key in ("pnmi", "phone_purity", "cluster_purity") else f"{q[key]:.2f}") in printed
    assert got["active_codewords"] == q["active_codewords"] == 12
    assert got["ignore_labels"] == ["SIL"] and got["phones"] == sorted(PHONES)
    assert 0.5 < got["pnmi"] < 1  # units mostly equal to the phone
    assert png.read_bytes()[:8] == PNG and f"-> {png}" in printed


def test_map_matches_word_map(data, capsys, tmp_path):
    out = tmp_path / "map.json"
    code, printed, _ = run_cli(["map", data["features"], data["words"], "-o", out], capsys)
    assert code == 0
    expected = word_map(data["features"], data["words"], frame_rate=RATE, progress=False)
    got = json.loads(out.read_text())["results"]
    assert got["map"] == pytest.approx(expected, abs=1e-9) and got["words"] == 72
    assert f"{expected:.2f}" in printed and expected > 20

    code, _, err = run_cli(["map", data["features"], data["words"], "--min-occurrences", "100"], capsys)
    assert code == 2 and "no word occurs 100 times" in err


def test_clear_errors(data, capsys, tmp_path):
    code, _, err = run_cli(["abx", data["features"], tmp_path / "missing.item"], capsys)
    assert code == 2 and "no item file" in err
    code, _, err = run_cli(["abx", tmp_path / "nofeatures", data["item"]], capsys)
    assert code == 2 and "no features folder" in err
    code, by_file, err = run_cli(["abx", data["units"], data["item"]], capsys)  # a FEATURES file: a units file
    assert code == 0 and "deprecated" not in err
    code, by_flag, flag_err = run_cli(["abx", data["units"], data["item"], "--units"], capsys)  # the old flag
    assert code == 0 and by_flag == by_file and flag_err == ("spidrkit: warning: evaluate abx --units is deprecated: "
                                                             "a FEATURES file is read as a units file\n" + err)

    # an item file naming utterances the features do not have
    item = tmp_path / "other.item"
    item.write_text(data["item"].read_text().replace("utt03 ", "utt99 "))
    code, _, err = run_cli(["abx", data["features"], item], capsys)
    assert code == 2 and "missing from the features" in err and "utt99" in err
    code, _, err = run_cli(["abx", data["units"], item], capsys)
    assert code == 2 and "missing from the units file" in err

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(line for line in data["labels"].read_text().splitlines()
                                if not line.startswith("utt05 ")) + "\n")
    with pytest.warns(UserWarning, match="1 of 12 utterances have no phone labels"):
        code, printed, _ = run_cli(["units", data["units"], labels], capsys)
    assert code == 0 and "11" in printed  # scored on the 11 labelled utterances
    labels.write_text("other 1 2 3\n")
    code, _, err = run_cli(["units", data["units"], labels], capsys)
    assert code == 2 and "no utterance has both units and phone labels" in err
    code, _, err = run_cli(["units", tmp_path / "none.txt", data["labels"]], capsys)
    assert code == 2 and "no units file" in err

    words = tmp_path / "words.txt"
    words.write_text(data["words"].read_text() + "utt77 0.1 0.5 sat s1\n")
    code, _, err = run_cli(["map", data["features"], words], capsys)
    assert code == 2 and "utt77" in err


@pytest.mark.parametrize("action", ["abx", "units", "map", "sweep", "plot-perplexity"])
def test_help(action, capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", action, "--help"])
    assert e.value.code == 0 and "usage: spidrkit evaluate" in capsys.readouterr().out


def test_plot_perplexity(tmp_path, capsys):
    runs = []
    for name, scale in (("spidr", 2.0), ("dinosr", 1.0)):
        path = tmp_path / name / "metrics.jsonl"
        path.parent.mkdir()
        path.write_text("".join(json.dumps({"step": s, "layers": [5, 6], "codebook_ppl": [scale * s, s],
                                            "prediction_ppl": [s, scale * s]}) + "\n" for s in range(1, 30)))
        runs.append(path)
    png = tmp_path / "ppl.png"
    code, printed, _ = run_cli(["plot-perplexity", *runs, "-o", png, "--codebook-size", "256"], capsys)
    assert code == 0 and str(png) in printed
    assert png.read_bytes()[:8] == PNG

    code, _, err = run_cli(["plot-perplexity", *runs, "-o", png, "--labels", "a,b,c", "--force"], capsys)
    assert code == 2 and "3 labels for 2 metrics files" in err
    code, _, err = run_cli(["plot-perplexity", tmp_path / "none.jsonl", "-o", png, "--force"], capsys)
    assert code == 2 and "no metrics file" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    code, _, err = run_cli(["plot-perplexity", bad, "-o", png, "--force"], capsys)
    assert code == 2 and "perplexity" in err


# ------------------------------------------------------------------------------------------- probe, several models


@pytest.mark.needs_flite
def test_probe_cli(speech_corpus, small_checkpoint, tmp_path, capsys):
    out = tmp_path / "probe"
    code, printed, _ = run_cli(["probe", "--model", str(small_checkpoint), "--corpus", str(speech_corpus),
                                "--layers", "1,3", "--baselines", "mfcc", "-o", str(out), "--quiet"], capsys)
    assert code == 0
    res = json.loads((out / "report.json").read_text())["results"]
    assert list(res["layers"]) == ["1", "3"] and list(res["baselines"]) == ["mfcc"]
    assert f"{res['layers']['3']['probe_acc']:.2f}" in printed and "best layer by phone accuracy" in printed
    code, _, err = run_cli(["probe", "--model", str(small_checkpoint), "--corpus", str(speech_corpus),
                            "--layers", "9", "--quiet"], capsys)
    assert code == 2 and "out of range" in err


@pytest.mark.needs_flite
def test_sweep_cli_of_several_models(speech_corpus, small_checkpoint, tmp_path, capsys):
    out = tmp_path / "many"
    args = ["sweep", "--model", str(small_checkpoint), "--model", str(small_checkpoint), "--corpus", str(speech_corpus),
            "-o", str(out), "--layers", "2", "--baselines", "mfcc", "--max-files", "4", "--tsne-points", "0",
            "--quiet"]
    code, printed, _ = run_cli([*args, "--label", "a", "--label", "b"], capsys)
    assert code == 0
    res = json.loads((out / "report.json").read_text())["results"]
    assert list(res["models"]) == ["a", "b"] and (out / "models" / "a" / "report.md").is_file()
    assert res["comparison"]["tables"]["abx_within"]["2"] == {m: res["models"][m]["layers"]["2"]["abx_within"]
                                                              for m in ("a", "b")}
    assert "ABX within speaker (%)" in printed and "a: best layer by mean ABX 2" in printed
    code, _, err = run_cli([*args, "--label", "a", "--force"], capsys)
    assert code == 2 and "--label" in err
