"""The moving average of speech probabilities: a plain per-frame mean, the same over any chunking."""

import numpy as np
import pytest

from espnet2_ext.segmentation.smoothing import MovingAverage, moving_average


def plain(values: np.ndarray, half: int) -> np.ndarray:
    return np.array([values[max(0, i - half) : i + half + 1].mean() for i in range(len(values))])


@pytest.mark.parametrize("half", [0, 1, 2, 7])
@pytest.mark.parametrize("length", [0, 1, 3, 50])
def test_is_the_mean_of_each_frames_neighbours(half, length):
    values = np.random.default_rng(length).uniform(size=length)
    np.testing.assert_allclose(moving_average(values, half), plain(values, half), atol=1e-6)


def test_any_chunking_gives_the_same_averages():
    values = np.random.default_rng(0).uniform(size=500)
    stream = MovingAverage(2)
    whole = moving_average(values, 2)
    rng = np.random.default_rng(1)
    pieces, position = [], 0
    while position < len(values):
        size = int(rng.integers(0, 9))
        pieces.append(stream.feed(values[position : position + size]))
        position += size
    assert np.array_equal(np.concatenate([*pieces, stream.finish()]), whole)


def test_a_one_frame_dip_inside_speech_stays_above_a_pause():
    probabilities = np.array([1.0] * 10 + [0.0] + [1.0] * 10 + [0.02] * 6 + [1.0] * 10)
    smoothed = moving_average(probabilities, 2)
    assert smoothed[10] > 0.7 and smoothed[21:27].min() < 0.25 and np.argmin(smoothed) in range(21, 27)
