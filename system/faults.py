"""Faults a real machine meets, run for real: kill -9, SIGTERM and a full disk during pretraining,
extraction and unit LM training, and a full disk at each output of a layer sweep. Each scenario checks that
nothing is lost: a rerun of the same command ends where an uninterrupted run ends (the same model tensors,
byte-equal feature files, the same LM weights, byte-equal sweep tables and results), and nothing truncated is
left under a final name. Prints a table: case, outcome, data lost (must be "none"); exits 1 otherwise.

    python system/faults.py [--keep DIR]      # or: make system (what CI can run; not part of make test)

A few minutes on 2 cores: a tiny model (2 layers of width 64), 16 training steps on 24 generated one-second
wavs, extraction of 160 wavs, a unit LM (1 layer of width 64, 48 steps) on 400 generated utterances, and a
sweep of the tiny model's 2 layers on a small flite corpus (``spidrkit data synth``; the sweep rows are left
out, with a note, when flite is missing). The full disk is a tmpfs of 16 MB (``mount -t tmpfs``) filled to leave a
scenario less room than its outputs need, when run as root; else a file-size limit (RLIMIT_FSIZE: the write
that passes it fails with EFBIG). Whatever happens, the tmpfs is unmounted and the child processes are
ended. A temporary file left in an output folder after the rerun is reported in the outcome, and fails the
run as lost data does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
EXIT_IO = 74
TMPFS_MB = 16  # room for a whole run; filled up to leave each scenario a little
MODEL = ["model.conv_dim=32", "model.dim=64", "model.num_layers=2", "model.num_heads=2", "model.ffn_dim=128",
         "model.num_codebooks=2", "model.codebook_size=16", "data.num_workers=0", "data.max_batch_samples=32000",
         "optim.warmup_steps=20", "teacher.timescale=100", "model.dropout=0.1", "model.layerdrop=0.2",
         "train.log_every=1", "train.checkpoint_every=4", "train.keep_checkpoints=2", "train.max_steps=16"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CHILDREN: list[subprocess.Popen] = []


# ------------------------------------------------------------------------------------------- inputs
def wavs(folder: Path, n: int, seconds: float, seed: int) -> Path:
    """``n`` wavs of harmonic 'syllables' (as tests/test_training.py makes them) and their manifest."""
    from spidrkit.data.corpora.manifest import ManifestEntry, write_manifest

    rng = np.random.default_rng(seed)
    inventory = [(rng.uniform(100, 250), rng.uniform(0, 1, 6)) for _ in range(6)]
    folder.mkdir(parents=True, exist_ok=True)
    entries, samples = [], int(seconds * SR)
    for i in range(n):
        x, pos = np.zeros(samples), 0
        while pos < samples:
            f0, weights = inventory[rng.integers(len(inventory))]
            dur = int(rng.integers(1280, 3200))
            t = np.arange(dur) / SR
            seg = sum(w * np.sin(2 * np.pi * f0 * (h + 1) * t) for h, w in enumerate(weights)) * np.hanning(dur)
            x[pos: pos + dur] = seg[: samples - pos]
            pos += dur
        x += 0.01 * rng.standard_normal(samples)
        path = folder / f"s{i:03d}.wav"
        sf.write(path, (0.5 * x / np.abs(x).max()).astype(np.float32), SR)
        entries.append(ManifestEntry(f"s{i:03d}", str(path), samples))
    return write_manifest(entries, folder / "manifest.csv")


# ------------------------------------------------------------------------------------------- processes
def start(args: list[str], limit_bytes: int | None = None) -> subprocess.Popen:
    def preexec() -> None:
        os.setsid()
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    proc = subprocess.Popen([sys.executable, "-m", "spidrkit.cli", *args], env=ENV, preexec_fn=preexec,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    CHILDREN.append(proc)
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def run(args: list[str], limit_bytes: int | None = None) -> tuple[int, str]:
    return finish(start(args, limit_bytes))


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll ``condition`` until it holds (True) or ``proc`` ends or the time is out (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.002)
    return False


def end_children() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ------------------------------------------------------------------------------------------- checks
def pretrain_args(manifest: Path, run_dir: Path) -> list[str]:
    sets = [x for s in [*MODEL, f"data.train_manifest={manifest}"] for x in ("--set", s)]
    return ["pretrain", "tiny", *sets, "--run-dir", str(run_dir), "--no-progress", "--quiet"]


def extract_args(manifest: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["extract", str(manifest), "--model", str(checkpoint), "--layer", "2", "-o", str(out), "--quiet",
            "--device", "cpu"]


def checkpoints(run_dir: Path) -> list[Path]:
    """Every checkpoint file of a run, oldest first (readable or not)."""
    return sorted(run_dir.rglob("*.pt"))


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    from spidrkit.checkpoints.run import list_checkpoints, read_run_checkpoint

    return read_run_checkpoint(list_checkpoints(run_dir)[-1][1])["model"]


def same_model(run_dir: Path, reference: Path) -> str:
    """'none' when the final checkpoints hold equal model tensors, else what differs."""
    try:
        a, b = final_model(run_dir), final_model(reference)
    except Exception as e:
        return f"final checkpoint unreadable: {type(e).__name__}: {e}"
    if a.keys() != b.keys():
        return "other tensors in the final checkpoint"
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    return "none" if diff == 0 else f"weights differ (max |diff| {diff:.3g})"


def unreadable_checkpoints(run_dir: Path) -> list[str]:
    from spidrkit.checkpoints.run import read_run_checkpoint

    bad = []
    for p in checkpoints(run_dir):
        try:
            read_run_checkpoint(p)
        except Exception:
            bad.append(p.name)
    return bad


def files(folder: Path) -> dict[str, bytes]:
    """Every output file but the sidecar (it records times), by relative path."""
    from spidrkit.io import SIDECAR_NAME

    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != SIDECAR_NAME}


def same_files(out: Path, reference: Path) -> str:
    """'none' when the outputs (temporary files aside: see :func:`leftovers`) equal the reference's."""
    got, ref = files(out), files(reference)
    got = {k: v for k, v in got.items() if Path(k).name not in leftovers(out)}
    if got.keys() != ref.keys():
        missing, extra = sorted(ref.keys() - got.keys()), sorted(got.keys() - ref.keys())
        return f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, extra {extra[:3]}"
    differ = [k for k in got if got[k] != ref[k]]
    return "none" if not differ else f"{len(differ)} files differ, e.g. {differ[0]}"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith(".")))


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    return lines[-1] if lines else ""


