import numpy as np
import pytest

from spidrkit.models.masking import sample_mask


def test_equal_counts_and_shape():
    m = sample_mask(8, 300, rng=1)
    assert m.shape == (8, 300) and m.dtype.__repr__() == "torch.bool"
    counts = m.sum(1)
    assert (counts == counts[0]).all()


@pytest.mark.parametrize("n,expected", [(49, 0.476), (250, 0.521), (675, 0.540), (1000, 0.543)])
def test_masked_fraction_matches_reference_sampler(n, expected):
    # The reference sampler, measured on batches of 4 rows: 47.6 % masked at 49 frames, 52.1 % at 250,
    # 54.0 % at 675 (13.5 s), 54.3 % at 1000. The bound at 675 frames is [0.40, 0.56].
    rng = np.random.default_rng(0)
    frac = np.mean([sample_mask(4, n, rng=rng).float().mean().item() for _ in range(300)])
    assert abs(frac - expected) < 0.012
    if n == 675:
        assert 0.40 <= frac <= 0.56


def test_spans_are_runs_of_ten_and_seeded():
    a = sample_mask(1, 675, rng=3)
    b = sample_mask(1, 675, rng=3)
    assert (a == b).all()
    # every maximal run of masked frames is at least one span long
    row = a[0].numpy().astype(int)
    edges = np.flatnonzero(np.diff(np.r_[0, row, 0]))
    runs = edges[1::2] - edges[::2]
    assert runs.min() >= 10 and row.sum() == runs.sum()


def test_min_masks_and_tiny_inputs():
    m = sample_mask(3, 12, prob=0.0, length=10, min_masks=2, rng=0)
    assert (m.sum(1) >= 10).all()
    with pytest.raises(ValueError):
        sample_mask(1, 0)
