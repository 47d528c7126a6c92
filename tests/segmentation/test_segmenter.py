"""The stream segmenter: every sentence kept, segments under the maximum, the same for any chunking, bounded memory."""

import numpy as np
import pytest
from conftest import talk

from espnet2_ext.segmentation import SegmentationOptions, StreamSegmenter
from espnet2_ext.segmentation import options as options_module
from espnet2_ext.segmentation.options import FRAME_SAMPLES


def run(segmenter: StreamSegmenter, audio: np.ndarray, chunk: int | None = None, seed: int = 0) -> list:
    segmenter.reset()
    if chunk is None:
        return segmenter.feed(audio) + segmenter.finish()
    rng = np.random.default_rng(seed)
    segments, position = [], 0
    while position < len(audio):
        size = int(rng.integers(1, chunk))
        segments += segmenter.feed(audio[position : position + size])
        position += size
    return segments + segmenter.finish()


@pytest.fixture(scope="module")
def long_talk(sentences):
    """36 sentences (six spoken six times) with pauses of 0.15-0.6 s: about 90 s, longer than a window."""
    rng = np.random.default_rng(3)
    order = [sentences[i] for i in rng.permutation(np.arange(36) % 6)]
    return talk(order, list(rng.uniform(0.15, 0.6, len(order))), noise=0.001)


def test_every_sentence_is_in_a_segment_and_segments_are_short(long_talk):
    audio, spans = long_talk
    options = SegmentationOptions(max_seconds=6.0)
    segments = run(StreamSegmenter(options), audio)
    assert all(s.stop - s.start < 6.0 * 16000 for s in segments)
    assert all(a.stop <= b.start for a, b in zip(segments, segments[1:]))
    for start, stop in spans:  # each sentence's middle lies in a segment: nothing lost
        middle = (start + stop) // 2
        assert any(s.start <= middle < s.stop for s in segments), f"sentence at {start / 16000:.2f} s lost"
    covered = sum(min(stop, s.stop) - max(start, s.start) for start, stop in spans for s in segments
                  if s.start < stop and start < s.stop)
    assert covered / sum(stop - start for start, stop in spans) > 0.95
    assert all(np.array_equal(s.samples, audio[s.start : s.stop]) for s in segments)


def test_cuts_fall_in_pauses(long_talk):
    """With a maximum of two sentences, pDAC cuts between sentences, never inside one."""
    audio, spans = long_talk
    segments = run(StreamSegmenter(SegmentationOptions(max_seconds=6.0)), audio)
    for a, b in zip(segments, segments[1:]):
        cut = (a.stop + b.start) // 2
        inside = [(s, e) for s, e in spans if s + 1600 < cut < e - 1600]  # 0.1 s from either end
        assert not inside, f"cut at {cut / 16000:.2f} s is inside a sentence"


MARGINS = dict(pause_seconds=0.3, pad_start_seconds=0.1, pad_end_seconds=0.35)


@pytest.mark.parametrize("options", [{}, MARGINS], ids=["shas", "pauses and margins"])
@pytest.mark.parametrize("chunk", [700, 16000, 200000])
def test_any_chunking_gives_the_same_segments(long_talk, chunk, options, monkeypatch):
    audio, _ = long_talk
    monkeypatch.setattr(options_module, "_MIN_WINDOW_SECONDS", 20.0)  # several windows
    segmenter = StreamSegmenter(SegmentationOptions(max_seconds=5.0, **options))
    whole = run(segmenter, audio)
    chunked = run(segmenter, audio, chunk=chunk)
    assert [(s.start, s.stop) for s in whole] == [(s.start, s.stop) for s in chunked]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(whole, chunked))


def test_memory_stays_within_the_window(long_talk, monkeypatch):
    """A stream many windows long: the buffer never holds more than a window and a VAD block."""
    audio, _ = long_talk
    monkeypatch.setattr(options_module, "_MIN_WINDOW_SECONDS", 10.0)
    options = SegmentationOptions(max_seconds=2.5)
    segmenter = StreamSegmenter(options)
    segmenter.reset()
    largest = 0
    handed = []
    for start in range(0, len(audio), 4000):
        handed += segmenter.feed(audio[start : start + 4000])
        largest = max(largest, sum(len(c) for c in segmenter._chunks))
    handed += segmenter.finish()
    bound = (options.window_frames + 250) * FRAME_SAMPLES + 4000
    assert options.window_frames * FRAME_SAMPLES < len(audio) / 5, "the stream spans several windows"
    assert largest <= bound, f"buffered {largest} samples, bound {bound}"
    assert all(s.stop - s.start < 2.5 * 16000 for s in handed) and len(handed) >= 30


