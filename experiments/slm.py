"""The sLM study (docs/slm_study.md): its targets end to end on the synthetic benchmarks (``spidrkit data synth-slm``).

    python experiments/slm.py OUT --checkpoint CKPT --sweep SWEEP/report.json   # the real measurement
    python experiments/slm.py OUT --checkpoint random:tiny --layer 4 --pairs 20 --lm-hours 0.02 \\
        --lm-set train.max_steps=5 --seeds 1 --threads 1 --bootstrap 50             # a smoke test
    python experiments/slm.py OUT ... --plan                                        # the stages, an estimate
    python experiments/slm.py OUT --sources phones --pairs 250 --threads 1          # topline + shuffled control only

Stages (each writes ``OUT/stages/NAME.json`` when done and is skipped when rerun; LM runs resume):

1. ``bench``: the synthetic sets + LM corpus (``OUT/bench`` or ``--bench DIR``), ``--pairs`` ids per task;
2. ``units``: the units of the LM corpus's train and dev splits for each source -- gold phones (39 ids,
   silences dropped), MFCC k-means (``--k``, fitted on the train split's MFCC), SpidR k-means of layer L
   (fitted on the train split's layer-L features; L: ``--layer``, else the sweep's best ABX layer), SpidR
   codebook of layer C (``--codebook-layer``, else the sweep's best codebook layer, else L); plus the
   shuffled control (each training utterance's phones permuted: ``--shuffled-of``); ``--sources`` keeps some of
   the four (the shuffled control always runs; no checkpoint, layer or k-means is needed without a SpidR source);
3. ``lm``: a ``tiny`` LM with a context of 1024 tokens (``--lm-set`` overrides) per source and seed
   (``--seeds``, the shuffled control too: one LM moves by ~4 points with its budget alone, so its target is
   read on the mean over seeds), the phone LMs without de-duplication; tokens/s from each run's metrics;
4. ``score``: every LM on the benchmark through one scorer, the comparison report (``OUT/compare``) with
   the ABX/PNMI scatter when ``--sweep`` is given;
5. ``quality``: the paper's view on the benchmark's own units -- PNMI and ABX (within / across speaker, one-hot
   units) of each encoder source's units of the LM corpus's dev split (the units the LMs read), against its mean
   sLM scores: a table and ``OUT/compare/units_vs_slm.png``;
6. ``timing``: scoring ``--score-utts`` utterances (benchmark wavs), SpidR k-means units + LM, in seconds
   (skipped without the ``kmeans`` source);
7. the targets: topline >= 90 % sWUGGY and >= 75 % sBLIMP; shuffled 50 +/- 3 % (sWUGGY); SpidR (k-means and
   codebook) > MFCC on sWUGGY in every seed and on the mean -> ``OUT/targets.json`` and the printout (the
   targets of the ``--sources`` run only), and the ceiling that the OOV pairs put on the topline's sWUGGY "all"
   (:func:`topline_ceiling`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from spidrkit.data.slm.build import synthesize_slm
from spidrkit.encoders.mfcc import SignalEncoder
from spidrkit.evaluation.slm.compare import CompareRow, score_rows, write_comparison
from spidrkit.evaluation.slm.units import CorpusSplit, fit_corpus_kmeans, parse_units, write_corpus_units
from spidrkit.io import read_metrics, write_json_atomic
from spidrkit.lm import train

LM_DEFAULTS = ("model.context=1024",)  # whole tSC stories of de-duplicated units fit (tiny's 256 do not)
SOURCES = ("phones", "mfcc", "codebook", "kmeans")
LABELS = {"phones": "phones (topline)", "mfcc": "MFCC k-means", "codebook": "SpidR codebook",
          "kmeans": "SpidR k-means", "shuffled": "shuffled phones"}


def stage(out: Path, name: str, fn, *args):
    path = out / "stages" / f"{name}.json"
    if path.is_file():
        print(f"[{name}] done before: {path}")
        return json.loads(path.read_text())
    print(f"[{name}] ...", flush=True)
    t0 = time.perf_counter()
    result = fn(*args)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(path, result)
    print(f"[{name}] {result['seconds']:.1f} s")
    return result


def unit_sources(args) -> list[str]:
    """The unit sources whose units are made: ``--sources`` and the shuffled control's ``--shuffled-of``."""
    return [s for s in SOURCES if s in args.sources or s == args.shuffled_of]


