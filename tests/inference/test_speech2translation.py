"""The Python API on what users really have: long recordings, streams, noise, odd values, many inputs."""

import math

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.inference.audio import AudioError
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs.training_utterances import TrainingUtterances
from espnet2_ext.segmentation import SHAS_MUSTC
from tests.helpers import DECODE_SEARCH


def read(path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


@pytest.fixture(scope="module")
def talk(clips) -> np.ndarray:
    """Eight test clips joined by pauses with a noise floor: a recording longer than the model's maximum."""
    rng = np.random.default_rng(0)
    parts = []
    for path in sorted(clips.values())[:8]:
        parts += [(2.5e-4 * rng.standard_normal(int(rng.uniform(0.2, 0.6) * 16000))).astype(np.float32), read(path)]
    return np.concatenate(parts)


def test_the_segmentation_comes_from_the_packed_training_utterances(packed_trained, trained, cache):
    work, exp, dump = trained
    expected = TrainingUtterances.from_shape_file(work / "stats/train/speech_shape").with_speech_of(dump / "train")
    assert 0 < expected.p50 <= expected.p95 <= expected.max and expected.count == expected.sampled == 24
    assert 0 <= expected.lead < 0.2 and 0.2 < expected.trail < 0.6, "espeak ends each sentence with 0.3 s of silence"
    translator = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, **DECODE_SEARCH)
    options = translator.segmentation
    assert options.max_seconds == pytest.approx(expected.p95, abs=1e-3)
    margins = (options.pad_start_seconds, options.pad_end_seconds)
    assert margins == pytest.approx((expected.lead, expected.trail), abs=1e-3)
    assert options.pause_seconds == pytest.approx(max(expected.pause, 0.064), abs=1e-3)
    explicit = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, max_segment_seconds=7.5)
    assert explicit.segmentation.max_seconds == 7.5
    unknown = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, training_utterances=None)
    assert unknown.segmentation == SHAS_MUSTC


def test_a_stream_gives_what_the_whole_recording_gives(translator, talk):
    whole = translator(talk, 16000)
    assert len(whole.segments) >= 3, "the talk is longer than the maximum: segmented"
    for chunk in (1000, 16000, 70001):
        pieces = (talk[i : i + chunk] for i in range(0, len(talk), chunk))
        streamed = list(translator.translate_stream(pieces, 16000, batch_size=3))
        assert [(s.start, s.end) for s in streamed] == [(s.start, s.end) for s in whole.segments]
        assert [s.nbest[0].token_ids for s in streamed] == [s.nbest[0].token_ids for s in whole.segments]


def test_a_stream_at_another_rate_in_stereo_chunks(translator, talk):
    """44.1 kHz stereo chunks, as a sound card gives them: resampled as one stream, the same segments."""
    import torch
    import torchaudio

    high = torchaudio.functional.resample(torch.from_numpy(talk), 16000, 44100).numpy()
    stereo = np.stack([high, high], axis=1)
    whole = translator(stereo, 44100)
    streamed = list(translator.translate_stream((stereo[i : i + 4410] for i in range(0, len(stereo), 4410)), 44100))
    assert [(s.start, s.end, s.nbest[0].text) for s in streamed] == [
        (s.start, s.end, s.nbest[0].text) for s in whole.segments
    ]
    assert len(whole.segments) == len(translator(talk, 16000).segments)


def test_noise_is_not_translated(translator):
    """Clipped white noise: no speech, an empty translation and a warning, not an invented sentence."""
    noise = np.clip(np.random.default_rng(0).standard_normal(16000 * 3), -1, 1).astype(np.float32)
    result = translator(noise, 16000)
    assert result.text == "" and result.segments == [] and result.error is None
    assert result.warnings == [
        "waveform: no speech found in 3.0 s (no frame reaches the voice-activity threshold 0.5): not translated"
    ]


