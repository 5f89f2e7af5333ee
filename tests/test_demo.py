"""The main job end to end, shrunk: corpus -> pretraining -> sweep -> report (the issue's integration test)."""

import json
import shutil

import pytest

from spidrkit.demo import corpus_hours, run_demo


def test_corpus_hours_scale_with_the_budget():
    assert corpus_hours(20) == 2.0 and corpus_hours(40) == 2.0
    assert corpus_hours(1) == 0.1 and corpus_hours(5) == 0.5


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (sudo apt-get install flite)")
def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    small = ("model.conv_dim=32", "model.dim=64", "model.num_heads=2", "model.ffn_dim=128", "model.num_layers=3",
             "model.num_codebooks=2", "model.codebook_size=32", "data.max_batch_samples=64000",
             "train.log_every=5", "train.checkpoint_every=20", "train.valid_every=20", "train.valid_batches=2",
             "train.max_steps=30", "data.num_workers=0")
    result = run_demo(out, minutes=0.5, hours=0.03, kmeans_k=8, overrides=small, progress=False)
    report = (out / "report.md").read_text()
    assert report.startswith("# spidrkit demo report")
    assert "MFCC" in report and "held-out voice: kal16" in report
    for png in ("layers.png", "phone_given_code.png", "tsne.png", "perplexity.png"):
        assert (out / png).stat().st_size > 1000, png
    info = json.loads((out / "demo.json").read_text())
    assert info["training"]["step"] >= 1 and info["training"]["status"] in ("completed", "time_budget")
    assert set(info["timings_s"]) >= {"total"}
    layers = result["results"]["layers"]
    assert len(layers) == 3 and all(0 <= row["abx_across"] <= 100 for row in layers.values())
    # a second run finds everything done: the corpus is kept and training resumes from its checkpoint
    again = run_demo(out, minutes=0.5, hours=0.03, kmeans_k=8, overrides=small, progress=False)
    assert again["demo"]["training"]["step"] >= info["training"]["step"]
