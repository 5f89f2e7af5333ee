"""Named published weights against a local HTTP server: download, cache, SHA-256, offline, explicit random."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.checkpoints import (
    NAMED_WEIGHTS,
    CheckpointError,
    WeightsUnavailableError,
    cache_dir,
    fetch_weights,
    load,
    load_model,
)
from spidrkit.checkpoints.named import weights_url
from spidrkit.cli import main as cli_main
from spidrkit.config import load_config
from spidrkit.errors import EXIT_TEMPFAIL, EXIT_USAGE
from spidrkit.models.spidr import SpidR

SMALL = ["model.conv_dim=32", "model.dim=128", "model.num_heads=2", "model.ffn_dim=256"]


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves the files of ``server.root`` (``Range: bytes=N-`` honoured), counting the requests; the next
    ``server.fail`` requests get HTTP 503."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.server.fail:
            self.server.fail -= 1
            self.send_error(503, "Service Unavailable")
            return
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny released-layout checkpoint served as spidr_base.pt; yields (base URL, server, model)."""
    root = tmp_path_factory.mktemp("server")
    torch.manual_seed(0)
    model = SpidR(load_config("tiny", SMALL).model).eval()
    torch.save({"model": model.state_dict()}, root / "spidr_base.pt")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.root, server.requests, server.fail = root, [], 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server, model
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch, published):
    monkeypatch.setenv("SPIDRKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPIDRKIT_WEIGHTS_URL", published[0])
    published[1].requests.clear()
    published[1].fail = 0
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    """Retries without their pauses (the retry helper is timed in tests/test_hub.py)."""
    monkeypatch.setattr("spidrkit.retry.FIRST_DELAY_S", 0.0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cache_folder_and_urls(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIDRKIT_CACHE", raising=False)
    monkeypatch.delenv("SPIDRKIT_WEIGHTS_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "spidrkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "spidrkit"
    monkeypatch.setenv("SPIDRKIT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert {n: (w.url, w.variant, w.filename(n)) for n, w in NAMED_WEIGHTS.items()} == {
        "spidr_base": ("https://dl.fbaipublicfiles.com/shared/devai/assets/models/spidr_base.pt", "spidr",
                       "spidr_base.pt"),
        "dinosr_base_reproduced": ("https://dl.fbaipublicfiles.com/shared/devai/assets/models/"
                                   "dinosr_base_reproduced.pt", "dinosr", "dinosr_base_reproduced.pt"),
        "dinosr_base_original": ("https://data.csail.mit.edu/placesaudio/dinosr/dinosr.ckpt", "dinosr",
                                 "dinosr_base_original.ckpt"),
    }
    assert weights_url("dinosr_base_original", "http://mirror/x/") == "http://mirror/x/dinosr.ckpt"


def test_first_download_then_verified_reload_without_a_request(cache, published):
    url, server, model = published
    loaded, info = load("spidr_base")
    assert server.requests == [("/spidr_base.pt", None)]
    target = cache / "spidr_base.pt"
    sha = hashlib.sha256(target.read_bytes()).hexdigest()
    assert target.read_bytes() == (server.root / "spidr_base.pt").read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["spidr_base.pt", "weights.json"]  # no .part, no lock
    assert json.loads((cache / "weights.json").read_text()) == {
        "spidr_base.pt": {"sha256": sha, "url": f"{url}/spidr_base.pt", "how": "downloaded"}}
    assert info.path == str(target.resolve()) and info.source == "released" and info.variant == "spidr"
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    again = load_model("spidr_base")
    assert server.requests == [("/spidr_base.pt", None)]  # the cache, verified: no second request
    assert again.variant == "spidr"


def test_corrupted_cache_file_is_an_error_naming_both_hashes(cache, published):
    fetch_weights("spidr_base", progress=False)
    target = cache / "spidr_base.pt"
    good = hashlib.sha256(target.read_bytes()).hexdigest()
    blob = bytearray(target.read_bytes())
    blob[-100] ^= 0xFF
    target.write_bytes(bytes(blob))
    bad = hashlib.sha256(bytes(blob)).hexdigest()
    with pytest.raises(CheckpointError) as e:
        load_model("spidr_base")
    assert str(e.value) == (
        f"{target}: SHA-256 {bad} differs from {good} (recorded at its download in {cache / 'weights.json'}): "
        "the file is corrupt or was replaced; delete it to download again")
    target.unlink()
    assert fetch_weights("spidr_base", progress=False) == target  # downloaded again, recorded again
    assert len(published[1].requests) == 2


def test_a_partial_download_resumes_with_a_range_request(cache, published):
    whole = (published[1].root / "spidr_base.pt").read_bytes()
    cache.mkdir(parents=True)
    (cache / "spidr_base.pt.part").write_bytes(whole[:1000])
    assert fetch_weights("spidr_base", progress=False).read_bytes() == whole
    assert published[1].requests == [("/spidr_base.pt", "bytes=1000-")]


def test_a_file_placed_by_hand_is_recorded_at_its_first_use(cache, published):
    cache.mkdir(parents=True)
    (cache / "spidr_base.pt").write_bytes((published[1].root / "spidr_base.pt").read_bytes())
    fetch_weights("spidr_base")
    assert published[1].requests == []
    assert json.loads((cache / "weights.json").read_text())["spidr_base.pt"]["how"] == (
        "placed by hand (recorded at its first use)")


def test_no_network_says_the_url_the_error_and_where_to_place_the_file(cache, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("SPIDRKIT_WEIGHTS_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsUnavailableError) as e:
        load_model("dinosr_base_original")
    target = cache / "dinosr_base_original.ckpt"
    assert str(e.value) == (
        f"cannot download http://127.0.0.1:{port}/dinosr.ckpt ([Errno 111] Connection refused); without "
        f"network, download it elsewhere and place it at {target} (or set SPIDRKIT_CACHE to the folder holding "
        "dinosr_base_original.ckpt)")
    assert not target.exists() and not (cache / "dinosr_base_original.ckpt.part").exists()


def test_a_server_error_is_retried_with_backoff(cache, published, monkeypatch):
    sleeps = []
    monkeypatch.setattr("spidrkit.retry.FIRST_DELAY_S", 0.25)
    monkeypatch.setattr("time.sleep", sleeps.append)
    published[1].fail = 2
    target = fetch_weights("spidr_base", progress=False)
    assert published[1].requests == [("/spidr_base.pt", None)] * 3 and sleeps == [0.25, 0.5]
    assert target.read_bytes() == (published[1].root / "spidr_base.pt").read_bytes()
    published[1].fail = 3  # every try fails: one line, exit 75 (try again later)
    with pytest.raises(WeightsUnavailableError, match=r"cannot download .*/dinosr_base_reproduced.pt \(HTTP 503 "):
        fetch_weights("dinosr_base_reproduced", progress=False)
    assert len(published[1].requests) == 6


def test_a_pinned_sha256_is_checked_before_the_file_enters_the_cache(cache, published, monkeypatch):
    from dataclasses import replace

    good = hashlib.sha256((published[1].root / "spidr_base.pt").read_bytes()).hexdigest()
    spec = NAMED_WEIGHTS["spidr_base"]
    monkeypatch.setitem(NAMED_WEIGHTS, "spidr_base", replace(spec, sha256="0" * 64))
    with pytest.raises(CheckpointError) as e:
        fetch_weights("spidr_base", progress=False)
    assert str(e.value) == (
        f"{published[0]}/spidr_base.pt: the download's SHA-256 {good} differs from the published {'0' * 64}; it was "
        "deleted: the server gave another file (check SPIDRKIT_WEIGHTS_URL), try again later")
    assert sorted(p.name for p in cache.iterdir()) == []  # no file, no .part: nothing under a final name
    monkeypatch.setitem(NAMED_WEIGHTS, "spidr_base", replace(spec, sha256=good))
    target = fetch_weights("spidr_base", progress=False)
    assert json.loads((cache / "weights.json").read_text())["spidr_base.pt"]["sha256"] == good
    target.write_bytes(target.read_bytes()[:-1] + b"x")  # later loads check the pinned digest too
    with pytest.raises(CheckpointError, match=f"differs from {good} \\(published\\)"):
        fetch_weights("spidr_base", progress=False)


def test_a_missing_file_on_the_server_is_a_usage_error(cache, published):
    with pytest.raises(CheckpointError, match=r"HTTP 404 Not Found; place the file by hand at .*dinosr_base_repr"):
        fetch_weights("dinosr_base_reproduced")
    with pytest.raises(CheckpointError, match="no published weights named 'spidr_large'; known: spidr_base, "):
        fetch_weights("spidr_large")


def test_extract_with_a_named_model_and_offline_exit_codes(cache, published, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "wavs"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(corpus / f"u{i}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    args = ["extract", str(corpus), "--model", "spidr_base", "--layers", "2", "--quiet", "-o"]
    assert cli_main([*args, str(tmp_path / "f")]) == 0
    assert sorted(p.name for p in (tmp_path / "f").glob("*.pt")) == ["u0.pt", "u1.pt"]
    port = _closed_port()
    monkeypatch.setenv("SPIDRKIT_WEIGHTS_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SPIDRKIT_CACHE", str(tmp_path / "empty"))
    capsys.readouterr()
    assert cli_main([*args, str(tmp_path / "g")]) == EXIT_TEMPFAIL == 75
    err = capsys.readouterr().err
    assert err.startswith(f"spidrkit extract: try again later: cannot download http://127.0.0.1:{port}/spidr_base.pt "
                          "([Errno 111] Connection refused); without network") and err.count("\n") == 1


def test_random_weights_only_on_explicit_request(tmp_path, capsys):
    for name in ("base", "tiny"):
        with pytest.raises(CheckpointError) as e:
            load_model(name)
        assert str(e.value) == (
            f"{name!r} is a config, not a checkpoint: pass a checkpoint file, a published model (spidr_base, "
            f"dinosr_base_reproduced, dinosr_base_original), or 'random:{name}' for a model with RANDOM weights "
            "(its features and units mean nothing: for tests only)")
    toml = tmp_path / "small.toml"
    toml.write_text('preset = "tiny"\n[model]\nconv_dim = 32\ndim = 128\nffn_dim = 256\nnum_heads = 2\n')
    with pytest.raises(CheckpointError, match="is a config, not a checkpoint"):
        load_model(toml)
    model, info = load(f"random:{toml}", variant="dinosr")
    assert model.cfg.dim == 128 and model.variant == "dinosr"
    assert info.as_dict() == {"model": f"dinosr:random-{toml}", "variant": "dinosr", "checkpoint": str(toml),
                              "checkpoint_sha256": None, "checkpoint_format": "preset", "step": None}
    assert load_model("random:tiny").cfg.num_layers == 6
    presets = r"\(presets: base, base_release, tiny\)"
    with pytest.raises(CheckpointError, match=r"'random:huge': no config file huge " + presets):
        load_model("random:huge")
    code = cli_main(["extract", str(tmp_path), "--model", "tiny", "-o", str(tmp_path / "o")])
    assert code == EXIT_USAGE and "'random:tiny' for a model with RANDOM weights" in capsys.readouterr().err
    # the sweep no longer writes a report on noise: the model is refused before anything is written
    code = cli_main(["evaluate", "sweep", "--model", "base", "--corpus", str(tmp_path), "-o", str(tmp_path / "s")])
    assert code == EXIT_USAGE and not (tmp_path / "s").exists()
    assert "error: 'base' is a config, not a checkpoint" in capsys.readouterr().err
