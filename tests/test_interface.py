"""The encoder interface (models/interface.py) and the model's geometry."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.config import SAMPLE_RATE, ModelConfig, load_config
from spidrkit.models.interface import SpeechEncoder
from spidrkit.models.spidr import SpidR

SMALL = ["model.conv_dim=32", "model.dim=64", "model.num_heads=2", "model.ffn_dim=128", "model.num_layers=3",
         "model.num_codebooks=2"]


@pytest.fixture(scope="module")
def model() -> SpidR:
    torch.manual_seed(0)
    return SpidR(load_config("tiny", SMALL).model).eval()


def test_spidr_is_a_speech_encoder(model):
    assert isinstance(model, SpeechEncoder)
    assert (model.sample_rate, model.frame_rate, model.num_layers, model.dim) == (16000, 50.0, 3, 64)
    assert model.input_normalization == "standardize"


def test_the_frame_rate_is_the_frames_a_second_of_audio_adds(model):
    """frame_rate against the encoder's output: two seconds of audio give frame_rate more frames than one."""
    with torch.inference_mode():
        frames = [model.layer_outputs(torch.randn(seconds * SAMPLE_RATE), layers=[1])[1].shape[-2]
                  for seconds in (1, 2)]
    assert frames == [49, 99]  # floor((L - 400) / 320) + 1
    assert frames[1] - frames[0] == model.frame_rate == SAMPLE_RATE / math.prod(model.cfg.conv_strides)
    assert ModelConfig().frame_rate == model.frame_rate  # BASE has the same strides


def test_geometry_follows_the_strides():
    cfg = ModelConfig(conv_kernels=(10, 3, 3), conv_strides=(5, 2, 2))  # stride 20: 800 frames per second
    assert cfg.frame_stride == 20 and cfg.frame_rate == 800.0
    # receptive field 10 + 2*5 + 2*10 = 40 samples; frames of L samples: floor((L - 40) / 20) + 1
    model = SpidR(ModelConfig(conv_dim=8, conv_kernels=(10, 3, 3), conv_strides=(5, 2, 2), dim=64, num_heads=1,
                              ffn_dim=64, num_layers=2, num_codebooks=1, codebook_size=4))
    assert model.min_samples == 40
    assert [int(model.num_frames(n)) for n in (39, 40, 59, 60, 1000)] == [0, 1, 1, 2, 49]


def test_layer_outputs_have_num_frames_frames(model):
    wav = torch.randn(2, 8000)
    out = model.layer_outputs(wav, torch.tensor([8000, 5000]), layers=[1, 3])
    assert sorted(out) == [1, 3]
    assert out[3].shape == (2, int(model.num_frames(8000)), 64) == (2, 24, 64)
    # the shorter file's frames past num_frames(5000) = 15 are padding (zeros)
    assert int(model.num_frames(5000)) == 15
    assert out[3][1, 15:].abs().sum() == 0 and out[3][1, :15].abs().sum() > 0
    with pytest.raises(ValueError, match="at least 400 samples"):
        model.layer_outputs(torch.randn(model.min_samples - 1))