def choose_layers(args) -> tuple[int | None, int | None]:
    """(k-means layer, codebook layer): the arguments, else the sweep's best layer and best codebook layer;
    (None, None) when no SpidR source is run."""
    if not {"codebook", "kmeans"} & set(unit_sources(args)):
        return None, None
    results = json.loads(Path(args.sweep).read_text()).get("results", {}) if args.sweep else {}
    layer = args.layer if args.layer is not None else results.get("best_layer")
    if layer is None:
        sys.exit("pass --layer L or --sweep REPORT.json (with a best_layer)")
    codebook = args.codebook_layer if args.codebook_layer is not None else results.get("best_codebook_layer")
    return int(layer), int(codebook if codebook is not None else layer)


def make_units(args, out: Path, bench: Path, layers: tuple[int, int]) -> dict:
    from spidrkit.checkpoints import load

    corpus = bench / "lm_train"
    layer, codebook = layers
    wanted = unit_sources(args)
    encoder = load(args.checkpoint).model.eval() if {"codebook", "kmeans"} & set(wanted) else None
    mfcc = SignalEncoder("mfcc")
    fit = dict(seed=0)
    train = CorpusSplit(corpus, "train", args.kmeans_files)
    files = {}
    km_mfcc = out / "units" / f"mfcc_k{args.k}.npy"
    km_spidr = out / "units" / f"spidr_L{layer}_k{args.k}.npy"
    if "mfcc" in wanted and not km_mfcc.is_file():
        fit_corpus_kmeans(km_mfcc, train, mfcc, 0, args.k, model="mfcc", **fit)
    if "kmeans" in wanted and not km_spidr.is_file():
        fit_corpus_kmeans(km_spidr, train, encoder, layer, args.k, model=args.checkpoint, **fit)
    specs = {"phones": lambda: (parse_units("phones"), None),
             "mfcc": lambda: (parse_units(f"kmeans:{km_mfcc}", encoder="mfcc"), mfcc),
             "codebook": lambda: (parse_units(f"codebook:{codebook}"), encoder),
             "kmeans": lambda: (parse_units(f"kmeans:{km_spidr}", layer), encoder)}
    specs = {name: spec() for name, spec in specs.items() if name in wanted}  # only these centroids exist
    for name, (spec, enc) in specs.items():
        for split in ("train", "dev"):
            path = out / "units" / f"{name}_{split}.txt"
            if not path.is_file():
                write_corpus_units(path, CorpusSplit(corpus, split), spec, enc, model=args.checkpoint if enc else "")
            files[f"{name}_{split}"] = str(path)
    base = args.shuffled_of
    for split in ("train", "dev"):
        path = out / "units" / f"shuffled_{split}.txt"
        if not path.is_file():
            spec, enc = specs[base]
            write_corpus_units(path, CorpusSplit(corpus, split), spec, enc, shuffle_seed=0)
        files[f"shuffled_{split}"] = str(path)
    return {"layer": layer, "codebook_layer": codebook, "files": files, "sources": list(args.sources),
            "units": {n: s.describe() for n, (s, _) in specs.items()},
            "kmeans": {"mfcc": str(km_mfcc), "spidr": str(km_spidr)}}


def lm_runs(args) -> list[tuple[str, int]]:
    sources = [s for s in SOURCES if s in args.sources] + ["shuffled"]  # the control over every seed too
    return [(s, seed) for s in sources for seed in range(args.seeds)]


