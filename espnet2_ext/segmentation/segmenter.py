"""Cutting a stream of 16 kHz audio into speech segments, with bounded memory.

:class:`StreamSegmenter` holds the state (the audio not yet handed out, and its
speech probabilities: Silero's, averaged over ``smoothing_frames``, see
:mod:`~espnet2_ext.segmentation.smoothing`);
:func:`~espnet2_ext.segmentation.divide_and_conquer.divide_and_conquer` makes the
decisions. SHAS runs pDAC over a whole recording at once. Over a stream,
pDAC runs over a window of ``window_frames`` (at least 4 x the maximum segment):
the segments it finds there are handed out, except the last, which may go on past
the window and goes back into the next window with the audio after it. The window
slides to where that last segment starts; audio before it is forgotten, so memory
is bounded by the window whatever the length of the recording, and time is linear
in it. The windows are fixed in frames, so a stream gives the same segments
however its audio is chunked, and a file gives the segments its stream gives.

A segment handed out keeps some of the non-speech around its speech (the
options' margins, never past half-way to the next speech, and shortened where
they would make it longer than the maximum), as the model's training utterances
do. A recording no longer than the maximum is one segment, untrimmed, if any
frame is speech and no pause in it is as long as ``pause_seconds``: a clip that
was cut already (a test set's sentence) is translated as given; pauses that long
separate segments whatever the lengths.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from espnet2_ext.segmentation.divide_and_conquer import between_pauses, divide_and_conquer
from espnet2_ext.segmentation.options import FRAME_SAMPLES, SAMPLE_RATE, SegmentationOptions
from espnet2_ext.segmentation.smoothing import MovingAverage
from espnet2_ext.segmentation.voice_activity import SpeechProbability

__all__ = ["Segment", "StreamSegmenter"]

class Segment(NamedTuple):
    """A stretch of the stream: samples ``[start, stop)`` at 16 kHz and their audio."""

    start: int
    stop: int
    samples: np.ndarray

    @property
    def span(self) -> tuple[float, float]:
        """Start and end in seconds."""
        return self.start / SAMPLE_RATE, self.stop / SAMPLE_RATE


class StreamSegmenter:
    """Hands out the speech segments of a 16 kHz mono stream as they are decided.

    Example::

        segmenter = StreamSegmenter(SegmentationOptions(max_seconds=18))
        for chunk in chunks:
            for segment in segmenter.feed(chunk):
                translate(segment.samples)
        for segment in segmenter.finish():      # the rest
            translate(segment.samples)
        segmenter.reset()                       # before another stream
    """

    def __init__(self, options: SegmentationOptions, vad: SpeechProbability | None = None):
        self.options = options
        self.vad = vad if vad is not None else SpeechProbability()
        self._smoothing = MovingAverage(options.smoothing_frames // 2)
        self._pad_start = int(round(options.pad_start_seconds * SAMPLE_RATE))
        self._pad_end = int(round(options.pad_end_seconds * SAMPLE_RATE))
        self._max_samples = int(options.max_seconds * SAMPLE_RATE)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self.vad.reset()
        self._smoothing.reset()
        self._origin = 0  # the frame the probabilities start at
        self._audio_start = 0  # the sample the audio starts at (a margin before the origin)
        self._chunks: list[np.ndarray] = []  # the audio from there on, as it came (joined when needed)
        self._previous_stop: int | None = None  # the frame the last segment handed out ended at
        self._probabilities = np.zeros(0, dtype=np.float32)
        self.samples_seen = 0
        self.speech_seen = False  # whether any frame so far was speech (for "no speech" reports)

    def feed(self, samples: np.ndarray) -> list[Segment]:
        """Take the next samples (16 kHz, mono, float); return the segments decided so far."""
        samples = np.asarray(samples, dtype=np.float32)
        self.samples_seen += len(samples)
        self._chunks.append(samples)
        self._add(self._smoothing.feed(self.vad.feed(samples)))
        segments = []
        while len(self._probabilities) >= self.options.window_frames:
            segments += self._decide(self.options.window_frames)
        return segments

    def finish(self) -> list[Segment]:
        """The remaining segments, once the stream has ended. ``speech_seen`` and
        ``samples_seen`` then describe the whole stream; :meth:`reset` starts another."""
        self._add(np.concatenate([self._smoothing.feed(self.vad.finish()), self._smoothing.finish()]))
        if self.samples_seen <= self._max_samples and not self._long_pause():  # no window was decided yet
            return [Segment(0, self.samples_seen, self._audio())] if self.speech_seen else []
        return self._decide(len(self._probabilities), final=True)

    def _long_pause(self) -> bool:
        """Whether the buffered speech holds a pause of ``pause_seconds`` (which always separates)."""
        speech = self._probabilities >= self.options.threshold
        return len(between_pauses(speech, self.options.pause_frames)) > 1

    def _add(self, probabilities: np.ndarray) -> None:
        self._probabilities = np.concatenate([self._probabilities, probabilities])
        self.speech_seen |= bool(np.any(probabilities >= self.options.threshold))

    def _decide(self, frames: int, final: bool = False) -> list[Segment]:
        """pDAC over the first ``frames`` of the buffer; hand out its segments but the last
        (unless ``final``, or the last ends more than a maximum before the window's end),
        and slide the buffers to the first segment kept."""
        options = self.options
        found = divide_and_conquer(
            self._probabilities[:frames], options.max_frames, options.min_frames, options.threshold,
            options.pause_frames,
        )
        done = found if final or (found and found[-1][1] <= frames - options.max_frames) else found[:-1]
        if not done and found and found[0][0] == 0:  # no progress possible: the window is one long segment
            done = found
        found = [(self._origin + start, self._origin + stop) for start, stop in found]  # absolute frames
        audio = self._audio()
        segments = []
        for i, (start, stop) in enumerate(found[: len(done)]):
            after = found[i + 1][0] if i + 1 < len(found) else None if final else self._origin + frames
            segments.append(self._segment(audio, start, stop, self._previous_stop, after))
            self._previous_stop = stop
        keep_from = found[len(done)][0] - self._origin if len(done) < len(found) else frames
        self._origin += keep_from
        self._probabilities = self._probabilities[keep_from:]
        keep_audio = max(self._audio_start, self._origin * FRAME_SAMPLES - self._pad_start)  # the next left margin
        self._chunks = [audio[keep_audio - self._audio_start :]]
        self._audio_start = keep_audio
        return segments

    def _audio(self) -> np.ndarray:
        """The buffered audio as one array (kept so, until more comes)."""
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)]
        return self._chunks[0]

    def _segment(self, audio: np.ndarray, start: int, stop: int, before: int | None, after: int | None) -> Segment:
        """The segment of frames ``[start, stop)`` with its margins: never past half-way to the
        speech before (ending at frame ``before``) and after (starting at frame ``after``), nor
        past the audio's ends; both shortened in proportion where they would make the segment
        longer than the maximum (pDAC keeps the speech under it)."""
        first = start * FRAME_SAMPLES - self._pad_start
        if before is not None:
            first = max(first, (before + start) * FRAME_SAMPLES // 2)
        last = stop * FRAME_SAMPLES + self._pad_end
        if after is not None:
            last = min(last, (stop + after) * FRAME_SAMPLES // 2)
        first, last = max(first, self._audio_start), min(last, self.samples_seen)
        excess = last - first - self._max_samples  # less than the margins: pDAC's speech is shorter
        if excess > 0:
            lead, tail = start * FRAME_SAMPLES - first, max(last - stop * FRAME_SAMPLES, 0)
            cut = excess * lead // (lead + tail)
            first, last = first + cut, last - (excess - cut)
        return Segment(first, last, audio[first - self._audio_start : last - self._audio_start].copy())
