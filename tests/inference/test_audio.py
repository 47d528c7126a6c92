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


def speech_like(seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    """A tone gated on and off, so that lossy codecs have something to code."""
    samples = tone(seconds, rate)
    return samples * (np.arange(len(samples)) // (rate // 5) % 2).astype(np.float32)


# (extension, soundfile format, subtype, sample rate)
FORMATS = {
    "wav": ("WAV", "PCM_16", 16000),
    "float wav": ("WAV", "FLOAT", 16000),
    "aiff": ("AIFF", "PCM_16", 16000),
    "flac": ("FLAC", "PCM_16", 16000),
    "mp3": ("MP3", "MPEG_LAYER_III", 16000),
    "ogg": ("OGG", "VORBIS", 16000),
    "opus": ("OGG", "OPUS", 48000),
}
EXTENSIONS = {"float wav": "wav", "opus": "opus"}


def write_format(tmp_path, name: str):
    fmt, subtype, rate = FORMATS[name]
    path = tmp_path / f"full.{EXTENSIONS.get(name, name)}"
    sf.write(path, speech_like(2.0, rate), rate, format=fmt, subtype=subtype)
    return path


@pytest.mark.parametrize("keep", [0.5, 0.9])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_audio_with_its_end_cut_is_refused_not_read_in_part(tmp_path, name, keep):
    full = write_format(tmp_path, name)
    data = full.read_bytes()
    cut = full.with_name(f"cut{full.suffix}")
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(AudioError, match=f"^{cut}: truncated"):
        read_audio(cut)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_complete_audio_is_not_called_truncated(tmp_path, name):
    samples, rate = read_audio(write_format(tmp_path, name))
    assert rate == FORMATS[name][2] and abs(len(samples) - 2 * rate) < 0.1 * rate


def test_mp3_without_a_length_header_is_not_called_truncated(tmp_path):
    """Without LAME's Xing/Info frame (the first), libsndfile estimates an MP3's length from its size."""
    data = write_format(tmp_path, "mp3").read_bytes()
    assert b"Xing" in data[:64] or b"Info" in data[:64]
    untagged = tmp_path / "untagged.mp3"
    untagged.write_bytes(data[data.find(data[:2], 4) :])  # from the second frame header on
    assert sf.info(untagged).frames > 3 * 32000, "the estimate is far too long"
    samples, rate = read_audio(untagged)
    assert rate == 16000 and abs(len(samples) - 2 * rate) < 0.1 * rate


def test_wav_streamed_with_an_unknown_length_is_read_whole(tmp_path):
    """Writers that cannot seek back leave the data size 0 or 0xFFFFFFFF: no length declared."""
    path = write_format(tmp_path, "wav")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert len(read_audio(path)[0]) == 32000


def test_headerless_raw_audio_needs_its_sample_rate(tmp_path):
    samples = (tone(0.5) * 32767).astype("<i2")
    path = tmp_path / "speech.raw"
    path.write_bytes(samples.tobytes())
    with pytest.raises(AudioError, match=f"^{path}: headerless audio: give its sample rate"):
        read_audio(path)
    read, rate = read_audio(path, raw_sample_rate=8000)
    assert rate == 8000 and np.array_equal(read, samples / np.float32(32768))
    with pytest.raises(ValueError, match="a sample rate is given only for headerless audio"):
        read_audio(write_format(tmp_path, "wav"), raw_sample_rate=8000)
