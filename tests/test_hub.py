"""The Hugging Face Hub, both ways, against a local stand-in (tests/hub_standin.py; no network): a model pushed with
``spidrkit push --dry-run`` and served as a repo loads by repo id with the same features bit for bit, its card
carries the report's figures; revisions, the cache and offline mode; Hub misses and missing paths; unit LMs and
``transformers`` encoders by repo id; the upload (HfApi replaced); retries with backoff."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers as T

import spidrkit
from hub_standin import StandInHub
from spidrkit.checkpoints import CheckpointError, load, push
from spidrkit.checkpoints.run import FORMAT, checkpoint_path, save_checkpoint
from spidrkit.cli import main as cli_main
from spidrkit.cli.slm import load_unit_lm
from spidrkit.config import load_config
from spidrkit.encoders import HFEncoder
from spidrkit.extraction.features_io import iter_feature_files, load_features
from spidrkit.hub import HubError, hub_ref, looks_like_path
from spidrkit.io import file_sha256, read_sidecar
from spidrkit.lm.config import LMModelConfig
from spidrkit.lm.model import LMError, build_model, load_lm, save_model_dir
from spidrkit.lm.vocab import UnitVocab
from spidrkit.models.spidr import SpidR
from spidrkit.retry import with_retries

SMALL = ["model.conv_dim=32", "model.dim=64", "model.num_heads=2", "model.ffn_dim=128"]
REPO = "someuser/spidr-tiny"


@pytest.fixture(scope="module")
def hub():
    server = StandInHub().start()
    yield server
    server.stop()


@pytest.fixture
def hf(hub, tmp_path, monkeypatch):
    """The stand-in as the Hub (HF_ENDPOINT), a fresh cache, online, no token, retries without pauses."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("spidrkit.retry.FIRST_DELAY_S", 0.0)
    hub.requests.clear()
    hub.fail = 0
    return hub


def _run(folder, seed: int, step: int = 120, elapsed: float = 5400.0):
    """A pretraining run folder with one checkpoint (``elapsed`` seconds of training); returns the model."""
    torch.manual_seed(seed)
    cfg = load_config("tiny", SMALL)
    model = SpidR(cfg.model).eval()
    save_checkpoint(checkpoint_path(folder, step), {"model": model.state_dict(), "config": cfg.to_dict(),
                                                    "step": step, "format": FORMAT, "elapsed": elapsed})
    return model


def _features(model, layers=(1, 3, 6)):
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32))
    with torch.inference_mode():
        return model.layer_outputs(wav, layers=list(layers))


def _reports(tmp_path, model_id: str):
    sweep = {"title": "sweep", "results": {
        "info": {"model": model_id},
        "layers": {"1": {"abx_within": 9.5, "abx_across": 15.0}, "2": {"abx_within": 7.25, "abx_across": 12.5,
                                                                      "map": 30.25}},
        "best_layer": 2, "best_layer_mean_abx": 9.875,
        "units": {"codebook L5": {"pnmi": 0.41, "abx_within": 20.5, "abx_across": 30.75},
                  "codebook L6": {"pnmi": 0.38}},
    }}
    slm = {"command": "spidrkit evaluate slm", "benchmark": "slm", "scoring": {"normalize": True},
           "inputs": {"encoder": "spidr:0123456789abcdef", "units": "codebook:6"},
           "results": {"lexical/dev": {"all": {"score": 61.25, "ci95": [58.5, 64.0], "pairs": 1000},
                                       "in_vocab": {"score": 63.5, "ci95": [60.0, 67.0], "pairs": 700}},
                       "syntactic/dev": {"all": {"score": 52.75, "ci95": [51.0, 54.5], "pairs": 2000}}}}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    (tmp_path / "slm.json").write_text(json.dumps(slm))
    return tmp_path / "sweep.json", tmp_path / "slm.json"


