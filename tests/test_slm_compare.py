"""The unit-LM comparison: its table from hand-made evaluate-slm reports (mean and spread over seeds by hand),
the scatter's data from a hand-made sweep report, the shuffled-units control and the phone inventory."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from spidrkit.evaluation.slm.compare import (
    CompareRow,
    comparison_table,
    format_cell,
    scatter_points,
    sweep_keys,
    voice_metrics,
    write_comparison,
)
from spidrkit.evaluation.slm.units import (
    PHONE_INVENTORY,
    SlmUnitsError,
    parse_units,
    phone_ids,
    shuffle_units,
    spread,
)


def _report(lex_all, lex_iv, blimp, tsc=None, split="test", ci=(1.0, 2.0)):
    results = {f"lexical/{split}": {"all": {"score": lex_all, "ci95": list(ci), "pairs": 10},
                                    "in_vocab": {"score": lex_iv, "ci95": list(ci), "pairs": 16}},
               f"syntactic/{split}": {"all": {"score": blimp, "ci95": list(ci), "pairs": 18}}}
    if tsc is not None:
        results["storycloze/dev"] = {"all": {"score": tsc, "ci95": list(ci), "pairs": 14}}
    return {"results": results}


def test_table_one_run_keeps_its_interval_and_seeds_give_mean_and_sample_std():
    scored = [("phones", _report(95.0, 97.0, 80.0, 70.0, ci=(90.0, 99.0))),
              ("spidr", _report(60.0, 70.0, 55.0)), ("spidr", _report(64.0, 72.0, 53.0)),
              ("spidr", _report(62.0, 74.0, 54.0))]
    table = comparison_table(scored)
    assert list(table) == ["phones", "spidr"]
    assert table["phones"]["swuggy_all"] == {"score": 95.0, "ci95": [90.0, 99.0], "pairs": 10, "runs": 1}
    assert table["phones"]["tsc"]["score"] == 70.0  # dev, where the task has no test split
    assert "tsc" not in table["spidr"]
    cell = table["spidr"]["swuggy_all"]
    # mean (60 + 64 + 62) / 3 = 62; deviations -2, 2, 0: sample variance 8 / 2 = 4, std 2
    assert (cell["score"], cell["std"], cell["min"], cell["max"], cell["runs"]) == (62.0, 2.0, 60.0, 64.0, 3)
    assert cell["scores"] == [60.0, 64.0, 62.0]
    assert table["spidr"]["sblimp"]["score"] == pytest.approx(54.0) and table["spidr"]["sblimp"]["std"] == 1.0
    assert format_cell(table["phones"]["swuggy_all"]) == "95.00 [90.00, 99.00]"
    assert format_cell(cell) == "62.00 ± 2.00 (3 seeds)"


def _voiced(report, lexical, syntactic):
    """``report`` with ``voice/NAME`` cells: ``lexical`` / ``syntactic`` map a voice to its score."""
    for key, by_voice in (("lexical/test", lexical), ("syntactic/test", syntactic)):
        report["results"][key] |= {f"voice/{v}": {"score": x, "ci95": [x - 5, x + 5], "pairs": 12}
                                   for v, x in by_voice.items()}
    return report


def test_by_voice_table_takes_each_voice_of_each_report_mean_over_seeds(tmp_path):
    scored = [(CompareRow("mfcc", report="a"), _voiced(_report(52.0, 53.0, 55.0), {"ked": 56.0, "kal": 46.0},
                                                      {"ked": 54.0, "kal": 56.0})),
              (CompareRow("spidr", report="b"), _voiced(_report(50.0, 48.0, 56.0), {"ked": 48.0, "kal": 54.0},
                                                       {"ked": 60.0, "kal": 52.0})),
              (CompareRow("spidr", report="c"), _voiced(_report(50.0, 48.0, 56.0), {"ked": 50.0, "kal": 52.0},
                                                       {"ked": 58.0})),
              (CompareRow("phones", report="d"), _report(90.0, 95.0, 80.0))]  # one voice: no voice cells
    metrics = voice_metrics([rep for _, rep in scored])
    assert list(metrics) == ["swuggy_all/kal", "swuggy_all/ked", "sblimp/kal", "sblimp/ked"]
    assert metrics["swuggy_all/kal"] == ("lexical", "voice/kal", "sWUGGY all, kal")
    report = write_comparison(tmp_path / "out", scored)
    table = report["by_voice"]["table"]
    assert table["spidr"]["swuggy_all/kal"]["score"] == 53.0 and table["spidr"]["swuggy_all/kal"]["std"] == 2 ** 0.5
    assert table["spidr"]["sblimp/kal"] == {"score": 52.0, "ci95": [47.0, 57.0], "pairs": 12, "runs": 1}
    assert table["mfcc"]["swuggy_all/ked"]["score"] == 56.0 and table["phones"] == {}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| units | sWUGGY all, kal | sWUGGY all, ked | sBLIMP, kal | sBLIMP, ked |" in md
    spidr = ("| spidr | 53.00 ± 1.41 (2 seeds) | 49.00 ± 1.41 (2 seeds) | 52.00 [47.00, 57.00] | "
             "59.00 ± 1.41 (2 seeds) |")
    assert spidr in md  # sBLIMP kal: one of the two seeds scored it
    assert "| phones | – | – | – | – |" in md
    alone = write_comparison(tmp_path / "alone", scored[3:])
    assert alone["by_voice"]["metrics"] == {} and "By voice" not in (tmp_path / "alone" / "report.md").read_text()


def test_scatter_reads_abx_and_pnmi_of_layers_and_baselines(tmp_path):
    sweep = {"results": {"layers": {"6": {"abx_within": 8.0, "abx_across": 10.0}},
                         "baselines": {"mfcc": {"abx_within": 20.0, "abx_across": 25.0}},
                         "units": {"codebook L6": {"pnmi": 0.4}, "kmeans100 L6": {"pnmi": 0.3}}}}
    rows = [CompareRow("phones", "phones", "lm0"), CompareRow("codebook L6", "codebook:6", "lm1", "ckpt"),
            CompareRow("codebook L6", "codebook:6", "lm2", "ckpt", seed=1),
            CompareRow("kmeans L6", "kmeans:C.npy", "lm3", "ckpt", layer=6),
            CompareRow("MFCC", "kmeans:M.npy", "lm4", "mfcc")]
    assert sweep_keys(rows[3]) == ("layers/6", "units/kmeans* L6")
    scored = [(rows[0], _report(95.0, 96.0, 80.0)), (rows[1], _report(60.0, 61.0, 55.0)),
              (rows[2], _report(62.0, 63.0, 57.0)), (rows[3], _report(66.0, 67.0, 52.0)),
              (rows[4], _report(52.0, 53.0, 51.0))]
    table = comparison_table([(r.label, rep) for r, rep in scored])
    points = scatter_points(rows, table, sweep)
    assert [(p["label"], p["abx_across"], p["pnmi"], p["swuggy_all"]) for p in points] == [
        ("codebook L6", 10.0, 0.4, 61.0), ("kmeans L6", 10.0, 0.3, 66.0), ("MFCC", 25.0, None, 52.0)]
    report = write_comparison(tmp_path, scored, sweep=sweep)
    assert report["plot"] == "slm_vs_abx.png" and (tmp_path / "slm_vs_abx.png").is_file()
    assert json.loads((tmp_path / "report.json").read_text())["table"]["codebook L6"]["swuggy_all"]["std"] == \
        pytest.approx(2 ** 0.5)
    md = (tmp_path / "report.md").read_text()
    assert "| phones | 95.00 [1.00, 2.00] | 96.00 [1.00, 2.00] | 80.00 [1.00, 2.00] | – |" in md
    assert "| MFCC | 20.00 | 25.00 | – | 52.00 | 51.00 |" in md


def test_shuffled_units_permute_each_utterance_seeded():
    units = {"a": [3, 3, 1, 2, 2, 2, 5, 1], "b": list(range(20))}
    one, again, other = shuffle_units(units, 0), shuffle_units(units, 0), shuffle_units(units, 1)
    assert one == again and one != other
    assert Counter(one["a"]) == Counter([3, 1, 2, 5, 1])  # de-duplicated first, as the LM sees them
    assert sorted(one["b"]) == list(range(20)) and one["b"] != list(range(20))
    assert shuffle_units({"b": units["b"]}, 0)["b"] == one["b"]  # per utterance: independent of the others
    assert Counter(shuffle_units(units, 0, dedup=False)["a"]) == Counter(units["a"])


def test_phone_inventory_and_silences():
    assert len(PHONE_INVENTORY) == 39 and PHONE_INVENTORY[:3] == ("AA", "AE", "AH") and PHONE_INVENTORY[-1] == "ZH"
    assert phone_ids(["SIL", "K", "AE1", "T", "sp", "ZH"]) == [19, 1, 30, 38]  # K AE T ZH of the sorted 39
    with pytest.raises(SlmUnitsError, match="phone 'XX' is not in the inventory"):
        phone_ids(["XX"])
    assert (parse_units("phones").kind, parse_units("phones").k) == ("phones", 39)
    with pytest.raises(SlmUnitsError, match="mfcc has no codebook"):
        parse_units("codebook:3", encoder="mfcc")


def test_cli_compares_existing_reports(tmp_path, capsys):
    from spidrkit.cli import main

    reports = []
    for i, value in enumerate((60.0, 64.0)):
        reports.append(tmp_path / f"r{i}.json")
        reports[-1].write_text(json.dumps(_report(value, value, 50.0)))
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"label": "spidr", "report": str(r), "seed": i} for i, r in enumerate(reports)]))
    assert main(["evaluate", "slm-compare", str(tmp_path / "unused"), str(rows), "-o", str(tmp_path / "out")]) == 0
    assert "spidr" in capsys.readouterr().out
    table = json.loads((tmp_path / "out" / "report.json").read_text())["table"]
    cell = table["spidr"]["swuggy_all"]
    assert cell["score"] == 62.0 and cell["std"] == pytest.approx(8 ** 0.5)  # deviations -2, 2: (4 + 4) / 1
    rows.write_text('[{"name": 1}]')
    assert main(["evaluate", "slm-compare", str(tmp_path), str(rows)]) == 2
    assert "expected a JSON list" in capsys.readouterr().err


def test_spread_takes_evenly_spaced_entries_in_file_id_order():
    # the one rule (data.corpora.manifest.evenly_spaced_files): indices round(linspace(0, 9, 4)) = 0, 3, 6, 9
    ids = [f"u{i}" for i in range(10)]
    assert spread(ids, 4) == ["u0", "u3", "u6", "u9"] and spread(ids[:2], 5) == ["u0", "u1"]
    # 0, 4.5, 9 rounds half to even: 0, 4, 9; duplicates of a short list collapse
    assert spread(ids, 3) == ["u0", "u4", "u9"] and spread(["a", "b", "c"], 2) == ["a", "c"]
    # in file-id order whatever the manifest's: `lm units --max-files N` picks the sweep's N files
    from spidrkit.data.corpora.manifest import ManifestEntry
    from spidrkit.evaluation.sweep.evalset import spread as sweep_spread

    entries = [ManifestEntry(f"{v}_{i:02d}", f"{v}_{i:02d}.wav", 16000) for v in "bca" for i in range(7)]
    assert spread(entries, 5) == sweep_spread(entries, 5) == sweep_spread(entries[::-1], 5)
    assert [e.fileid for e in spread(entries, 5)] == ["a_00", "a_05", "b_03", "c_01", "c_06"]


def test_a_group_of_too_few_pair_ids_is_shown_as_such_not_as_a_score():
    from spidrkit.evaluation.slm.compare import format_cell
    from spidrkit.evaluation.slm.rules import MIN_PAIRS

    few = {"score": 25.0, "ci95": [25.0, 25.0], "pairs": MIN_PAIRS - 6, "runs": 1}
    assert format_cell(few) == f"too few pairs ({MIN_PAIRS - 6})"
    assert format_cell({**few, "pairs": MIN_PAIRS}) == "25.00 [25.00, 25.00]"
