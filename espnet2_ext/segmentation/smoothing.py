"""A centred moving average over a stream of speech probabilities.

Silero's probabilities dip to nearly 0 for single frames inside speech (a stop
consonant, a short gap between words) while a pause between sentences decays to
only ~0.02: pDAC, which splits at the least speech-like frame, would cut words
apart. Averaged over 5 frames (160 ms), a one-frame dip inside speech stays near
0.8 and a pause stays near 0, so splits fall in pauses, as with SHAS's own
classifier, whose probabilities are smooth. At the ends the average is over the
frames there are. The stream gives what the whole sequence gives, however chunked.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MovingAverage", "moving_average"]


def moving_average(values: np.ndarray, half_width: int) -> np.ndarray:
    """Each value's mean with its ``half_width`` neighbours on each side (fewer at the ends)."""
    stream = MovingAverage(half_width)
    return np.concatenate([stream.feed(values), stream.finish()])


class MovingAverage:
    """:func:`moving_average` over a stream: :meth:`feed` returns the frames whose right
    neighbours have come, :meth:`finish` the rest; then ready for another stream."""

    def __init__(self, half_width: int):
        if half_width < 0:
            raise ValueError(f"half_width must be >= 0, got {half_width}")
        self.half_width = half_width
        self.reset()

    def reset(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float64)  # values from frame self._start on
        self._start = 0  # the buffer's first frame
        self._next = 0  # the first frame not averaged yet

    def feed(self, values: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, np.asarray(values, dtype=np.float64)])
        return self._average(self._start + len(self._buffer) - self.half_width, end=False)

    def finish(self) -> np.ndarray:
        averaged = self._average(self._start + len(self._buffer), end=True)
        self.reset()
        return averaged

    def _average(self, stop: int, end: bool) -> np.ndarray:
        """Frames ``[self._next, stop)``; windows are cut at the stream's start and, if ``end``, its end."""
        frames = np.arange(self._next, max(self._next, stop))
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        total = self._start + len(self._buffer)
        low = np.maximum(frames - self.half_width, 0) - self._start
        high = (np.minimum(frames + self.half_width + 1, total) if end else frames + self.half_width + 1) - self._start
        sums = np.concatenate([[0.0], np.cumsum(self._buffer)])
        averaged = (sums[high] - sums[low]) / (high - low)
        self._next = int(frames[-1]) + 1
        keep_from = max(self._next - self.half_width, 0)
        self._buffer = self._buffer[keep_from - self._start :]
        self._start = keep_from
        return averaged.astype(np.float32)