# ------------------------------------------------------------------------------------------ the target
def test_pushed_dry_run_served_as_a_repo_loads_by_id_bit_for_bit_and_its_card_has_the_figures(hf, tmp_path, capsys):
    model = _run(tmp_path / "run", seed=1)
    source_id = load(tmp_path / "run").info.model_id
    sweep, slm = _reports(tmp_path, source_id)
    out = tmp_path / "pushed"
    assert cli_main(["push", str(tmp_path / "run"), REPO, "--dry-run", "-o", str(out), "--report", str(sweep),
                     "--report", str(slm)]) == 0
    printed = capsys.readouterr()
    sha = file_sha256(out / "model.safetensors", length=64)
    assert printed.out.splitlines() == [
        f"wrote {out}/ (config.json, model.safetensors, README.md): model.safetensors SHA-256 {sha}",
        f"dry run: nothing uploaded; `spidrkit push {tmp_path / 'run'} {REPO}` uploads it"]
    assert printed.err == (f"spidrkit push: note: {slm} measured another checkpoint than the one pushed (the card "
                           "says so)\n")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    commit = hf.add(REPO, out)

    loaded, info = spidrkit.load(REPO)
    assert info.path == f"hf://{REPO}@{commit}" and info.source == "spidrkit" and info.step == 120
    assert info.sha256 == sha[:16] == load(out).info.sha256
    ours, theirs = _features(loaded), _features(model)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)  # bit for bit
    got = {p for m, p in hf.requests if m == "GET" and "/resolve/" in p}
    assert got == {f"/{REPO}/resolve/{commit}/config.json", f"/{REPO}/resolve/{commit}/model.safetensors"}

    card = (out / "README.md").read_text()
    lines = card.splitlines()
    assert lines[:3] == ["---", "library_name: spidrkit", "tags:"] and f"# {REPO}" in lines
    for line in [
        f"From `sweep.json`, measured on `{source_id}`:",
        "- best layer by mean ABX: **layer 2**: ABX within speaker 7.25 %, across speakers 12.50 %, word MAP 30.25 %",
        "- best PNMI: **codebook L5**: PNMI 0.410, ABX within speaker 20.50 %, across speakers 30.75 %",
        "From `slm.json`, measured on `spidr:0123456789abcdef` (another checkpoint than the one pushed):",
        "- sWUGGY (lexical/dev, all pairs): **61.25 %** (95 % CI 58.50 % – 64.00 %, 1000 pair ids; units codebook:6)",
        "- sWUGGY (lexical/dev, in-vocabulary pairs): **63.50 %** (95 % CI 60.00 % – 67.00 %, 700 pair ids; units "
        "codebook:6)",
        "- sBLIMP (syntactic/dev, all pairs): **52.75 %** (95 % CI 51.00 % – 54.50 %, 2000 pair ids; units "
        "codebook:6)",
        "| variant | spidr |",
        "| training | 120 steps, 1.50 hours of training time (`train.max_steps` 6,000) |",
        f"| weights | `model.safetensors`, SHA-256 `{sha}`; model id `spidr:{sha[:16]}` in the sidecars of what it "
        "produces |",
        f"| provenance | written from `run/checkpoints/step_00000120.pt` (spidrkit checkpoint, SHA-256 "
        f"`{source_id.split(':')[1]}`, model id `{source_id}`) by spidrkit {spidrkit.__version__} |",
        f'model, info = spidrkit.load("{REPO}")  # or "{REPO}@REVISION"',
    ]:
        assert line in lines, line
    assert str(tmp_path) not in card + (out / "config.json").read_text()  # no local path goes public
    assert "[model]" in card and "dim = 64" in card


def test_extract_by_repo_id_writes_the_features_of_the_folder(hf, tmp_path):
    _run(tmp_path / "run", seed=2)
    assert cli_main(["push", str(tmp_path / "run"), REPO, "--dry-run", "-o", str(tmp_path / "dir")]) == 0
    commit = hf.add(REPO, tmp_path / "dir")
    rng = np.random.default_rng(0)
    (tmp_path / "wavs").mkdir()
    for i in range(2):
        sf.write(tmp_path / "wavs" / f"u{i}.wav", 0.1 * rng.standard_normal(6000).astype(np.float32), 16000)
    for name, model in (("hub", REPO), ("local", str(tmp_path / "dir"))):
        assert cli_main(["extract", str(tmp_path / "wavs"), "--model", model, "--layers", "3", "--quiet", "-o",
                         str(tmp_path / name)]) == 0
    a = dict(iter_feature_files(tmp_path / "hub"))
    b = dict(iter_feature_files(tmp_path / "local"))
    assert sorted(a) == sorted(b) == ["u0", "u1"]
    assert all(torch.equal(load_features(a[k]), load_features(b[k])) for k in a)
    side = read_sidecar(tmp_path / "hub")
    assert side["checkpoint"] == f"hf://{REPO}@{commit}"
    assert side["checkpoint_sha256"] == read_sidecar(tmp_path / "local")["checkpoint_sha256"]


