"""LiveTranslator: a stream of several sentences, cut at its pauses and translated utterance by utterance."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.inference.audio import AudioError
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.simultaneous.live import LiveTranslator
from espnet2_ext.simultaneous.options import SimulOptions
from espnet2_ext.simultaneous.translator import SimultaneousTranslator

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 16000
GAP = 1.0  # seconds of near-silence between the sentences


@pytest.fixture(scope="module")
def utterance_translator(packed_trained, cache) -> SimultaneousTranslator:
    offline = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, beam_size=2, maxlen_b=20,
                                                 no_repeat_ngram_size=0)
    options = SimulOptions.checked(policy="waitk", waitk=1, segment_factor=2, segment_ms=300, cmvn="prefix",
                                   beam_size=2, maxlen_b=20)
    return SimultaneousTranslator(offline, options)


@pytest.fixture(scope="module")
def stream(clips) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Three test sentences with a second of faint noise before, between and after; their spans (s)."""
    rng = np.random.default_rng(0)
    parts, spans, position = [], [], 0
    for path in sorted(clips.values())[:3]:
        gap = (1e-4 * rng.standard_normal(int(GAP * RATE))).astype(np.float32)
        speech = sf.read(path, dtype="float32")[0]
        parts += [gap, speech]
        spans.append(((position + len(gap)) / RATE, (position + len(gap) + len(speech)) / RATE))
        position += len(gap) + len(speech)
    parts.append((1e-4 * rng.standard_normal(int(GAP * RATE))).astype(np.float32))
    return np.concatenate(parts), spans


def run(live: LiveTranslator, samples: np.ndarray, piece: int) -> list:
    words = []
    for start in range(0, len(samples), piece):
        words += live.push(samples[start : start + piece], RATE)
    return words + live.finish()


def test_each_sentence_is_an_utterance_translated_as_it_would_be_alone(utterance_translator, stream):
    samples, sentences = stream
    live = LiveTranslator(utterance_translator, pause_seconds=0.5, max_seconds=12.0, pad_start_seconds=0.1)
    words = run(live, samples, 1600)
    assert len(live.spans) == 3
    for (start, end), (clip_start, clip_end) in zip(live.spans, sentences):  # clips keep some margin
        assert clip_start - 0.4 <= start <= clip_start + 0.4 and clip_end - 0.4 <= end <= clip_end + GAP
    assert [w.time for w in words] == sorted(w.time for w in words)
    for number, (start, end) in enumerate(live.spans, 1):
        mine = [w for w in words if w.utterance == number]
        assert all(start <= w.time <= end + 1e-9 for w in mine)
        alone = utterance_translator  # the same translator on the utterance's own samples
        alone.reset()
        alone.push(samples[round(start * RATE) : round(end * RATE)])
        alone.finish()
        assert [w.text for w in mine] == [w.text for w in alone.words]
        assert [round(w.time - start, 6) for w in mine] == [round(w.time, 6) for w in alone.words]


def test_how_the_stream_is_cut_into_pushes_changes_nothing(utterance_translator, stream):
    samples, _ = stream
    live = LiveTranslator(utterance_translator, pause_seconds=0.5, max_seconds=12.0, pad_start_seconds=0.1)
    expected = run(live, samples, 4000)
    assert run(live, samples, 160) == expected
    assert run(live, samples, 12345) == expected


def test_a_long_utterance_is_cut_at_the_maximum(utterance_translator, stream):
    samples, _ = stream
    live = LiveTranslator(utterance_translator, pause_seconds=5.0, max_seconds=6.0)
    run(live, samples, 4000)
    assert all(end - start <= 6.0 + 0.3 for start, end in live.spans) and len(live.spans) >= 2


def test_silence_opens_no_utterance(utterance_translator):
    live = LiveTranslator(utterance_translator)
    assert run(live, np.zeros(3 * RATE, dtype=np.float32), 1600) == [] and live.spans == []


@pytest.fixture(scope="module")
def long_stream(clips) -> np.ndarray:
    """The twelve test sentences with 0.8 s of faint noise between them: about 40 s."""
    rng = np.random.default_rng(1)
    parts = []
    for path in sorted(clips.values()):
        parts += [(1e-4 * rng.standard_normal(int(0.8 * RATE))).astype(np.float32), sf.read(path, dtype="float32")[0]]
    return np.concatenate(parts)


def test_one_push_of_the_whole_stream_gives_what_100_ms_pushes_give(utterance_translator, long_stream):
    """Each utterance gets the frames up to where the VAD ends it, not the rest of the push it
    came in: the words do not depend on how the stream is cut."""
    live = LiveTranslator(utterance_translator, pause_seconds=0.5, max_seconds=12.0, pad_start_seconds=0.1)
    pieces = run(live, long_stream, 1600)
    spans = live.spans
    assert len(spans) >= 10 and len(pieces) >= 10
    assert run(live, long_stream, len(long_stream)) == pieces
    assert live.spans == spans


def test_a_push_that_is_not_audio_is_refused_and_the_stream_goes_on(utterance_translator, stream):
    samples, _ = stream
    live = LiveTranslator(utterance_translator, pause_seconds=0.5, max_seconds=12.0, pad_start_seconds=0.1)
    expected = run(live, samples, 4000)
    broken = np.full(4000, 0.1, dtype=np.float32)
    broken[7] = np.nan
    words = []
    for start in range(0, len(samples), 4000):
        if start == 8000:
            with pytest.raises(AudioError, match="push: 1 samples are NaN or infinite"):
                live.push(broken, RATE)
        words += live.push(samples[start : start + 4000], RATE)
    assert words + live.finish() == expected