def train_lms(args, out: Path, units: dict) -> dict:
    runs = {}
    for source, seed in lm_runs(args):
        run = out / "lm" / f"{source}_s{seed}"
        files = units["files"]
        dedup = "false" if (args.shuffled_of if source == "shuffled" else source) == "phones" else "true"
        sets = [*LM_DEFAULTS, f"train.seed={seed}", f"lm.dedup={dedup}", *args.lm_set]
        t0 = time.perf_counter()
        summary = train([files[f"{source}_train"]], run, "tiny", sets, valid=[files[f"{source}_dev"]],
                        progress=False)
        speeds = [r["tokens_per_s"] for r in read_metrics(run, "train") if "tokens_per_s" in r]
        runs[f"{source}_s{seed}"] = {"run": str(run), "step": summary["step"], "wall_s": time.perf_counter() - t0,
                                     "tokens_per_s": statistics.median(speeds) if speeds else None}
        print(f"  LM {source} seed {seed}: {summary['step']} steps, "
              f"{runs[f'{source}_s{seed}']['tokens_per_s'] or 0:.0f} tokens/s")
    return {"runs": runs, "threads": args.threads}


def rows_of(args, units: dict, lms: dict) -> list[CompareRow]:
    rows = []
    for source, seed in lm_runs(args):
        unit_source = args.shuffled_of if source == "shuffled" else source
        text = units["units"][unit_source].split(" (")[0]
        encoder = {"phones": None, "mfcc": "mfcc"}.get(unit_source, args.checkpoint)
        rows.append(CompareRow(LABELS[source], text, lms["runs"][f"{source}_s{seed}"]["run"], encoder,
                               units["layer"] if unit_source == "kmeans" else None, seed))
    return rows


def score_all(args, out: Path, bench: Path, rows: list[CompareRow], lms: dict) -> dict:
    scored = score_rows(bench, rows, out / "compare", n_bootstrap=args.bootstrap)
    speeds = [r["tokens_per_s"] for r in lms["runs"].values() if r["tokens_per_s"]]
    report = write_comparison(out / "compare", scored, sweep=args.sweep, title="Unit LMs on the synthetic sLM sets",
                              extra={"lm_tokens_per_s_median": statistics.median(speeds) if speeds else None})
    return {"table": report["table"], "scatter": report["scatter"]}


def unit_quality_points(args, bench: Path, units: dict, scores: dict) -> dict:
    """PNMI and one-hot ABX of each encoder source's dev units (the LM corpus), beside its mean sLM scores."""
    from spidrkit.data.corpora.alignments import read_frame_labels
    from spidrkit.encoders.mfcc import FRAME_RATE
    from spidrkit.evaluation.metrics.discrete import frame_units
    from spidrkit.evaluation.metrics.units import unit_row
    from spidrkit.evaluation.slm.compare import plot_scatter

    corpus = bench / "lm_train"
    labels = read_frame_labels(corpus / "dev_frames.txt")
    points = []
    for source in (s for s in args.sources if s != "phones"):
        row, _ = unit_row(frame_units(units["files"][f"{source}_dev"]), labels, corpus / "dev.item",
                          frame_rate=FRAME_RATE)
        label = LABELS[source]
        points.append({"label": label, **{k: row[k] for k in ("abx_within", "abx_across", "pnmi", "phone_purity")},
                       **{m: c["score"] for m, c in scores["table"][label].items()}})
    plot = None
    if points:
        plot = str(plot_scatter(points, Path(args.out) / "compare" / "units_vs_slm.png",
                                "Units of the LM corpus (dev) vs sLM scores").path)
    return {"points": points, "plot": plot}


def time_scoring(args, bench: Path, units: dict, lms: dict) -> dict:
    from spidrkit.checkpoints import load
    from spidrkit.evaluation.slm.bench import read_benchmark
    from spidrkit.evaluation.slm.units import extract_units
    from spidrkit.lm import load_lm
    from spidrkit.lm.scoring import score

    items = [it for s in read_benchmark(bench) for it in s.items][: args.score_utts]
    encoder = load(args.checkpoint).model.eval()
    spec = parse_units(f"kmeans:{units['kmeans']['spidr']}", units["layer"])
    lm, vocab, _ = load_lm(lms["runs"]["kmeans_s0"]["run"], "last")
    t0 = time.perf_counter()
    seqs = extract_units(encoder, spec, [it.path for it in items], [str(it.path) for it in items])
    t1 = time.perf_counter()
    score(lm, vocab, seqs)
    t2 = time.perf_counter()
    n = len(items)
    return {"utterances": n, "units_s": t1 - t0, "lm_s": t2 - t1, "total_s": t2 - t0,
            "per_1000_s": (t2 - t0) * 1000 / max(n, 1), "threads": args.threads}