# ------------------------------------------------------------------------------------------ revisions, cache
def test_revisions_the_cache_and_offline_mode(hf, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    for seed, name in ((3, "a"), (4, "b")):
        _run(tmp_path / f"run_{name}", seed=seed)
        push(tmp_path / f"run_{name}", REPO, dry_run=True, output=tmp_path / name)
    main, v1 = hf.add(REPO, tmp_path / "a"), hf.add(REPO, tmp_path / "b", revision="v1")
    sha_a, sha_b = (file_sha256(tmp_path / n / "model.safetensors") for n in "ab")
    assert load(REPO).info.sha256 == sha_a
    for way in ({"path_or_name": REPO, "revision": "v1"}, {"path_or_name": f"{REPO}@v1"},
                {"path_or_name": f"hf://{REPO}@v1"}, {"path_or_name": REPO, "revision": v1}):
        info = load(**way).info
        assert (info.sha256, info.path) == (sha_b, f"hf://{REPO}@{v1}"), way
    assert main != v1
    with pytest.raises(CheckpointError, match=r"two revisions, 'v1' in the id and 'v2'; give one"):
        load(f"{REPO}@v1", revision="v2")
    # offline: the cache answers, no request
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hf.requests)
    assert load(f"{REPO}@v1").info.sha256 == sha_b and load(REPO).info.sha256 == sha_a
    assert len(hf.requests) == before
    with pytest.raises(CheckpointError) as e:
        load(REPO, revision="v2")
    assert str(e.value) == (f"{REPO}@v2: not in the Hugging Face cache ({tmp_path / 'hf'}) and HF_HUB_OFFLINE is "
                            "set: unset it to download, or pass a local path")


