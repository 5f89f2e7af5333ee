"""The unit LM vocabulary (lm/vocab.py)."""

from __future__ import annotations

import pytest

from spidrkit.lm.vocab import BOS, EOS, UnitVocab, VocabError, dedup


def test_encode_dedups_and_frames_with_bos_eos():
    v = UnitVocab(k=4)
    assert dedup([3, 3, 1, 1, 1, 3]) == [3, 1, 3]
    assert v.encode([3, 3, 1, 1, 1, 3]) == [BOS, 6, 4, 6, EOS] == [1, 6, 4, 6, 2]
    assert UnitVocab(k=4, dedup=False).encode([3, 3, 1]) == [1, 6, 6, 4, 2]
    assert v.decode([1, 6, 4, 6, 2, 0]) == [3, 1, 3]
    assert v.size == 7


def test_out_of_range_units_and_round_trip(tmp_path):
    with pytest.raises(VocabError, match=r"utt1: units \[4, 9\] outside 0..3"):
        UnitVocab(k=4).encode([0, 4, 9], where="utt1")
    with pytest.raises(VocabError, match="k must be an integer >= 1"):
        UnitVocab(k=0)
    UnitVocab(k=256, dedup=False).save(tmp_path)
    assert UnitVocab.load(tmp_path) == UnitVocab(k=256, dedup=False)
    with pytest.raises(VocabError, match="no vocabulary"):
        UnitVocab.load(tmp_path / "nothing")