def check_targets(table: dict, args) -> dict:
    def cell(label, metric):
        return table.get(LABELS[label], {}).get(metric, {})

    checks = {}
    top_w, top_b = cell("phones", "swuggy_all").get("score"), cell("phones", "sblimp").get("score")
    checks["topline_swuggy>=90"] = {"value": top_w, "ok": top_w is not None and top_w >= 90}
    checks["topline_sblimp>=75"] = {"value": top_b, "ok": top_b is not None and top_b >= 75}
    sh = cell("shuffled", "swuggy_all").get("score")
    checks["shuffled_swuggy_50+-3"] = {"value": sh, "ok": sh is not None and abs(sh - 50) <= 3}
    mf = cell("mfcc", "swuggy_all")
    for name in [n for n in ("kmeans", "codebook") if n in args.sources and "mfcc" in args.sources]:
        sp = cell(name, "swuggy_all")
        mine, theirs = sp.get("scores", [sp.get("score")]), mf.get("scores", [mf.get("score")])
        ok = None not in mine + theirs and sp["score"] > mf["score"] and all(a > b for a, b in zip(mine, theirs))
        checks[f"spidr_{name}>mfcc_swuggy"] = {"value": [sp.get("score"), mf.get("score")], "per_seed": [mine, theirs],
                                               "ok": ok}
    return checks


def topline_ceiling(table: dict) -> dict | None:
    """Why the phone topline's sWUGGY "all" stays below its in-vocab score: "all" averages pair ids, so it is
    the in-vocab score and the OOV pairs' score (phonotactics alone: their words are absent from the LM's
    corpus) weighted by their shares. Returns the OOV share and score and the "all" a perfect in-vocab score
    would give (None without the topline's cells)."""
    row = table.get(LABELS["phones"], {})
    every, known = row.get("swuggy_all"), row.get("swuggy_in_vocab")
    if not every or not known or every["pairs"] <= known["pairs"]:
        return None
    n, n_in = every["pairs"], known["pairs"]
    oov = (every["score"] * n - known["score"] * n_in) / (n - n_in)
    return {"oov_share": (n - n_in) / n, "oov_score": oov, "in_vocab_score": known["score"],
            "all_if_in_vocab_perfect": (100.0 * n_in + oov * (n - n_in)) / n}


