"""Silero VAD's probabilities, computed a block at a time, against silero's own frame-by-frame loop."""

import numpy as np
import pytest
import silero_vad
import torch

from espnet2_ext.segmentation.options import FRAME_SAMPLES
from espnet2_ext.segmentation.voice_activity import SpeechProbability


def silero_loop(samples: np.ndarray) -> np.ndarray:
    """What silero's README does: its model called on each 512-sample frame in turn (last one zero-padded)."""
    model = silero_vad.load_silero_vad()
    model.reset_states()
    audio = torch.from_numpy(samples)
    probabilities = []
    for start in range(0, len(audio), FRAME_SAMPLES):
        frame = audio[start : start + FRAME_SAMPLES]
        frame = torch.nn.functional.pad(frame, (0, FRAME_SAMPLES - len(frame)))
        probabilities.append(model(frame, 16000).item())
    return np.array(probabilities)


@pytest.fixture(scope="module")
def audio(sentences) -> np.ndarray:
    """Speech, a pause, speech, then noise: 12 s, not a whole number of frames."""
    rng = np.random.default_rng(1)
    noise = (0.05 * rng.standard_normal(16000 * 2)).astype(np.float32)
    pause = np.zeros(8000, dtype=np.float32)
    joined = np.concatenate([sentences[0], pause, sentences[1], pause, sentences[2], noise, sentences[3]])
    return joined[: len(joined) - 100]


def test_block_computation_is_silero_s_own(audio):
    threads = torch.get_num_threads()
    ours = np.concatenate([(vad := SpeechProbability()).feed(audio), vad.finish()])
    expected = silero_loop(audio)
    assert torch.get_num_threads() == threads, "importing silero_vad must not change torch's threads"
    assert len(ours) == len(expected) == -(-len(audio) // FRAME_SAMPLES)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert expected.max() > 0.9 and expected.min() < 0.1, "the audio holds speech and non-speech"


def test_any_chunking_gives_the_same_probabilities(audio):
    vad = SpeechProbability()
    whole = np.concatenate([vad.feed(audio), vad.finish()])
    rng = np.random.default_rng(0)
    pieces, position = [], 0
    while position < len(audio):
        size = int(rng.integers(1, 30000))
        pieces.append(vad.feed(audio[position : position + size]))
        position += size
    chunked = np.concatenate([*pieces, vad.finish()])
    assert np.array_equal(whole, chunked)


def test_finish_resets_for_the_next_stream(audio):
    vad = SpeechProbability()
    first = np.concatenate([vad.feed(audio), vad.finish()])
    second = np.concatenate([vad.feed(audio), vad.finish()])
    assert np.array_equal(first, second)
    assert len(vad.finish()) == 0
