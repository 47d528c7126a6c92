"""Reading user audio, in blocks, and refusing samples that would give a wrong translation silently."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.inference.audio import (
    AudioError,
    as_waveform,
    check_sample_rate,
    check_samples,
    open_audio,
    peak_dbfs,
    read_audio,
)


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


def test_a_file_is_read_in_blocks_that_join_to_the_whole(tmp_path, monkeypatch):
    from espnet2_ext.inference import audio

    monkeypatch.setattr(audio, "_READ_BLOCK_FRAMES", 1000)
    samples = tone(0.35, 22050)
    path = tmp_path / "tone.flac"
    sf.write(path, np.stack([samples, samples], axis=1), 22050)
    opened = open_audio(path)
    blocks = list(opened.blocks)
    assert opened.sample_rate == 22050 and [len(b) for b in blocks[:-1]] == [1000] * (len(blocks) - 1)
    np.testing.assert_allclose(np.concatenate(blocks), samples, atol=1e-4)


@pytest.mark.parametrize(
    "samples, expected",
    [
        (np.array([0, 128, 255], dtype=np.uint8), [-1.0, 0.0, 127 / 128]),
        (np.array([0, 32768, 65535], dtype=np.uint16), [-1.0, 0.0, 32767 / 32768]),
        (np.array([-32768, 0, 16384], dtype=np.int16), [-1.0, 0.0, 0.5]),
        (np.array([0.25, -0.5], dtype=np.float16), [0.25, -0.5]),
        ([0.1, 0.2], [0.1, 0.2]),
    ],
    ids=["uint8 centred on 128", "uint16", "int16", "float16", "list"],
)
def test_integer_samples_are_scaled_and_unsigned_ones_centred(samples, expected):
    waveform = as_waveform(samples, "clip")
    assert waveform.dtype == np.float32
    np.testing.assert_allclose(waveform, expected, atol=1e-6)


@pytest.mark.parametrize(
    "audio, message",
    [
        (b"RIFF....WAVEfmt ", "clip: got 16 bytes, not samples: pass the file's path, or decode it first"),
        (np.array([True, False]), "clip: expected float or integer samples, got dtype bool"),
        (np.zeros((2, 2, 2)), r"clip: expected a waveform \(samples,\) or \(samples, channels\), got shape"),
    ],
    ids=["bytes", "bool", "3-d"],
)
def test_what_is_not_a_waveform_is_refused_naming_the_input(audio, message):
    with pytest.raises(AudioError, match=f"^{message}"):
        as_waveform(audio, "clip")


@pytest.mark.parametrize(
    "rate, message",
    [
        ("16000", "the sample rate must be a number of Hz, got '16000'"),
        (True, "the sample rate must be a number of Hz, got True"),
        (44100.5, "the sample rate must be a whole number of Hz, got 44100.5"),
        (float("nan"), "the sample rate must be a whole number of Hz, got nan"),
        (0, "a sample rate of 0 Hz is below 8000 Hz, too low for speech"),
        (1, "a sample rate of 1 Hz is below 8000 Hz, too low for speech"),
        (None, "the sample rate must be a number of Hz, got None"),
    ],
)
def test_sample_rates_that_are_no_rate_of_speech_are_refused(rate, message):
    with pytest.raises(AudioError, match=f"^clip: {message}"):
        check_sample_rate(rate, "clip")


def test_whole_float_and_numpy_sample_rates_are_accepted():
    assert check_sample_rate(16000.0, "clip") == 16000 and check_sample_rate(np.int64(8000), "clip") == 8000


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_samples_are_refused_with_their_time(bad):
    samples = tone(1.0)
    samples[8000] = bad
    with pytest.raises(AudioError, match=r"^clip: 1 samples are NaN or infinite \(the first at 1\.500 s\): not audio"):
        check_samples(samples, "clip", 16000, offset=16000)


def test_float_samples_far_outside_the_unit_range_are_refused():
    check_samples(tone(0.1) * 1.5, "clip", 16000)  # clipping headroom is fine
    with pytest.raises(AudioError, match=r"^clip: samples reach 16384, far outside \[-1, 1\]"):
        check_samples(tone(0.1) * 32768, "clip", 16000)


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


def test_what_the_mp3_decoder_prints_itself_is_held_back(tmp_path, capfd):
    """libmpg123 writes "Note: Illegal Audio-MPEG-Header ..." to the process's stderr itself;
    the reader keeps it off the terminal, so that a damaged file gives only our message."""
    path = write_format(tmp_path, "mp3")
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 400] = bytes([0x00, 0xFF]) * 200
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=f"^{damaged}: truncated"):
        read_audio(damaged)
    assert capfd.readouterr().err == ""