# ------------------------------------------------------------------------------------------ misses
def test_hub_misses_are_one_line_naming_the_repo_and_the_fix(hf, tmp_path, capsys, monkeypatch):
    _run(tmp_path / "run", seed=5)
    push(tmp_path / "run", REPO, dry_run=True, output=tmp_path / "dir")
    hf.add(REPO, tmp_path / "dir")
    with pytest.raises(CheckpointError) as e:
        load("someuser/no-such-model")
    assert str(e.value) == (
        f"someuser/no-such-model: no local path of that name, and no model repo on the Hugging Face Hub ({hf.url}) "
        "that this token can read (a private repo: set HF_TOKEN to a token of yours "
        "(https://huggingface.co/settings/tokens)); check the id, or pass a local path")
    with pytest.raises(CheckpointError) as e:
        load(REPO, revision="v9")
    assert str(e.value) == (f"{REPO}: no revision 'v9' on the Hugging Face Hub ({hf.url}); check the branch, tag or "
                            "commit")
    (tmp_path / "wavs").mkdir()
    assert cli_main(["extract", str(tmp_path / "wavs"), "--model", "someuser/no-such-model", "-o",
                     str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spidrkit extract: error: someuser/no-such-model: no local path of that name, and no "
                          "model repo on the Hugging Face Hub") and err.count("\n") == 1
    # no network: every try fails, then one line
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(CheckpointError) as e:
        load("someuser/elsewhere")
    assert str(e.value).startswith(f"someuser/elsewhere: cannot reach the Hugging Face Hub (http://127.0.0.1:{port}) "
                                   "and not in the cache (")
    assert str(e.value).endswith("); check the network (or HF_ENDPOINT), or pass a local path")


def test_a_transient_hub_failure_is_retried(hf, tmp_path):
    _run(tmp_path / "run", seed=6)
    push(tmp_path / "run", REPO, dry_run=True, output=tmp_path / "dir")
    hf.add(REPO, tmp_path / "dir")
    hf.fail = 2  # the first two requests get HTTP 503
    assert load(REPO).info.sha256 == file_sha256(tmp_path / "dir" / "model.safetensors")
    assert hf.fail == 0 and hf.requests[:3] == [("GET", f"/api/models/{REPO}/revision/main")] * 3


def test_a_missing_local_path_is_reported_as_a_path_not_a_hub_miss(hf, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someuser").mkdir()  # an existing parent folder: a path
    for text in ("./nope", "../nope/x", "/nonexistent-spidrkit/x", "~/nonexistent-spidrkit", "someuser/spidr-tiny",
                 "runs/x.pt", str(tmp_path / "nope")):
        with pytest.raises(CheckpointError) as e:
            load(text)
        assert str(e.value) == f"no such file or folder: {text}", text
        with pytest.raises(LMError) as e:
            load_lm(text)
        assert str(e.value) == f"no such file or folder: {text}", text
    with pytest.raises(CheckpointError) as e:
        load("spidr_bse")
    assert str(e.value) == ("no such file or folder: spidr_bse (a published model is one of spidr_base, "
                            "dinosr_base_reproduced, dinosr_base_original; a Hub repo is OWNER/NAME)")
    assert hf.requests == []  # nothing was asked of the Hub
    assert looks_like_path("someuser/x") and not looks_like_path("otheruser/x")
    assert hub_ref("otheruser/x@refs/pr/1").revision == "refs/pr/1" and hub_ref("someuser/x") is None
    assert hub_ref("hf://someuser/x").repo_id == "someuser/x"  # hf:// is never a path
    with pytest.raises(HubError, match="not a Hub repo id; expected hf://OWNER/NAME"):
        hub_ref("hf://just-a-name")


# ------------------------------------------------------------------------------------------ other repos
def test_a_transformers_encoder_by_repo_id(hf, tmp_path):
    torch.manual_seed(0)
    model = T.HubertModel(T.HubertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8,) * 7, feat_extract_norm="group"))
    model.save_pretrained(tmp_path / "hubert")
    commit = hf.add("someuser/hubert-tiny", tmp_path / "hubert")
    enc, info = spidrkit.load("someuser/hubert-tiny")
    local = spidrkit.load(tmp_path / "hubert")
    assert isinstance(enc, HFEncoder) and (info.source, info.variant) == ("transformers", "hubert")
    assert info.path == f"hf://someuser/hubert-tiny@{commit}" and info.sha256 == local.info.sha256
    ours, theirs = _features(enc, (1, 2)), _features(local.model, (1, 2))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_unit_lm_by_repo_id_a_model_folder_or_a_run(hf, tmp_path):
    vocab = UnitVocab(k=10)
    torch.manual_seed(0)
    lm = build_model(LMModelConfig(num_layers=1, dim=16, num_heads=2, ffn_dim=32, context=64), vocab)
    save_model_dir(lm, vocab, tmp_path / "run" / "best", step=5)
    save_model_dir(lm, vocab, tmp_path / "run" / "last", step=7)
    folder_commit = hf.add("someuser/unit-lm", tmp_path / "run" / "best")
    run_commit = hf.add("someuser/unit-lm-run", tmp_path / "run")
    tokens = torch.tensor([vocab.encode([1, 2, 3, 9])])
    want = load_lm(tmp_path / "run" / "best")[0](tokens).logits
    model, got_vocab, info = load_lm("someuser/unit-lm")
    assert torch.equal(model(tokens).logits, want) and got_vocab == vocab
    assert (info["path"], info["which"], info["step"]) == (f"hf://someuser/unit-lm@{folder_commit}", "repo", 5)
    _, _, info = load_lm("someuser/unit-lm-run", which="last")
    assert (info["path"], info["step"]) == (f"hf://someuser/unit-lm-run@{run_commit}/last", 7)
    _, _, info = load_unit_lm("someuser/unit-lm-run")  # what `evaluate slm --lm` loads: the run's best/
    assert (info["path"], info["step"]) == (f"hf://someuser/unit-lm-run@{run_commit}/best", 5)
    with pytest.raises(CheckpointError, match=r"a unit language model folder \(spidrkit lm train\): pass it to --lm"):
        load("someuser/unit-lm")