def plan(args, layers: tuple[int, int]) -> None:
    n_lms = (len(args.sources) + 1) * args.seeds
    layers = f"k-means L{layers[0]}, codebook L{layers[1]}"
    timing = f"{args.score_utts} utts" if "kmeans" in args.sources else "skipped"
    print(f"stages: bench (synth-slm, {args.pairs} pairs/task, {args.lm_hours:.2f} h LM corpus), units "
          f"({', '.join(unit_sources(args))}; MFCC k{args.k}, {layers}, shuffled {args.shuffled_of}), lm ({n_lms} "
          f"tiny LMs), score ({n_lms} rows), timing ({timing})")
    wavs = args.pairs * 1.2 * 2 * 3 * 4  # ids (test + dev) x 2 items x 3 tasks x 4 voices
    print(f"estimate (2 CPU cores): bench ~{wavs * 0.1 / 60 / 2:.0f} min (flite, ~0.1 s/wav), units "
          f"~{args.lm_hours * 60 * 0.15:.0f} min, LMs: {n_lms} x the --lm-set budget (tiny preset: 3000 steps, "
          f"~10-20 min each), scoring ~{n_lms * wavs * 0.03 / 60:.0f} min")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--bench", type=Path, default=None, help="the synth-slm folder (default OUT/bench)")
    p.add_argument("--pairs", type=int, default=250, help="pair ids per task in test (x 4 voices = pairs)")
    p.add_argument("--lm-hours", type=float, default=1.0)
    p.add_argument("--checkpoint", default="random:tiny", help="the pretrained SpidR (random:tiny: smoke test)")
    p.add_argument("--layer", type=int, default=None, help="k-means layer (default: the sweep's best layer)")
    p.add_argument("--codebook-layer", type=int, default=None,
                   help="codebook layer (default: the sweep's best codebook layer, else --layer)")
    p.add_argument("--sweep", default=None, help="a sweep's report.json: best layer, ABX/PNMI for the scatter")
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--kmeans-files", type=int, default=None, help="fit k-means on N train wavs (evenly spaced)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--shuffled-of", default="phones", choices=SOURCES)
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES,
                   help="the unit sources to run (default all; the shuffled control always runs)")
    p.add_argument("--lm-set", action="append", default=[], metavar="K=V", help="overrides of the tiny LM")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="flite rendering processes")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--score-utts", type=int, default=1000)
    p.add_argument("--plan", action="store_true")
    args = p.parse_args()
    args.sources = [s for s in SOURCES if s in args.sources]  # one order, whatever the command line's
    torch.set_num_threads(args.threads)
    out: Path = args.out
    bench = args.bench or out / "bench"
    if args.plan:
        plan(args, choose_layers(args))
        return 0
    layers = choose_layers(args)
    built = stage(out, "bench", lambda: {"bench": str(synthesize_slm(
        bench, pairs=args.pairs, lm_hours=args.lm_hours, workers=args.workers, progress=False))})
    if Path(built["bench"]).resolve() != bench.resolve():  # a rerun must not score another benchmark silently
        sys.exit(f"{out} was measured on the benchmark {built['bench']}, not {bench}: use another OUT")
    units = stage(out, "units", make_units, args, out, Path(built["bench"]), layers)
    if units.get("sources", list(SOURCES)) != list(args.sources):  # the stages that follow reuse these units
        sys.exit(f"{out} was measured with --sources {' '.join(units.get('sources', SOURCES))}: use another OUT")
    lms = stage(out, "lm", train_lms, args, out, units)
    rows = rows_of(args, units, lms)
    scores = stage(out, "score", score_all, args, out, Path(built["bench"]), rows, lms)
    quality = stage(out, "quality", unit_quality_points, args, Path(built["bench"]), units, scores)
    timing = stage(out, "timing", time_scoring, args, Path(built["bench"]), units, lms) if "kmeans" in args.sources \
        else None
    targets = check_targets(scores["table"], args)
    speeds = [r["tokens_per_s"] for r in lms["runs"].values() if r["tokens_per_s"]]
    ceiling = topline_ceiling(scores["table"])
    summary = {"targets": targets, "topline_ceiling": ceiling, "unit_quality": quality["points"],
               "lm_tokens_per_s_median": statistics.median(speeds) if speeds else None,
               "scoring": timing, "layers": layers, "checkpoint": args.checkpoint, "args": {
                   k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    write_json_atomic(out / "targets.json", summary)
    print((out / "compare" / "report.md").read_text())
    if quality["points"]:
        print("units of the LM corpus (dev) | PNMI | ABX within | ABX across | sWUGGY all | sBLIMP")
        for p in quality["points"]:
            cells = [f"{p[k]:.3f}" if k == "pnmi" else f"{p[k]:.2f}" if p.get(k) is not None else "–"
                     for k in ("pnmi", "abx_within", "abx_across", "swuggy_all", "sblimp")]
            print(f"{p['label']:28s} | " + " | ".join(cells))
        print(f"-> {quality['plot']}")
    for name, c in targets.items():
        print(f"{'PASS' if c['ok'] else 'MISS'} {name}: {c['value']}")
    if ceiling:
        print(f"topline sWUGGY: {100 * ceiling['oov_share']:.0f} % of the pairs are OOV, scored "
              f"{ceiling['oov_score']:.1f} % (in-vocab {ceiling['in_vocab_score']:.1f} %); a perfect in-vocab score "
              f"would give {ceiling['all_if_in_vocab_perfect']:.1f} % on all")
    print(f"LM tokens/s (median over runs, {lms.get('threads', args.threads)} thread(s) each): "
          f"{summary['lm_tokens_per_s_median'] or 0:.0f}")
    if timing:
        print(f"scoring {timing['utterances']} utterances (encoder included): {timing['total_s']:.1f} s "
              f"({timing['per_1000_s']:.1f} s per 1000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
