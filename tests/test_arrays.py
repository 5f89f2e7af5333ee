"""Audio in memory as input: arrays with a sample rate, lists and dicts of them, a datasets.Dataset's audio column,
for extract and speech_to_units; the same numbers as the same audio read from files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from spidrkit.data.corpora.audio import AudioError, array_audio, load_audio
from spidrkit.data.corpora.manifest import ManifestEntry, resampled_length, write_manifest
from spidrkit.errors import InputError
from spidrkit.extraction.arrays import is_dataset, padded_ids
from spidrkit.extraction.extract import ExtractionError, extract
from spidrkit.extraction.features_io import iter_feature_files, load_features
from spidrkit.extraction.speech_units import speech_to_units
from spidrkit.extraction.units import read_units
from spidrkit.io import read_sidecar

LENGTHS = (9000, 20000, 12500)  # samples, at the rate of each test


def _signals(n_samples=LENGTHS, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"u{i}": (0.1 * rng.standard_normal(n) + 0.01 * i).astype(np.float32) for i, n in enumerate(n_samples)}


def _files(root, signals: dict[str, np.ndarray], rate: int):
    """The signals as float WAV files (exact samples) and a manifest of them (lengths at 16 kHz)."""
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for fid, x in signals.items():
        sf.write(root / f"{fid}.wav", x, rate, subtype="FLOAT")
        entries.append(ManifestEntry(fid, str(root / f"{fid}.wav"), resampled_length(len(x), rate)))
    return write_manifest(entries, root / "manifest.csv")


def _features(folder) -> dict[str, torch.Tensor]:
    return {fid: load_features(p) for fid, p in iter_feature_files(folder)}


def _assert_identical(dir_a, dir_b) -> None:
    a, b = _features(dir_a), _features(dir_b)
    assert sorted(a) == sorted(b) and a
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _dataset(signals: dict[str, np.ndarray], rate: int):
    datasets = pytest.importorskip("datasets")
    rows = {"id": list(signals), "text": ["x"] * len(signals),
            "audio": [{"array": x, "sampling_rate": rate} for x in signals.values()]}
    return datasets.Dataset.from_dict(rows)  # built in memory: nothing is downloaded


# ------------------------------------------------------------------------------------------------ extract
@pytest.mark.parametrize("rate", [16000, 22050])
def test_arrays_give_the_features_of_their_files_bit_for_bit(micro_model, tmp_path, rate):
    signals = _signals()
    manifest = _files(tmp_path / "wav", signals, rate)
    extract(micro_model, manifest, tmp_path / "files", layers=[2, 5], progress=False)
    extract(micro_model, signals, tmp_path / "dict", layers=[2, 5], sample_rate=rate, progress=False)
    for layer in ("layer_02", "layer_05"):
        _assert_identical(tmp_path / "files" / layer, tmp_path / "dict" / layer)
    assert len(_features(tmp_path / "dict" / "layer_02")["u1"]) == micro_model.num_frames(resampled_length(20000, rate))
    side = read_sidecar(tmp_path / "dict" / "layer_02")
    assert (side["inputs"], side["num_files"]) == ("3 arrays", 3)
    # torch tensors in a list: ids 0, 1, 2 in their order; codebook units equal the file route's
    extract(micro_model, manifest, tmp_path / "units_f", layers=[5], units="codebook", progress=False)
    tensors = [torch.from_numpy(x) for x in signals.values()]
    extract(micro_model, tensors, tmp_path / "units_a", layers=[5], units="codebook", sample_rate=rate, progress=False)
    by_file, by_array = read_units(tmp_path / "units_f" / "units.txt"), read_units(tmp_path / "units_a" / "units.txt")
    assert [by_array[str(i)].frames() for i in range(3)] == [by_file[f].frames() for f in signals]


def test_one_array_per_rate_and_resuming_compares_the_samples(micro_model, tmp_path):
    signals = _signals()
    rates = [16000, 22050, 8000]
    for (fid, x), rate in zip(signals.items(), rates):
        _files(tmp_path / "wav" / fid, {fid: x}, rate)
    entries = [ManifestEntry(fid, str(tmp_path / "wav" / fid / f"{fid}.wav"), resampled_length(len(x), r))
               for (fid, x), r in zip(signals.items(), rates)]
    extract(micro_model, entries, tmp_path / "files", layers=[3], progress=False)
    got = extract(micro_model, signals, tmp_path / "arr", layers=[3], sample_rate=rates, progress=False,
                  num_workers=2)  # read on threads, as on a GPU
    assert got.files == 3
    _assert_identical(tmp_path / "files", tmp_path / "arr")
    again = extract(micro_model, signals, tmp_path / "arr", layers=[3], sample_rate=rates, progress=False)
    assert (again.files, again.skipped) == (0, 3)  # the same samples: resumed
    changed = {**signals, "u0": signals["u0"] * 0.5}
    with pytest.raises(ExtractionError, match="holds outputs of another extraction .*inputs: 3 arrays"):
        extract(micro_model, changed, tmp_path / "arr", layers=[3], sample_rate=rates, progress=False)


def test_a_dataset_column_equals_the_arrays(micro_model, tmp_path):
    signals = _signals()
    ds = _dataset(signals, 22050)
    assert is_dataset(ds) and not is_dataset(signals)
    extract(micro_model, signals, tmp_path / "arr", layers=[4], sample_rate=22050, progress=False)
    extract(micro_model, ds, tmp_path / "ds", layers=[4], id_column="id", progress=False)
    _assert_identical(tmp_path / "arr", tmp_path / "ds")
    extract(micro_model, ds, tmp_path / "rows", layers=[4], progress=False)  # no id column: the row numbers
    assert sorted(_features(tmp_path / "rows")) == ["0", "1", "2"]
    assert read_sidecar(tmp_path / "ds")["inputs"] == "3 rows of a dataset"
    renamed = ds.rename_column("audio", "speech")
    with pytest.raises(ExtractionError, match=r"the dataset has no column 'audio' \(its columns: id, text, speech\): "
                                              "pass audio_column= naming one"):
        extract(micro_model, renamed, tmp_path / "x", layers=[4], progress=False)
    extract(micro_model, renamed, tmp_path / "speech", layers=[4], audio_column="speech", progress=False)
    _assert_identical(tmp_path / "rows", tmp_path / "speech")
    with pytest.raises(ExtractionError, match=r"a streamed dataset \(IterableDataset\) has no length"):
        extract(micro_model, ds.to_iterable_dataset(), tmp_path / "x", layers=[4], progress=False)
    with pytest.raises(ExtractionError, match="a dataset's rows carry their own sampling_rate"):
        extract(micro_model, ds, tmp_path / "x", layers=[4], sample_rate=16000, progress=False)
    with pytest.raises(ExtractionError, match=r"dataset row 0 \('text', id 0\): expected an audio dict"):
        extract(micro_model, ds, tmp_path / "x", layers=[4], audio_column="text", progress=False)


@pytest.mark.parametrize(("inputs", "kwargs", "message"), [
    (np.zeros(16000, np.float32), {}, r"array 0 has no sample rate: pass sample_rate="),
    (np.zeros((2, 16000), np.float32), {"sample_rate": 16000},
     r"array 0: expected one mono waveform \(1-D\), got shape \(2, 16000\): pass one channel \(e.g. wav\[0\]\) or "
     r"their mean"),
    ([np.zeros(16000, np.float32), np.zeros(0, np.float32)], {"sample_rate": 16000},
     r"array 1: empty audio \(0 samples\)"),
    ([np.array([0.0, np.nan] * 8000)], {"sample_rate": 16000}, "array 0: audio holds NaN or infinite samples"),
    (np.zeros(16000, np.float32), {"sample_rate": 0}, "array 0: the sample rate must be a positive whole number"),
    ([np.zeros(16000, np.float32)] * 2, {"sample_rate": [16000]}, "1 sample rates for 2 arrays"),
    (np.zeros(16000, np.complex64), {"sample_rate": 16000}, "samples must be floats or signed 16/32-bit integers"),
])
def test_unusable_arrays_are_input_errors_before_any_work(micro_model, tmp_path, inputs, kwargs, message):
    with pytest.raises(InputError, match=message):
        extract(micro_model, inputs, tmp_path / "out", layers=[2], progress=False, **kwargs)
    assert not list((tmp_path / "out").glob("*.pt"))
    with pytest.raises(InputError, match=message):
        speech_to_units(micro_model, inputs, layer=5, **kwargs)


def test_a_sample_rate_for_files_is_refused(micro_model, tmp_path):
    manifest = _files(tmp_path / "wav", _signals(), 16000)
    with pytest.raises(ExtractionError, match="sample_rate is for audio in memory"):
        extract(micro_model, manifest, tmp_path / "out", layers=[2], sample_rate=16000, progress=False)


# ------------------------------------------------------------------------------------------ speech_to_units
def test_a_batch_equals_one_at_a_time_and_the_dataset_route(micro_model, tmp_path):
    signals = _signals()
    rates = [16000, 22050, 44100]
    wavs = list(signals.values())
    batch = speech_to_units(micro_model, wavs, layer=5, sample_rate=rates)
    assert isinstance(batch, list) and len(batch) == 3
    for x, rate, out in zip(wavs, rates, batch):
        one = speech_to_units(micro_model, torch.from_numpy(x), layer=5, sample_rate=rate)
        assert one["dense"].shape == out["dense"].shape == (micro_model.num_frames(resampled_length(len(x), rate)), 64)
        torch.testing.assert_close(out["dense"], one["dense"], atol=1e-5, rtol=0)  # other batches: to rounding
        assert out["units"].tolist() == one["units"].tolist()
        assert out["durations"].tolist() == one["durations"].tolist()
    # a 22.05 kHz array gives what its file gives, which a path in the batch reads
    _files(tmp_path / "wav", {"u1": wavs[1]}, 22050)
    from_file = speech_to_units(micro_model, [tmp_path / "wav" / "u1.wav"], layer=5)[0]
    assert torch.equal(from_file["dense"], speech_to_units(micro_model, wavs[1], layer=5, sample_rate=22050)["dense"])
    ds = _dataset(dict(zip(signals, wavs)), 22050)
    by_rows = speech_to_units(micro_model, ds, layer=5, dedup=False)
    by_arrays = speech_to_units(micro_model, wavs, layer=5, dedup=False, sample_rate=22050)
    assert len(by_rows) == 3
    for a, b in zip(by_rows, by_arrays):
        assert torch.equal(a["dense"], b["dense"]) and torch.equal(a["units"], b["units"])


def test_a_decoder_object_in_the_audio_column_is_read(micro_model):
    """datasets 4+ with torchcodec hands out decoder objects: ``get_all_samples()`` -> (channels, N) and a rate."""
    x = _signals()["u1"]

    class Samples:
        data, sample_rate = torch.from_numpy(x)[None], 22050

    class Decoder:
        def get_all_samples(self):
            return Samples()

    class FakeDataset:  # the shape of a Dataset, no datasets package
        column_names, features = ["audio"], {"audio": "Audio"}

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"audio": Decoder()}

    out = speech_to_units(micro_model, FakeDataset(), layer=5)
    assert torch.equal(out[0]["dense"], speech_to_units(micro_model, x, layer=5, sample_rate=22050)["dense"])


def test_array_audio_is_the_file_readers_resampling(tmp_path):
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(11025) * 3000).astype(np.int16)
    sf.write(tmp_path / "a.wav", pcm, 11025, subtype="PCM_16")
    assert torch.equal(array_audio(pcm, 11025), load_audio(tmp_path / "a.wav"))  # int16 scaled as libsndfile does
    assert array_audio(pcm, 11025).shape == (resampled_length(11025, 11025),) == (16000,)
    assert torch.equal(array_audio(pcm[None], 16000), torch.from_numpy(pcm.astype(np.float32) / 32768))  # (1, N)
    with pytest.raises(AudioError, match="the array: empty audio after resampling from 48000 Hz"):
        array_audio(np.zeros(1, np.float32), 48000, 1000)
    assert padded_ids(12)[:2] == ["00", "01"] and padded_ids(1) == ["0"]
