import math

import numpy as np
import pytest
import torch

from spidrkit.models.masking import sample_mask


def test_equal_counts_and_shape():
    m = sample_mask(8, 300, rng=1)
    assert m.shape == (8, 300) and m.dtype == torch.bool
    counts = m.sum(1)
    assert (counts == counts[0]).all()


@pytest.mark.parametrize("n,expected", [(49, 0.476), (250, 0.521), (675, 0.540), (1000, 0.543)])
def test_masked_fraction_matches_reference_sampler(n, expected):
    # The reference sampler, measured on batches of 4 rows: 47.6 % masked at 49 frames, 52.1 % at 250,
    # 54.0 % at 675 (13.5 s), 54.3 % at 1000 (docs/fidelity.md: the paper's ~43 % is not the release's).
    rng = np.random.default_rng(0)
    frac = np.mean([sample_mask(4, n, rng=rng).float().mean().item() for _ in range(300)])
    assert abs(frac - expected) < 0.012


def single_row_fraction(n: int, prob: float = 0.8, length: int = 10, min_masks: int = 2) -> float:
    """The exact expected masked fraction of one row under the procedure of the module's docstring:
    k = int(prob * n / length + U) spans (at least min_masks), starts drawn without replacement among the first
    m = n - length frames. Frame j stays unmasked iff none of the c_j starts whose span covers it is drawn,
    with probability C(m - c_j, k) / C(m, k)."""
    m, x = n - length, prob * n / length
    covers = [min(j, m - 1) - max(j - length + 1, 0) + 1 for j in range(n)]
    unmasked = 0.0
    for k, weight in ((math.floor(x), 1 - x % 1), (math.floor(x) + 1, x % 1)):
        k = min(max(k, min_masks), m)
        unmasked += weight * np.mean([math.comb(m - c, k) / math.comb(m, k) for c in covers])
    return 1 - unmasked


@pytest.mark.parametrize("n", [123, 250, 675])
def test_one_row_masks_the_exact_expected_fraction(n):
    # one row has no equal-count subsampling: 56.6 % at 675 frames where batches of 4 mask 54.0 %
    rng = np.random.default_rng(0)
    frac = np.mean([sample_mask(1, n, rng=rng).float().mean().item() for _ in range(400)])
    assert frac == pytest.approx(single_row_fraction(n), abs=0.008)


def test_spans_are_runs_of_ten_and_seeded():
    a = sample_mask(1, 675, rng=3)
    b = sample_mask(1, 675, rng=3)
    assert (a == b).all()
    # every maximal run of masked frames is at least one span long
    row = a[0].numpy().astype(int)
    edges = np.flatnonzero(np.diff(np.r_[0, row, 0]))
    runs = edges[1::2] - edges[::2]
    assert runs.min() >= 10


def test_min_masks_and_tiny_inputs():
    # prob 0: the 2 spans of min_masks start at frames 0 and 1 (the only 12 - 10 starts): frames 0-10 masked
    m = sample_mask(3, 12, prob=0.0, length=10, min_masks=2, rng=0)
    assert m[:, :11].all() and not m[:, 11:].any()
    with pytest.raises(ValueError):
        sample_mask(1, 0)
