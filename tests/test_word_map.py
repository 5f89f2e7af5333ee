"""MAP@R by hand on crafted 2-D embeddings, frame slicing, and the full word_map path."""

from __future__ import annotations

import math

import pytest
import torch

from spidrkit.data.corpora.alignments import Interval, count_intervals, read_alignments
from spidrkit.evaluation.metrics.word_map import (
    NoRepeatedWordError,
    frame_span,
    map_at_r,
    segment_embeddings,
    word_map,
    word_map_or_none,
)

# word -> angles (degrees) of its occurrences on the unit circle; cosine similarity ranks by angle gap
ANGLES = {"a1": 0, "a2": 10, "b1": 25, "a3": 45, "b2": 90}
# By hand (R = 2 for 'a', 1 for 'b'):
#   a1: a2(10) b1(25) | a3(45)  -> P = [1, 0]      -> AP = 1/2   (a3 at rank 3 > R does not count)
#   a2: a1(10) b1(15) | a3(35)  -> P = [1, 0]      -> AP = 1/2
#   a3: b1(20) a2(35) | a1(45)  -> P = [0, 1/2]    -> AP = 1/4
#   b1: a2(15)                  -> AP = 0
#   b2: a3(45)                  -> AP = 0
EXPECTED = 100 * (0.5 + 0.5 + 0.25 + 0 + 0) / 5


def _vec(deg: float) -> torch.Tensor:
    return torch.tensor([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


def test_map_at_r_by_hand():
    names = list(ANGLES)
    emb = torch.stack([_vec(ANGLES[n]) for n in names]) * torch.tensor([[1.0], [3.0], [0.5], [2.0], [1.0]])
    labels = [n[0] for n in names]
    assert map_at_r(emb, labels) == pytest.approx(EXPECTED, abs=1e-6)
    assert map_at_r(emb, labels, chunk_size=2) == pytest.approx(EXPECTED, abs=1e-6)
    # perfect retrieval
    assert map_at_r(torch.stack([_vec(0), _vec(1), _vec(90), _vec(91)]), ["x", "x", "y", "y"]) == 100.0
    # a singleton class is a distractor, not a query: 'c' at 5 degrees now beats a2 for a1
    emb2 = torch.cat([emb, _vec(5)[None]])
    # a1: c(5) a2(10) -> P = [0, 1/2] -> 1/4; a2: c(5) a1(10) -> 1/4; a3, b1, b2 unchanged
    assert map_at_r(emb2, [*labels, "c"]) == pytest.approx(100 * (0.25 + 0.25 + 0.25) / 5, abs=1e-6)


def test_frame_span_matches_fastabx_slicing():
    # frames whose centre (i + 0.5) * 20 ms is in [0.10, 0.30] s: 5..14
    assert frame_span(0.10, 0.30, 50, 100) == (5, 15)
    assert frame_span(0.11, 0.13, 50, 100) == (5, 7)  # centres 0.11 and 0.13: both ends are inclusive
    assert frame_span(0.112, 0.118, 50, 100) == (5, 6)  # shorter than a frame: the frame of its midpoint
    assert frame_span(0.10, 0.50, 50, 12) == (5, 12)  # clipped to the available frames
    with pytest.raises(ValueError):
        frame_span(1.0, 1.2, 50, 10)


def test_word_map_end_to_end(tmp_path):
    """Each word occurrence is 5 frames of its crafted vector, separated by noise-free gap frames."""
    rate, frames = 50, 5
    feats, lines = {}, []
    order = list(ANGLES)
    for u, utt in enumerate(["utt1", "utt2"]):
        rows = []
        for j, name in enumerate(order[u::2]):  # utt1: a1 b1 b2, utt2: a2 a3
            start = j * (frames + 2) + 1
            lines.append(f"{utt} {start / rate:.2f} {(start + frames) / rate:.2f} {name[0]} spk{u}")
            rows += [torch.zeros(2)] * (start - len(rows)) + [_vec(ANGLES[name])] * frames
        rows += [torch.zeros(2)] * 3
        feats[utt] = torch.stack(rows)
    lines.append("utt1 0.00 0.02 hapax spk0")  # dropped by min_occurrences=2
    path = tmp_path / "words.txt"
    path.write_text("#utt onset offset word speaker\n" + "\n".join(lines) + "\n")
    assert count_intervals(read_alignments(path)) == 6
    assert word_map(feats, path, frame_rate=rate, progress=False) == pytest.approx(EXPECTED, abs=1e-4)
    # min_occurrences=3 keeps only 'a' -> all its retrievals are correct
    assert word_map(feats, path, min_occurrences=3, frame_rate=rate, progress=False) == pytest.approx(100.0)

    for utt, x in feats.items():
        torch.save(x, tmp_path / f"{utt}.pt")
    segs = read_alignments(path)
    assert word_map(tmp_path, segs, frame_rate=rate, progress=False) == pytest.approx(EXPECTED, abs=1e-4)
    assert word_map_or_none(tmp_path, segs, frame_rate=rate) == pytest.approx(EXPECTED, abs=1e-4)
    with pytest.raises(KeyError):
        word_map({"utt1": feats["utt1"]}, segs, frame_rate=rate, progress=False)
    once = {"utt1": [Interval(0.0, 0.1, "once")]}
    with pytest.raises(NoRepeatedWordError, match="no word occurs 2 times"):
        word_map(feats, once, frame_rate=rate, progress=False)
    with pytest.warns(UserWarning, match="word MAP: no word occurs 2 times or more"):
        assert word_map_or_none(feats, once, frame_rate=rate) is None


def test_segment_embeddings_follow_the_frame_rate():
    """The same interval covers other frames at another rate: frames 5..9 at 50 Hz, 10..19 at 100 Hz."""
    x = torch.arange(40, dtype=torch.float32)[:, None]
    words = {"u": [Interval(0.1, 0.2, "w")]}
    assert segment_embeddings({"u": x}, words, frame_rate=50, progress=False).tolist() == [[7.0]]
    assert segment_embeddings({"u": x}, words, frame_rate=100, progress=False).tolist() == [[14.5]]


def test_frame_span_agrees_with_fastabx_on_random_times():
    import polars as pl
    from fastabx.dataset import item_frontiers

    gen = torch.Generator().manual_seed(0)
    onsets = (torch.randint(0, 500, (300,), generator=gen) / 100).tolist()
    offsets = [o + d for o, d in zip(onsets, (torch.randint(3, 80, (300,), generator=gen) / 100).tolist())]
    df = pl.DataFrame({"onset": [f"{o:.2f}" for o in onsets], "offset": [f"{o:.2f}" for o in offsets]})
    df = df.with_columns(pl.col("onset").str.to_decimal(scale=2), pl.col("offset").str.to_decimal(scale=2))
    start, end, _, _ = item_frontiers(50, "onset", "offset")
    ref = df.select(start, end).rows()
    assert [frame_span(round(a, 2), round(b, 2), 50, 10_000) for a, b in zip(onsets, offsets)] == ref
