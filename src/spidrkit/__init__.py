"""spidrkit: SpidR and DinoSR self-supervised speech models, end to end.

The Python API mirrors the ``spidrkit`` command line::

    import spidrkit
    model, info = spidrkit.load("spidr_base")             # published weights (cached, verified), or a file
    model, info = spidrkit.load("OWNER/NAME")             # a Hugging Face Hub repo (docs/hub.md)
    feats = model.layer_outputs(wav, layers=[6])[6]        # (B, T, 768) at 50 Hz, layers 1-based
    out = spidrkit.speech_to_units(model, wav, layer=6, sample_rate=16000)  # {"dense", "units", "durations"}
    spidrkit.extract(model, "dev.csv", "feats/", layers=[6], units="codebook", provenance=info)
    spidrkit.extract(model, {"utt1": array}, "feats/", sample_rate=22050)  # or a datasets.Dataset: docs/formats.md
    spidrkit.export_km("feats/units.txt", "km/")           # fairseq train.tsv, train.km, dict.km.txt
    rnd = spidrkit.load_model("random:tiny")               # random weights: only when asked for
    spidrkit.pretrain(spidrkit.load_config("tiny", ["data.train_manifest=train.csv"]), "runs/tiny")

Names are imported on first use, so ``import spidrkit`` stays fast.
"""

from __future__ import annotations

from spidrkit.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "Config": "spidrkit.config",
    "load_config": "spidrkit.config",
    "SpidR": "spidrkit.models.spidr",
    "sample_mask": "spidrkit.models.masking",
    "load": "spidrkit.checkpoints",
    "load_model": "spidrkit.checkpoints",
    "convert": "spidrkit.checkpoints",
    "push": "spidrkit.checkpoints",
    "fetch_weights": "spidrkit.checkpoints",
    "NAMED_WEIGHTS": "spidrkit.checkpoints",
    "SpeechEncoder": "spidrkit.models.interface",
    "extract": "spidrkit.extraction.extract",
    "fit_kmeans": "spidrkit.extraction.kmeans",
    "apply_kmeans": "spidrkit.extraction.kmeans",
    "KMeansModel": "spidrkit.extraction.kmeans",
    "read_units": "spidrkit.extraction.units",
    "write_units": "spidrkit.extraction.units",
    "speech_to_units": "spidrkit.extraction.speech_units",
    "export_km": "spidrkit.extraction.unit_exports",
    "read_km": "spidrkit.extraction.unit_exports",
    "pretrain": "spidrkit.training.loop",
    "synthesize_corpus": "spidrkit.data.synth.corpus",
    "read_manifest": "spidrkit.data.corpora.manifest",
    "write_manifest": "spidrkit.data.corpora.manifest",
    "load_audio": "spidrkit.data.corpora.audio",
    "sweep": "spidrkit.evaluation.sweep.run",
    "run_demo": "spidrkit.demo",
}

__all__ = ["__version__", *_LAZY]
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
