"""Tests for espnet2_ext/utils/fbank.py: the one feature definition of recipe and inference."""

import numpy as np
import pytest
import torch
import torchaudio
from torchaudio.compliance import kaldi

from espnet2_ext.utils.fbank import NUM_MEL_BINS, compute_fbank, num_frames
from espnet2_ext.utils.waveform import mix_to_mono


def noise(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Float32 samples on the int16 grid, as soundfile returns them for a 16-bit wav."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(-8000, 8000, int(round(seconds * sample_rate)), dtype=np.int16)
    return ints.astype(np.float32) / 32768


def test_equals_torchaudio_kaldi_fbank_on_int16_scaled_samples():
    samples = noise(1.3)
    expected = kaldi.fbank(
        torch.from_numpy(samples * 32768).unsqueeze(0),
        num_mel_bins=80,
        frame_length=25.0,
        frame_shift=10.0,
        dither=0.0,
        sample_frequency=16000,
    ).numpy()
    features = compute_fbank(samples, 16000)
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, expected)


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [(1.0, 98), (0.025, 1), (0.0349, 1), (0.035, 2), (2.5, 248), (0.02, 0), (0.0, 0)],
)
def test_frame_count_for_known_durations(seconds: float, frames: int):
    samples = noise(seconds)
    assert compute_fbank(samples, 16000).shape == (frames, NUM_MEL_BINS)
    assert num_frames(len(samples)) == frames


def test_other_sample_rates_are_resampled_to_16k_first():
    samples = noise(1.0, sample_rate=8000)
    resampled = torchaudio.functional.resample(torch.from_numpy(samples), 8000, 16000).numpy()
    features = compute_fbank(samples, 8000)
    assert features.shape == (98, NUM_MEL_BINS)
    np.testing.assert_array_equal(features, compute_fbank(resampled, 16000))


def test_float64_input_gives_float32_features_close_to_float32_input():
    samples = noise(0.5)
    features = compute_fbank(samples.astype(np.float64), 16000)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, compute_fbank(samples, 16000), rtol=1e-5, atol=1e-4)


def test_mix_to_mono_averages_channels_and_keeps_mono():
    stereo = np.stack([np.full(4, 0.5, np.float32), np.full(4, -0.25, np.float32)], axis=1)
    np.testing.assert_allclose(mix_to_mono(stereo), np.full(4, 0.125))
    mono = noise(0.1)
    assert mix_to_mono(mono) is mono
    assert mix_to_mono(mono[:, None]).shape == mono.shape


@pytest.mark.parametrize(
    ("waveform", "message"),
    [
        (np.zeros((1600, 2), np.float32), "mono"),
        (np.zeros(1600, np.int16), "float"),
    ],
)
def test_rejects_multichannel_and_integer_input(waveform: np.ndarray, message: str):
    with pytest.raises(ValueError, match=message):
        compute_fbank(waveform, 16000)
