"""Reading user audio and cutting long audio at pauses."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.inference.audio import AudioError, peak_dbfs, read_audio, split_at_pauses


def tone(seconds: float, rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_read_audio_mixes_channels_down_and_keeps_the_rate(tmp_path):
    left, right = tone(0.5, 22050), tone(0.5, 22050, amplitude=0.1)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), 22050, subtype="PCM_24")
    samples, rate = read_audio(path)
    assert rate == 22050 and samples.dtype == np.float32 and samples.shape == left.shape
    np.testing.assert_allclose(samples, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (b"RIFF but not really", "not readable as audio")],
    ids=["missing", "junk"],
)
def test_unreadable_audio_names_the_file(tmp_path, content, message):
    path = tmp_path / "input.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=f"^{path}: {message}"):
        read_audio(path)


def test_peak_dbfs():
    assert peak_dbfs(np.zeros(10)) == float("-inf") and peak_dbfs(np.zeros(0)) == float("-inf")
    assert peak_dbfs(np.array([0.0, -0.1, 0.01])) == pytest.approx(-20.0)


def test_audio_within_the_limit_is_one_segment():
    assert split_at_pauses(tone(3.0), 16000, max_seconds=3.0) == [(0, 48000)]


def test_long_audio_is_cut_in_its_pauses():
    rate, gap = 16000, np.zeros(8000, dtype=np.float32)
    pieces = [tone(s) for s in (2.2, 1.7, 2.6, 1.1, 2.0)]
    audio = np.concatenate([p for piece in pieces for p in (piece, gap)][:-1])
    gaps, position = [], 0
    for piece in pieces[:-1]:
        position += len(piece)
        gaps.append((position, position + len(gap)))
        position += len(gap)
    ranges = split_at_pauses(audio, rate, max_seconds=4.0)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(audio)
    assert all(stop == start for (_, stop), (start, _) in zip(ranges, ranges[1:])), "contiguous"
    assert len(ranges) >= 2 and all(2.0 * rate <= stop - start <= 4.0 * rate for start, stop in ranges[:-1])
    for _, cut in ranges[:-1]:
        assert any(low <= cut < high for low, high in gaps), f"cut at {cut / rate:.2f} s is not in a pause"