def test_long_pauses_cut_every_sentence_and_margins_stay_within_half_the_pause(long_talk):
    """Pauses of 0.15-0.6 s (plus espeak's own 0.3 s) are longer than 0.3 s: one segment per sentence."""
    audio, spans = long_talk
    bare = run(StreamSegmenter(SegmentationOptions(max_seconds=6.0, pause_seconds=0.3)), audio)
    padded = run(StreamSegmenter(SegmentationOptions(max_seconds=6.0, **MARGINS)), audio)
    assert len(bare) == len(padded) == len(spans)
    for segment, (start, stop) in zip(bare, spans):
        assert segment.start <= (start + stop) // 2 < segment.stop, "each segment holds its sentence"
    for previous, segment, following in zip([None, *bare[:-1]], bare, [*bare[1:], None]):
        with_margins = padded[bare.index(segment)]
        low = max(segment.start - 1600, 0 if previous is None else (previous.stop + segment.start) // 2)
        high = min(segment.stop + 5600, len(audio) if following is None else (segment.stop + following.start) // 2)
        assert (with_margins.start, with_margins.stop) == (low, high)
        assert np.array_equal(with_margins.samples, audio[low:high])


def test_a_recording_within_the_maximum_is_one_untrimmed_segment(sentences):
    audio, _ = talk(sentences[:2], [0.5, 0.3])
    segments = run(StreamSegmenter(SegmentationOptions(max_seconds=len(audio) / 16000 + 1)), audio)
    assert [(s.start, s.stop) for s in segments] == [(0, len(audio))]


def test_no_speech_gives_no_segments():
    rng = np.random.default_rng(0)
    segmenter = StreamSegmenter(SegmentationOptions(max_seconds=4.0))
    for audio in (np.zeros(16000 * 3, dtype=np.float32), np.zeros(16000 * 70, dtype=np.float32),
                  np.clip(rng.standard_normal(16000 * 20), -1, 1).astype(np.float32)):
        assert run(segmenter, audio) == [] and not segmenter.speech_seen


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_seconds=0.01), "max_seconds must be at least"),
        (dict(max_seconds=float("nan")), "max_seconds must be a finite number"),
        (dict(max_seconds=10, threshold=1.5), "threshold must be between 0 and 1"),
        (dict(max_seconds=10, min_seconds=-1), "min_seconds must be >= 0"),
    ],
)
def test_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        SegmentationOptions(**options)


@pytest.mark.parametrize("max_seconds", [6.0, 300.0])
def test_pauses_of_pause_seconds_separate_segments_whatever_the_maximum(sentences, max_seconds):
    """Three sentences with pauses of 0.8 s: three segments under a 0.5-s pause rule, even where
    the whole recording is shorter than the maximum (SHAS's rule alone gives one piece then)."""
    audio, spans = talk(sentences[:3], [0.3, 0.8, 0.8], noise=0.001)
    options = SegmentationOptions(max_seconds=max_seconds, pause_seconds=0.5)
    segments = run(StreamSegmenter(options), audio)
    assert len(segments) == 3
    for segment, (start, stop) in zip(segments, spans):
        assert segment.start <= start + 1600 and stop - 1600 <= segment.stop
    shas = run(StreamSegmenter(SegmentationOptions(max_seconds=300.0)), audio)  # no pause rule: one clip, as given
    assert [(s.start, s.stop) for s in shas] == [(0, len(audio))]


def test_margins_never_make_a_segment_longer_than_the_maximum(long_talk):
    audio, _ = long_talk
    options = SegmentationOptions(max_seconds=4.0, pad_start_seconds=1.0, pad_end_seconds=1.0)
    segments = run(StreamSegmenter(options), audio)
    assert max(s.stop - s.start for s in segments) == 4 * 16000  # margins cut to fit, no more
    assert all(np.array_equal(s.samples, audio[s.start : s.stop]) for s in segments)
    narrow = run(StreamSegmenter(SegmentationOptions(max_seconds=4.0)), audio)  # the same speech, inside
    assert [(a.start <= b.start, b.stop <= a.stop) for a, b in zip(segments, narrow)] == [(True, True)] * len(narrow)
