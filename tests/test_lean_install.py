"""The lean install (README, "Install"; pyproject.toml's core dependencies and extras; spidrkit/lazy.py).

A core-only install must import ``spidrkit``, load models (``random:tiny``, a checkpoint), extract (Python API and
``spidrkit extract``) and pretrain. Checked here in one subprocess whose import system sees only the standard
library, spidrkit and the installed distributions that :data:`CORE` requires (transitively): a ``sys.meta_path``
finder stands in for the path finder and answers "not found" for every other top-level package (transformers,
sklearn, matplotlib, fastabx, polars, scipy, huggingface_hub, faiss, tensorboard, wandb...), as an environment
without them would. Beside it: pyproject's core list equals :data:`CORE`, and the extras agree with
:data:`spidrkit.lazy.EXTRAS`.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from spidrkit.lazy import EXTRAS, MissingExtra, install_hint, require

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# the core: what `import spidrkit`, loading, `extract` and `pretrain` need (pyproject.toml must list exactly these)
CORE = {"torch", "numpy", "soundfile", "soxr", "tqdm", "safetensors"}
# the packages of the extras the refusing finder must refuse (they are installed in the test environment)
OPTIONAL = ["transformers", "sklearn", "matplotlib", "fastabx", "polars", "scipy", "huggingface_hub", "yaml",
            "threadpoolctl"]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def core_closure(roots: set[str]) -> set[str]:
    """The installed distributions that ``roots`` require, themselves included, as canonical names: markers
    evaluated here, the extras a requirement names followed (``cuda-toolkit[cublas]``), no others."""
    seen: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(r), "") for r in roots]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(canonicalize_name(req.name), e) for e in ["", *req.extras]]
    return {name for name, _ in seen}


def allowed_modules() -> set[str]:
    """The top-level modules a core-only environment has: the standard library, spidrkit and those of the
    distributions of :func:`core_closure` (:data:`CORE`)."""
    dists = core_closure(CORE)
    tops = {top for top, owners in md.packages_distributions().items()
            if any(canonicalize_name(d) in dists for d in owners)}
    return tops | set(sys.stdlib_module_names) | {"spidrkit", "__future__"}


# the subprocess: the refusing finder first, then the core paths; prints one JSON line of what it saw
SCRIPT = r'''
import importlib.machinery, importlib.util, json, os, site, sys
ALLOWED = set(json.loads(sys.argv[1]))
SITE = tuple(os.path.realpath(p) + os.sep for p in [*site.getsitepackages(), site.getusersitepackages()])
REFUSED = []

class CoreOnly:
    """The path finder, blind to the installed packages (site-packages) outside ALLOWED."""
    def find_spec(self, name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        top = name.partition(".")[0]
        where = spec and (spec.origin if spec.has_location else next(iter(spec.submodule_search_locations or []), None))
        if top in ALLOWED or not where or not os.path.realpath(where).startswith(SITE):
            return spec
        REFUSED.append(top)
        return None
    def invalidate_caches(self):
        importlib.machinery.PathFinder.invalidate_caches()

def installed_outside():
    """Top-level modules imported from site-packages that are not in ALLOWED."""
    return sorted({n.partition(".")[0] for n, m in list(sys.modules.items())
                   if n.partition(".")[0] not in ALLOWED and os.path.realpath(getattr(m, "__file__", None) or "/")
                   .startswith(SITE)})

preloaded = installed_outside()
sys.meta_path[:] = [CoreOnly() if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
out = {"preloaded": preloaded, "find_spec_sklearn": importlib.util.find_spec("sklearn") is not None}
try:
    import transformers  # noqa: F401
    out["import_transformers"] = "imported"
except ModuleNotFoundError as e:
    out["import_transformers"] = e.name

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import spidrkit
from spidrkit.cli import main
from spidrkit.lazy import MissingExtra
from spidrkit.data.corpora.manifest import ManifestEntry

out["spidrkit_file"] = spidrkit.__file__
model, info = spidrkit.load("random:tiny")
out["random_tiny_layers"] = len(model.layer_outputs(torch.zeros(1, 16000), layers=[6]))
rng = np.random.default_rng(0)
entries = []
for i in range(4):
    path = f"wavs/u{i}.wav"
    sf.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    entries.append(ManifestEntry(f"u{i}", path, 16000))
spidrkit.write_manifest(entries, "train.csv")
micro = ["model.conv_dim=32", "model.dim=64", "model.num_heads=2", "model.ffn_dim=128", "model.codebook_size=16",
         "data.num_workers=0", "data.max_batch_samples=32000", "train.device=cpu", "train.max_steps=2",
         "train.checkpoint_every=2", "train.valid_every=1000", "data.train_manifest=train.csv"]
summary = spidrkit.pretrain(spidrkit.load_config("tiny", micro), "run", progress=False)
out["pretrain"] = [summary["status"], summary["step"]]
trained, info = spidrkit.load("run", device="cpu")
out["checkpoint"] = [info.source, info.step, len(info.sha256)]
spidrkit.extract(trained, "wavs", "api", provenance=info, device="cpu", progress=False)
spidrkit.extract(trained, "wavs", "api_units", provenance=info, device="cpu", progress=False, units="codebook")
out["cli_extract"] = main(["extract", "wavs", "--model", "run", "-o", "cli", "--device", "cpu"])
api = {p.name: torch.load(p) for p in sorted(Path("api").glob("*.pt"))}
cli = {p.name: torch.load(p) for p in sorted(Path("cli").glob("*.pt"))}
out["features"] = {k: list(v.shape) for k, v in api.items()}
out["cli_equal"] = sorted(cli) == sorted(api) and all(torch.equal(cli[k], api[k]) for k in api)
out["units_lines"] = len(open("api_units/units.txt").read().splitlines())
try:
    spidrkit.load("someone/some-model")
    out["hub_load"] = "loaded"
except MissingExtra as e:
    out["hub_load"] = str(e)
out["cli_hub"] = main(["extract", "wavs", "--model", "someone/some-model", "-o", "hub", "--device", "cpu"])
from spidrkit.lm import LMError  # noqa: F401  (the unit LM's module imports without transformers)
out["refused"] = sorted(set(REFUSED))
out["loaded_outside"] = installed_outside()
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def core_run(tmp_path_factory) -> tuple[dict, str]:
    """What the core paths did in a subprocess that sees only the core (:data:`SCRIPT`), and its stderr."""
    work = tmp_path_factory.mktemp("core")
    (work / "wavs").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(sorted(allowed_modules()))], cwd=work, env=env,
                          capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):]), proc.stderr


def test_the_finder_hides_the_optional_packages(core_run):
    out, _ = core_run
    assert out["preloaded"] == []  # nothing outside the core was imported before the finder took over
    assert out["find_spec_sklearn"] is False
    assert out["import_transformers"] == "transformers"
    assert {"transformers", "sklearn", "huggingface_hub"} <= set(out["refused"])
    assert Path(out["spidrkit_file"]).is_relative_to(SRC)


def test_core_loads_extracts_and_pretrains_without_the_extras(core_run):
    out, _ = core_run
    assert out["random_tiny_layers"] == 1
    assert out["pretrain"] == ["completed", 2]
    assert out["checkpoint"] == ["spidrkit", 2, 16]  # the run's step-2 checkpoint, hashed
    assert out["features"] == {f"u{i}.pt": [49, 64] for i in range(4)}  # 1 s: 49 frames at 50 Hz, width 64
    assert out["cli_extract"] == 0
    assert out["cli_equal"] is True  # `spidrkit extract` wrote the Python API's features, bit for bit
    assert out["units_lines"] == 4
    assert out["loaded_outside"] == []


def test_a_feature_of_an_extra_names_the_extra(core_run):
    out, err = core_run
    assert out["hub_load"] == ("a Hugging Face Hub repo needs huggingface_hub (not installed): "
                               "pip install 'spidrkit[hf]'")
    assert out["cli_hub"] == 2
    assert "pip install 'spidrkit[hf]'" in err and "Traceback" not in err


def test_core_dependencies_are_the_allowed_set():
    """pyproject.toml's core list is :data:`CORE`: one cannot grow without the other (and this module's check)."""
    assert _names(_pyproject()["dependencies"]) == CORE


def test_extras_hold_the_optional_packages_and_all_holds_the_extras():
    extras = _pyproject()["optional-dependencies"]
    for module, (dist, extra) in EXTRAS.items():
        assert canonicalize_name(dist) in _names(extras[extra]), f"{module}: {dist} not in [{extra}]"
    assert not any(canonicalize_name(d) in CORE for d, _ in EXTRAS.values())
    assert _names(extras["lm"]) == {"spidrkit"} and Requirement(extras["lm"][0]).extras == {"hf"}
    (everything,) = extras["all"]
    assert Requirement(everything).extras == set(extras) - {"all", "dev", "parity", "tensorboard"}
    assert set(OPTIONAL) <= set(EXTRAS)


def test_require_names_the_extra_and_passes_other_failures_through(tmp_path, monkeypatch):
    assert require("json", "anything").dumps([1]) == "[1]"
    for name in ("sklearn", "sklearn.cluster"):  # an import of None raises ModuleNotFoundError (the submodule too:
        monkeypatch.setitem(sys.modules, name, None)  # an earlier test in this process may have imported it)
    with pytest.raises(MissingExtra) as caught:
        require("sklearn.cluster", "k-means")
    assert str(caught.value) == "k-means needs scikit-learn (not installed): pip install 'spidrkit[eval]'"
    assert install_hint("transformers", extra="lm") == "transformers (not installed): pip install 'spidrkit[lm]'"
    # a package that imports a missing one of its own: that package's defect, not a missing extra
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("import not_a_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXTRAS, "brokenpkg", ("brokenpkg", "eval"))
    with pytest.raises(ModuleNotFoundError, match="not_a_module_anywhere"):
        require("brokenpkg", "x")


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_lock_pins_every_declared_dependency_with_the_cpu_torch():
    """requirements.lock (``make lock``) holds a version of every core and extra dependency (not the test oracle,
    installed with --no-deps) that satisfies pyproject.toml, and none of the CUDA wheels."""
    project, pins = _pyproject(), _lock_pins()
    declared = [*project["dependencies"], *(r for name, reqs in project["optional-dependencies"].items()
                                            if name != "parity" for r in reqs)]
    for text in declared:
        req = Requirement(text)
        if canonicalize_name(req.name) != "spidrkit":
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} vs {req}"
    assert not [n for n in pins if n.startswith(("nvidia-", "cuda-")) or n == "triton"]
    assert pins["torch"] == "2.14.1"
