"""The stream resampler gives what torchaudio's resample gives on the whole, whatever the chunks."""

import numpy as np
import pytest
import torch
import torchaudio

from espnet2_ext.utils.fbank import resample
from espnet2_ext.utils.resampling import StreamResampler


def chunked(resampler: StreamResampler, samples: np.ndarray, largest: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out, position = [], 0
    while position < len(samples):
        size = int(rng.integers(1, largest))
        out.append(resampler.feed(samples[position : position + size]))
        position += size
    return np.concatenate([*out, resampler.finish()])


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 32000])
@pytest.mark.parametrize("seconds", [0.0001, 0.3, 2.7])
def test_matches_torchaudio_and_ignores_chunking(rate, seconds):
    samples = (0.1 * np.random.default_rng(rate).standard_normal(max(1, int(rate * seconds)))).astype(np.float32)
    expected = torchaudio.functional.resample(torch.from_numpy(samples), rate, 16000).numpy()
    resampler = StreamResampler(rate, 16000)
    whole = np.concatenate([resampler.feed(samples), resampler.finish()])
    assert len(whole) == len(expected)
    np.testing.assert_allclose(whole, expected, atol=1e-6)
    for seed, largest in ((0, 50), (1, 5000), (2, 100000)):
        assert np.array_equal(chunked(resampler, samples, largest, seed), whole)
    assert np.array_equal(resample(samples, rate), whole), "fbank's resample is the stream's"


def test_equal_rates_pass_samples_through():
    resampler = StreamResampler(16000, 16000)
    samples = np.arange(10, dtype=np.float32)
    assert np.array_equal(resampler.feed(samples), samples) and len(resampler.finish()) == 0


def test_refuses_rates_that_are_not_positive():
    with pytest.raises(ValueError, match="sample rates must be > 0"):
        StreamResampler(0, 16000)