def test_silence_is_reported_as_silence(translator):
    result = translator(np.zeros(16000, dtype=np.float32), 16000)
    assert result.text == "" and result.warnings == ["waveform: silent (peak -inf dBFS < -60 dBFS): not translated"]


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        ("nan", 16000, r"waveform: 1 samples are NaN or infinite \(the first at 0\.500 s\): not audio"),
        ("all nan", 16000, r"waveform: 16000 samples are NaN or infinite \(the first at 0\.000 s\): not audio"),
        ("inf", 16000, r"waveform: 1 samples are NaN or infinite"),
        ("clip", "16000", r"waveform: the sample rate must be a number of Hz, got '16000'"),
        ("clip", 16000.5, r"waveform: the sample rate must be a whole number of Hz, got 16000.5"),
        ("clip", 0, r"waveform: a sample rate of 0 Hz is below 8000 Hz"),
        ("clip", 1, r"waveform: a sample rate of 1 Hz is below 8000 Hz"),
        ("clip", None, r"waveform: the sample rate must be a number of Hz, got None"),
        ("bytes", 16000, r"waveform: got \d+ bytes, not samples"),
        ("bytes", None, r"waveform: got \d+ bytes, not samples: pass the file's path, or decode it first"),
        ("int16 as float", 16000, r"waveform: samples reach \d+, far outside \[-1, 1\]"),
    ],
)
def test_values_that_are_not_audio_are_named_errors(translator, clips, audio, rate, message):
    samples = read(sorted(clips.values())[0])
    given = {
        "nan": np.where(np.arange(len(samples)) == 8000, np.nan, samples),
        "all nan": np.full(16000, np.nan, dtype=np.float32),
        "inf": np.where(np.arange(len(samples)) == 100, np.inf, samples),
        "clip": samples,
        "bytes": sorted(clips.values())[0].read_bytes(),
        "int16 as float": samples * 32768,
    }[audio]
    with pytest.raises(AudioError, match=f"^{message}"):
        translator(given, rate)


def test_uint8_audio_is_centred(translator, clips):
    """8-bit WAV's convention: unsigned, silence at 128."""
    samples = read(sorted(clips.values())[0])
    as_uint8 = np.clip(np.round(samples * 128 + 128), 0, 255).astype(np.uint8)
    assert translator(as_uint8, 16000).text == translator(as_uint8.astype(np.float32) / 128 - 1, 16000).text


def test_translate_batch_gives_every_item_its_result_or_its_error(translator, clips, tmp_path):
    good = sorted(clips.values())[:2]
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio")
    items = [good[0], (np.full(100, np.nan), 16000), junk, (read(good[1]), 16000), 42, (read(good[1]), 1)]
    results = translator.translate_batch(items, batch_size=2)
    assert [r.error is None for r in results] == [True, False, False, True, False, False]
    assert results[0].text == translator(good[0]).text and results[3].text == translator(good[1]).text
    assert results[1].error.startswith("waveform: 100 samples are NaN")
    assert results[2].error.startswith(f"{junk}: not readable as audio")
    assert results[4].error == "expected a path, a (waveform, sample_rate) pair or a SpeechInput, got int"
    assert "below 8000 Hz" in results[5].error
    assert all(r.segments == [] and r.text == "" for r in results if r.error)


def test_too_short_and_empty_inputs_fail_alone(translator, clips):
    results = translator.translate_batch([(np.zeros(0), 16000), (np.ones(100) * 0.1, 16000), sorted(clips.values())[0]])
    assert results[0].error == "waveform: empty audio (0 samples)"
    assert results[1].error.startswith("waveform: 6 ms of audio gives 0 feature frames; the model needs at least")
    assert results[2].error is None and results[2].text


def test_silence_threshold_and_search_options_are_checked(packed_trained, cache):
    for options, message in (
        (dict(silence_dbfs=3.0), "silence_dbfs must be a level <= 0 dBFS"),
        (dict(silence_dbfs=math.nan), "silence_dbfs must be a level <= 0 dBFS"),
        (dict(maxlen_b=-1), "maxlen_b must be >= 0"),
        (dict(maxlen_a=0.0, maxlen_b=0), "maxlen_a and maxlen_b are both 0"),
        (dict(max_segment_seconds=0.01), "max_seconds must be at least"),
        (dict(vad_threshold=0.0), "threshold must be between 0 and 1"),
    ):
        with pytest.raises(ValueError, match=message):
            Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, **options)