# ------------------------------------------------------------------------------------------- a full disk
@contextlib.contextmanager
def small_disk(where: Path, free_bytes: int, file_limit: int
               ) -> Iterator[tuple[Path, int | None, Callable[[], None]]]:
    """A folder with little room: ``(folder, file-size limit for the child or None, make_room)``.

    As root: a tmpfs of TMPFS_MB filled up to ``free_bytes`` of room with a filler file (``make_room`` deletes it),
    always unmounted on exit. Otherwise: a plain folder and RLIMIT_FSIZE = ``file_limit`` (a limit per file)
    for the child (``make_room`` does nothing: a rerun without the limit has the room)."""
    folder = where / "disk"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield folder, file_limit, lambda: None
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(folder)], check=True)
    try:
        filler = folder / "filler"
        room = shutil.disk_usage(folder).free - free_bytes
        with open(filler, "wb") as f:
            f.write(b"\0" * max(room, 0))
        yield folder, None, lambda: filler.unlink(missing_ok=True)
    finally:
        end_children()
        for _ in range(10):
            if subprocess.run(["umount", str(folder)]).returncode == 0:
                break
            time.sleep(0.5)


# ------------------------------------------------------------------------------------------- scenarios
Row = tuple[str, str, str]


def logged(run_dir: Path) -> int:
    try:
        return len((run_dir / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def pretrain_kill9(work: Path, manifest: Path, reference: Path) -> Row:
    run_dir = work / "kill9"
    proc = start(pretrain_args(manifest, run_dir))
    hit = wait_for(lambda: len(checkpoints(run_dir)) >= 1 and logged(run_dir) >= 6, proc)
    if hit:
        os.killpg(proc.pid, signal.SIGKILL)
    code, _ = finish(proc)
    when = "killed -9 after step ~6" if hit else f"finished before the kill (exit {code})"
    code, err = run(pretrain_args(manifest, run_dir))
    lost = same_model(run_dir, reference) if code == 0 else f"rerun exit {code}: {one_line(err)}"
    return "pretrain kill -9, rerun", f"{when}; rerun exit {code}", lost


def pretrain_sigterm(work: Path, manifest: Path, reference: Path) -> Row:
    run_dir = work / "sigterm"
    proc = start(pretrain_args(manifest, run_dir))
    hit = wait_for(lambda: len(checkpoints(run_dir)) >= 1, proc)
    if hit:
        os.killpg(proc.pid, signal.SIGTERM)
    code, err = finish(proc)
    saved = checkpoints(run_dir)
    outcome = f"exit {code}, {len(saved)} checkpoint(s), newest {saved[-1].name if saved else None}"
    problems = []
    if code not in (0, 143):
        problems.append(f"exit {code}: {one_line(err)}")
    if not saved:
        problems.append("no checkpoint saved")
    problems += [f"unreadable {b}" for b in unreadable_checkpoints(run_dir)]
    code, err = run(pretrain_args(manifest, run_dir))
    outcome += f"; rerun exit {code}"
    lost = same_model(run_dir, reference) if code == 0 else f"rerun exit {code}: {one_line(err)}"
    if lost != "none":
        problems.append(lost)
    return "pretrain SIGTERM, rerun", outcome, "; ".join(problems) or "none"


def extract_kill9(work: Path, manifest: Path, checkpoint: Path, reference: Path) -> Row:
    out = work / "extract_kill9"
    proc = start(extract_args(manifest, checkpoint, out))
    hit = wait_for(lambda: out.is_dir() and any(out.glob("*.pt")), proc)
    if hit:
        os.killpg(proc.pid, signal.SIGKILL)
    code, _ = finish(proc)
    partial = len(list(out.glob("*.pt"))) if out.is_dir() else 0
    when = f"killed -9 with {partial} files written" if hit else f"finished before the kill (exit {code})"
    code, err = run(extract_args(manifest, checkpoint, out))
    lost = same_files(out, reference) if code == 0 else f"rerun exit {code}: {one_line(err)}"
    left = leftovers(out)
    return "extract kill -9, rerun", f"{when}; rerun exit {code}" + (f"; LEFT {left}" if left else ""), lost


def disk_full(name: str, work: Path, args_for: Callable[[Path], list[str]], free_bytes: int, file_limit: int,
              compare: Callable[[Path], str], final_names: Callable[[Path], list[str]]) -> Row:
    """Run a command on a disk with ``free_bytes`` of room: exit 74 with one line naming the path, nothing
    truncated under a final name; then with room, the rerun completes and equals the reference."""
    with small_disk(work / name, free_bytes, file_limit) as (disk, limit, make_room):
        out = disk / "out"
        code, err = run(args_for(out), limit)
        line = one_line(err)
        problems = []
        # the error lines; the rest are warnings printed before (since the CLI writes each warning as one
        # `spidrkit CMD: warning: ...` line, those start with "spidrkit " too)
        errors = [x for x in err.splitlines() if x.startswith("spidrkit ") and ": warning: " not in x]
        if code != EXIT_IO:
            problems.append(f"exit {code}, not {EXIT_IO}: {line}")
        elif errors != [line] or str(disk) not in line:
            problems.append(f"not one line naming the path: {err.strip()[:200]!r}")
        problems += [f"truncated {x}" for x in final_names(out)]
        problems += [f"left {x}" for x in leftovers(out)] if out.exists() else []
        others = len(err.strip().splitlines()) - len(errors)
        named = next((w.strip(":,;()'\"") for w in line.split() if str(disk) in w), "")
        outcome = f"exit {code}" + (f" naming {os.path.relpath(named, out)}" if named else "") + (
            f" (after {others} lines of warnings)" if others else "")
        make_room()
        code, err = run(args_for(out))
        outcome += f"; with room, rerun exit {code}"
        left = leftovers(out) if out.exists() else []
        outcome += f"; LEFT {left}" if left else ""
        lost = compare(out) if code == 0 else f"rerun exit {code}: {one_line(err)}"
        if lost != "none":
            problems.append(lost)
    return name.replace("_", " "), outcome, "; ".join(problems) or "none"


def truncated_features(reference: Path) -> Callable[[Path], list[str]]:
    ref = files(reference)

    def check(out: Path) -> list[str]:
        got = files(out) if out.is_dir() else {}
        return [k for k, v in got.items() if k.endswith(".pt") and k in ref and v != ref[k]]

    return check


# ------------------------------------------------------------------------------------------- the unit LM
LM_SETS = ["model.num_layers=1", "model.dim=64", "model.num_heads=2", "model.ffn_dim=128", "model.context=48",
           "optim.warmup_steps=10", "train.batch_size=8", "lm.valid_fraction=0.1", "train.max_steps=48",
           "train.checkpoint_every=8", "train.valid_every=8", "train.log_every=4", "train.keep_checkpoints=2"]


def lm_units(folder: Path, n: int = 400, k: int = 16, seed: int = 0) -> Path:
    """``n`` utterances of 20-60 units of ``k``, as a units file with its sidecar (k)."""
    from spidrkit.extraction.units import write_units

    rng = np.random.default_rng(seed)
    units = {f"u{i:04d}": rng.integers(0, k, int(rng.integers(20, 60))).tolist() for i in range(n)}
    return write_units(folder / "units.txt", units, k=k)


def lm_args(units: Path, run_dir: Path) -> list[str]:
    return ["lm", "train", str(units), "--run-dir", str(run_dir), "--config", "tiny",
            *[x for s in LM_SETS for x in ("--set", s)], "--no-progress"]


def lm_checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("step_*.pt"))


def unreadable_lm_checkpoints(run_dir: Path) -> list[str]:
    bad = []
    for p in lm_checkpoints(run_dir):
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            bad.append(p.name)
    return bad


def same_lm(run_dir: Path, reference: Path) -> str:
    """'none' when best/ and last/ hold byte-equal weights files, else what differs."""
    differ = []
    for which in ("best", "last"):
        a, b = run_dir / which / "model.safetensors", reference / which / "model.safetensors"
        if not a.is_file():
            differ.append(f"no {which}/model.safetensors")
        elif a.read_bytes() != b.read_bytes():
            differ.append(f"{which}/model.safetensors differs")
    return "; ".join(differ) or "none"


def lm_kill9(work: Path, units: Path, reference: Path) -> Row:
    """kill -9 while a checkpoint is being written (its temporary file is on disk), else just after one."""
    run_dir = work / "lm_kill9"
    proc = start(lm_args(units, run_dir))
    ckpts = run_dir / "checkpoints"
    mid = wait_for(lambda: ckpts.is_dir() and any(".tmp" in p.name for p in ckpts.iterdir()), proc)
    if not mid and proc.poll() is None:  # the write was too quick to see: the kill lands after a checkpoint
        wait_for(lambda: len(lm_checkpoints(run_dir)) >= 1, proc)
    hit = proc.poll() is None
    if hit:
        os.killpg(proc.pid, signal.SIGKILL)
    code, _ = finish(proc)
    when = ("killed -9 during a checkpoint write" if mid and hit else "killed -9 after a checkpoint" if hit
            else f"finished before the kill (exit {code})")
    bad = unreadable_lm_checkpoints(run_dir)
    code, err = run(lm_args(units, run_dir))
    lost = same_lm(run_dir, reference) if code == 0 else f"rerun exit {code}: {one_line(err)}"
    left = leftovers(run_dir / "checkpoints")
    problems = [f"unreadable {b}" for b in bad] + ([] if lost == "none" else [lost])
    return ("lm train kill -9, rerun", f"{when}; rerun exit {code}" + (f"; LEFT {left}" if left else ""),
            "; ".join(problems) or "none")


def lm_sigterm(work: Path, units: Path, reference: Path) -> Row:
    run_dir = work / "lm_sigterm"
    proc = start(lm_args(units, run_dir))
    hit = wait_for(lambda: len(lm_checkpoints(run_dir)) >= 1, proc)
    if hit:
        os.killpg(proc.pid, signal.SIGTERM)
    code, err = finish(proc)
    saved = lm_checkpoints(run_dir)
    outcome = f"exit {code}, {len(saved)} checkpoint(s), newest {saved[-1].name if saved else None}"
    problems = []
    if code not in (0, 143):
        problems.append(f"exit {code}: {one_line(err)}")
    problems += [f"unreadable {b}" for b in unreadable_lm_checkpoints(run_dir)]
    code, err = run(lm_args(units, run_dir))
    outcome += f"; rerun exit {code}"
    lost = same_lm(run_dir, reference) if code == 0 else f"rerun exit {code}: {one_line(err)}"
    if lost != "none":
        problems.append(lost)
    return "lm train SIGTERM, rerun", outcome, "; ".join(problems) or "none"


def lm_rows(work: Path) -> list[Row]:
    units = lm_units(work / "lm_units")
    reference = work / "reference_lm"
    code, err = run(lm_args(units, reference))
    if code != 0:
        return [("lm train reference", f"exit {code}: {one_line(err)}", "reference failed")]
    rows = [lm_kill9(work, units, reference), lm_sigterm(work, units, reference)]
    ckpt_bytes = lm_checkpoints(reference)[-1].stat().st_size
    rows.append(disk_full(
        "lm_train_checkpoint_disk_full", work, lambda out: lm_args(units, out), ckpt_bytes // 2, ckpt_bytes // 2,
        lambda out: same_lm(out, reference),
        lambda out: [f"{b} (unreadable)" for b in unreadable_lm_checkpoints(out)] if out.is_dir() else []))
    return rows


# ------------------------------------------------------------------------------------------- the sweep
def sweep_corpus(work: Path) -> Path | None:
    """A small flite corpus (train/dev from awb and slt, kal16 held out), or None without flite."""
    corpus = work / "corpus"
    code, _ = run(["data", "synth", str(corpus), "--voices", "awb", "slt", "kal16", "--heldout-voice", "kal16",
                     "--hours", "0.02", "--dev-fraction", "0.35", "--workers", "2", "--quiet"])
    return corpus if code == 0 else None


def sweep_args(corpus: Path, checkpoint: Path, out: Path) -> list[str]:
    return ["evaluate", "sweep", "--model", str(checkpoint), "--corpus", str(corpus), "-o", str(out), "--layers",
            "1,2", "--baselines", "mfcc", "--tsne-points", "0", "--max-files", "6", "--quiet", "--device", "cpu"]


def sweep_numbers(folder: Path) -> dict[str, object]:
    """What a sweep must reproduce byte for byte: every output but the sidecars (they record times), and
    report.json without its creation time and timings."""
    import json

    got: dict[str, object] = {k: v for k, v in files(folder).items()
                              if k != "report.json" and not k.endswith((".md.json", ".html.json"))}
    if (folder / "report.json").is_file():
        report = json.loads((folder / "report.json").read_text())
        report.pop("created", None)
        (report.get("results") or {}).pop("timings_s", None)
        got["report.json"] = json.dumps(report, sort_keys=True)
    return got


def same_sweep(out: Path, reference: Path) -> str:
    got, ref = sweep_numbers(out), sweep_numbers(reference)
    if got.keys() != ref.keys():
        return f"missing {sorted(ref.keys() - got.keys())[:3]}, extra {sorted(got.keys() - ref.keys())[:3]}"
    differ = [k for k in got if got[k] != ref[k]]
    return "none" if not differ else f"{len(differ)} outputs differ, e.g. {differ[0]}"


def blocks(n: int, block: int = 4096) -> int:
    return -(-n // block) * block


def sweep_disk_full(work: Path, corpus: Path, checkpoint: Path, reference: Path, target: str, room: int) -> Row:
    """The sweep on a tmpfs with ``room`` bytes: the write of ``target`` (the first output past that room) fails
    with exit 74 and one line naming the path, nothing is truncated under a final name; with room, the rerun's
    numbers equal the reference's."""
    name = "sweep_disk_full_" + "".join(c if c.isalnum() else "_" for c in target.split(" (")[0]).strip("_")
    ref = files(reference)

    def truncated(out: Path) -> list[str]:
        got = files(out) if out.is_dir() else {}
        return [k for k, v in got.items() if k in ref and not k.endswith((".md", ".html", ".json"))
                and v != ref[k] and len(v) < len(ref[k])]

    row = disk_full(name, work, lambda out: sweep_args(corpus, checkpoint, out), room, room,
                    lambda out: same_sweep(out, reference), truncated)
    return f"sweep full disk at {target}", row[1], row[2]


def sweep_targets(reference: Path) -> list[tuple[str, int]]:
    """One full-disk point per kind of output, in the order the sweep writes them (the evaluation set, the
    first report.json, its tables, a figure, report.html): the room is what the outputs before it take."""
    written = sorted((p for p in reference.rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    rel = [str(p.relative_to(reference)) for p in written]
    sizes = [blocks(p.stat().st_size) for p in written]
    eval_room = sum(sz for r, sz in zip(rel, sizes) if r.startswith("eval/"))
    first_figure = next((r for r in rel if r.endswith(".png")), None)
    points = [("eval/ (the evaluation set)", 0), ("report.json (the numbers)", eval_room)]
    if first_figure is not None:  # the numbers of the first pass take their room first
        first_pass = sum(sz for r, sz in zip(rel, sizes) if r in ("report.json", "report.md", "report.md.json")
                         or r.startswith("tables/"))
        points.append((f"{first_figure} (a figure)", eval_room + first_pass))
        # before report.html the numbers are written again, each beside its old copy until the rename
        points.append(("report.html", sum(sizes) - blocks((reference / "report.html").stat().st_size) + first_pass))
    return points


def sweep_rows(work: Path, checkpoint: Path) -> list[Row]:
    corpus = sweep_corpus(work)
    if corpus is None:
        return [("sweep", "flite missing: no corpus, not run", "not run")]
    reference = work / "reference_sweep"
    code, err = run(sweep_args(corpus, checkpoint, reference))
    if code != 0:
        return [("sweep reference", f"exit {code}: {one_line(err)}", "reference failed")]
    return [sweep_disk_full(work, corpus, checkpoint, reference, target, room)
            for target, room in sweep_targets(reference)]


# ------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="spidrkit-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        train_manifest = wavs(work / "train", 24, 1.0, seed=0)
        extract_manifest = wavs(work / "extract", 160, 2.0, seed=1)
        reference = work / "reference"
        code, err = run(pretrain_args(train_manifest, reference))
        if code != 0:
            print(f"the reference pretraining failed (exit {code}): {err.strip()[-2000:]}", file=sys.stderr)
            return 1
        ckpt = checkpoints(reference)[-1]
        ref_features = work / "reference_features"
        code, err = run(extract_args(extract_manifest, ckpt, ref_features))
        if code != 0:
            print(f"the reference extraction failed (exit {code}): {err.strip()[-2000:]}", file=sys.stderr)
            return 1

        rows.append(pretrain_kill9(work, train_manifest, reference))
        rows.append(pretrain_sigterm(work, train_manifest, reference))
        rows.append(extract_kill9(work, extract_manifest, ckpt, ref_features))
        feature_bytes = sum(len(v) for v in files(ref_features).values())
        rows.append(disk_full(
            "extract_disk_full", work, lambda out: extract_args(extract_manifest, ckpt, out), feature_bytes // 3,
            max(len(v) for v in files(ref_features).values()) // 2,
            lambda out: same_files(out, ref_features), truncated_features(ref_features)))
        ckpt_bytes = ckpt.stat().st_size
        rows.append(disk_full(
            "pretrain_checkpoint_disk_full", work, lambda out: pretrain_args(train_manifest, out),
            ckpt_bytes // 2, ckpt_bytes // 2, lambda out: same_model(out, reference),
            lambda out: [f"{b} (unreadable)" for b in unreadable_checkpoints(out)] if out.is_dir() else []))
        rows += lm_rows(work)
        rows += sweep_rows(work, ckpt)
    finally:
        end_children()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    widths = [max(len(r[i]) for r in [("case", "outcome", "data lost"), *rows]) for i in range(3)]
    for i, r in enumerate([("case", "outcome", "data lost"), *rows]):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    disk = f"tmpfs of {TMPFS_MB} MB, filled" if os.geteuid() == 0 else "RLIMIT_FSIZE"
    print(f"\n{len(rows)} scenarios in {time.monotonic() - started:.0f} s; full disk: {disk}")
    return 0 if all(r[2] == "none" and "LEFT" not in r[1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
