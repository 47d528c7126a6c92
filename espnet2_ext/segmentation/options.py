"""How speech is segmented: pDAC's settings and the VAD's frame. Numpy only, so that
programs can check their options before torch loads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FRAME_SAMPLES", "FRAME_SECONDS", "SAMPLE_RATE", "SHAS_MUSTC", "SegmentationOptions"]

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # Silero VAD's window at 16 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
_WINDOW_MAXIMA = 4  # pDAC's window over a stream, in maximum segment lengths
_MIN_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class SegmentationOptions:
    """pDAC's settings, in seconds and probability.

    Args:
        max_seconds: segments are shorter than this (SHAS's ``-max``).
        min_seconds: a split leaves both sides longer than this (SHAS's ``-min``).
        threshold: frames whose speech probability is below it are not speech (SHAS's ``-thr``).
        pause_seconds: pauses at least this long are cut first, whatever the lengths
            (None: never, as SHAS; see :mod:`~espnet2_ext.segmentation.divide_and_conquer`).
        pad_start_seconds, pad_end_seconds: how much of the non-speech before and after
            its speech a segment keeps (never past half-way to its neighbours), as the
            training utterances do: a model translates segments cut as its own were best.
        smoothing_frames: Silero's probabilities are averaged over this many frames (odd;
            1: not at all) before pDAC, so that it splits in pauses, not in one-frame dips
            inside words (see :mod:`~espnet2_ext.segmentation.smoothing`).
    """

    max_seconds: float
    min_seconds: float = 0.2
    threshold: float = 0.5
    pause_seconds: float | None = None
    pad_start_seconds: float = 0.0
    pad_end_seconds: float = 0.0
    smoothing_frames: int = 5

    def __post_init__(self) -> None:
        for name in ("max_seconds", "min_seconds", "threshold", "pad_start_seconds", "pad_end_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("pad_start_seconds", "pad_end_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name):g}")
        if self.pause_seconds is not None and not (np.isfinite(self.pause_seconds) and self.pause_seconds > 0):
            raise ValueError(f"pause_seconds must be > 0 (or None: no cut at pauses), got {self.pause_seconds!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {self.threshold:g}")
        if self.smoothing_frames < 1 or self.smoothing_frames % 2 == 0:
            raise ValueError(f"smoothing_frames must be odd and >= 1, got {self.smoothing_frames}")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds:g}")
        shortest = 2 * self.min_seconds + 2 * FRAME_SECONDS
        if self.max_seconds < shortest:
            raise ValueError(
                f"max_seconds must be at least 2 * min_seconds + 2 frames of {FRAME_SECONDS * 1000:.0f} ms "
                f"({shortest:g} s), got {self.max_seconds:g}"
            )

    @property
    def max_frames(self) -> float:
        return self.max_seconds / FRAME_SECONDS

    @property
    def min_frames(self) -> float:
        return self.min_seconds / FRAME_SECONDS

    @property
    def pause_frames(self) -> float | None:
        return None if self.pause_seconds is None else self.pause_seconds / FRAME_SECONDS

    @property
    def window_frames(self) -> int:
        return int(max(_WINDOW_MAXIMA * self.max_seconds, _MIN_WINDOW_SECONDS) / FRAME_SECONDS)


# SHAS's settings for MuST-C (its segment.py defaults): for models that say nothing of their training lengths.
SHAS_MUSTC = SegmentationOptions(max_seconds=18.0, min_seconds=0.2, threshold=0.5)


