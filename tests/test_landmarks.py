"""The 68-point helpers and landmark metrics, against values worked out by hand."""
import numpy as np
import pytest

from models.landmarks import FLIP_68, five_from_68
from training.landmark_metrics import cumulative_error, failure_rate, nme


def face(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, (68, 2))


def test_flip_permutation_is_an_involution_and_swaps_the_eyes_and_mouth_corners():
    assert sorted(FLIP_68) == list(range(68)) and (FLIP_68[FLIP_68] == np.arange(68)).all()
    assert FLIP_68[36] == 45 and FLIP_68[39] == 42 and FLIP_68[48] == 54 and FLIP_68[30] == 30
    assert FLIP_68[0] == 16 and FLIP_68[8] == 8 and FLIP_68[17] == 26 and FLIP_68[31] == 35


def test_five_points_from_68():
    p = face()
    five = five_from_68(p)
    assert five.shape == (5, 2)
    assert np.allclose(five[0], p[36:42].mean(0)) and np.allclose(five[1], p[42:48].mean(0))
    assert np.allclose(five[2:], p[[30, 48, 54]])


def test_nme_known_values():
    truth = face()[None].repeat(2, 0)
    truth[:, 36], truth[:, 45] = (10, 50), (60, 50)  # inter-ocular distance 50
    pred = truth.copy()
    pred[0] += (3, 4)  # every point off by 5 px -> 10%
    pred[1, 0] += (0, 68 * 0.5)  # one point off by 34 px -> mean 0.5 px -> 1%
    assert nme(pred, truth) == pytest.approx([10.0, 1.0])
    assert failure_rate(nme(pred, truth), 8.0) == 0.5
    with pytest.raises(ValueError):
        nme(pred[:, :5], truth[:, :5])


def test_cumulative_error_curve():
    grid, share = cumulative_error(np.array([1.0, 2.0, 3.0, 20.0]), max_error=10, num=11)
    assert grid[1] == 1.0 and share[0] == 0.0 and share[1] == 0.25 and share[3] == 0.75 and share[-1] == 0.75