# ------------------------------------------------------------------------------------------ push
class _FakeApi:
    """``huggingface_hub.HfApi`` as push calls it: records the calls and the files it was given."""

    calls: ClassVar[list] = []
    token: ClassVar[str | None] = "hf_test"

    def __init__(self, endpoint=None, **kwargs):
        self.calls.append(("HfApi", endpoint))

    def create_repo(self, repo_id, **kwargs):
        if self.token is None:
            from huggingface_hub.errors import LocalTokenNotFoundError

            raise LocalTokenNotFoundError("Token is required (write-access action) but no token found.")
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, folder_path, **kwargs):
        from pathlib import Path

        files = sorted(p.name for p in Path(folder_path).iterdir())
        self.calls.append(("upload_folder", files, kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://hub.example/{kwargs['repo_id']}/commit/abc"})()


def test_push_uploads_the_folder_and_card_through_hfapi(hf, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setattr(_FakeApi, "calls", [])
    _run(tmp_path / "run", seed=7)
    done = push(tmp_path / "run" / "checkpoints" / "step_00000120.pt", REPO, private=True)
    assert done.url == f"https://hub.example/{REPO}/commit/abc" and done.folder is None
    assert _FakeApi.calls == [
        ("HfApi", hf.url),
        ("create_repo", REPO, {"repo_type": "model", "private": True, "exist_ok": True}),
        ("upload_folder", ["README.md", "config.json", "model.safetensors"],
         {"repo_id": REPO, "repo_type": "model", "commit_message": "spidrkit push: spidr step 120 from "
          "step_00000120.pt", "allow_patterns": ["config.json", "model.safetensors", "README.md"]}),
    ]
    assert cli_main(["push", str(tmp_path / "run"), REPO, "-o", str(tmp_path / "kept")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"pushed to {REPO}: https://hub.example/{REPO}/commit/abc"
    assert (tmp_path / "kept" / "README.md").is_file()
    monkeypatch.setattr(_FakeApi, "token", None)
    assert cli_main(["push", str(tmp_path / "run"), REPO]) == 2
    assert capsys.readouterr().err == (
        f"spidrkit push: error: {REPO}: no write access on the Hugging Face Hub ({hf.url}): set HF_TOKEN to a token "
        "of yours (https://huggingface.co/settings/tokens) with write permission, for an owner you belong to\n")


def test_push_refuses_what_it_cannot_do_before_writing(hf, tmp_path, capsys):
    _run(tmp_path / "run", seed=8)
    run = str(tmp_path / "run")
    (tmp_path / "bad.json").write_text(json.dumps({"table": {}}))
    cases = [
        ([run, REPO, "--dry-run"], "push: --dry-run writes the model folder and its card locally: give --output DIR"),
        ([run, "spidr-tiny", "--dry-run", "-o", str(tmp_path / "o")],
         "push: 'spidr-tiny' is not a Hub repo id; expected OWNER/NAME (an owner is your user name or an "
         "organisation of yours)"),
        ([run, REPO, "--dry-run", "-o", str(tmp_path / "o"), "--report", str(tmp_path / "bad.json")],
         f"{tmp_path / 'bad.json'}: not a report spidrkit push reads (the report.json of `spidrkit evaluate sweep`, "
         "of the demo, or of `spidrkit evaluate slm`)"),
        ([str(tmp_path / "nothing"), REPO, "--dry-run", "-o", str(tmp_path / "o")],
         f"no such file or folder: {tmp_path / 'nothing'}"),
    ]
    for argv, message in cases:
        assert cli_main(["push", *argv]) == 2
        assert capsys.readouterr().err == f"spidrkit push: error: {message}\n"
    assert not (tmp_path / "o").exists()
    assert cli_main(["push", run, REPO, "--dry-run", "-o", str(tmp_path / "o")]) == 0
    assert cli_main(["push", run, REPO, "--dry-run", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.endswith(f"push: {tmp_path / 'o' / 'config.json'} exists; pass --force to replace "
                                            "it (or choose another --output)\n")
    assert cli_main(["push", run, REPO, "--dry-run", "-o", str(tmp_path / "o"), "--force"]) == 0


# ------------------------------------------------------------------------------------------ retries
def test_with_retries_backs_off_on_transient_errors_only():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert with_retries(flaky, lambda e: isinstance(e, ConnectionError), "x", attempts=4, first_delay=0.5,
                        sleep=sleeps.append) == "ok"
    assert (len(calls), sleeps) == (3, [0.5, 1.0])

    def broken():
        calls.append(1)
        raise ValueError("not transient")

    calls.clear()
    with pytest.raises(ValueError):
        with_retries(broken, lambda e: isinstance(e, ConnectionError), "x", sleep=sleeps.append)
    assert len(calls) == 1

    def down():
        calls.append(1)
        raise ConnectionError(f"try {len(calls)}")

    calls.clear()
    sleeps.clear()
    with pytest.raises(ConnectionError, match="try 3"):
        with_retries(down, lambda e: True, "x", attempts=3, first_delay=2.0, sleep=sleeps.append)
    assert sleeps == [2.0, 4.0]
