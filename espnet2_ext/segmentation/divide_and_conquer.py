"""SHAS's probabilistic divide-and-conquer (pDAC): split audio where speech is least likely.

Given a speech probability per frame, pDAC (Tsiamas et al., Interspeech 2022;
``pdac`` in mt-upc/SHAS, ``src/supervised_hybrid/segment.py``) proceeds as follows:

1. trim the whole recording to its first and last frame at or above ``threshold``;
2. a piece shorter than ``max_frames`` is a segment;
3. a longer piece is split at its least speech-like frame (that frame belongs to
   neither side), both sides are trimmed, and the split is kept if both are longer
   than ``min_frames``; otherwise the next least speech-like frame is tried;
4. each side is split again, until every piece is shorter than ``max_frames``.

If no frame gives two long-enough sides, SHAS's strict mode (ours) splits at the
last frame tried and keeps the sides longer than ``min_frames``. Pieces trimmed to
nothing (no frame at or above the threshold) are dropped. Ties in probability go
to the earliest frame (SHAS's ``np.argsort`` leaves their order unspecified).

One step beyond SHAS, optional: with ``pause_frames``, the trimmed recording is
first cut at every pause (a run of frames below the threshold) at least that long,
whatever the lengths; pDAC then works on each piece. SHAS's own classifier is
trained on MuST-C's sentence boundaries, so its least speech-like frames are
boundaries; a voice-activity model's are any pause, and a pause longer than any
inside the model's training utterances is the best evidence of a boundary it has.

Worked example (threshold 0.5, max 4 frames, min 1 frame)::

    probabilities  0.1 0.9 0.8 0.3 0.9 0.9 0.7 0.2
    frames           0   1   2   3   4   5   6   7
    trimmed: frames 1-6 (6 frames >= 4): split at frame 3 (0.3), the lowest inside
    -> [1, 3) and [4, 7): both shorter than 4 frames: segments [(1, 3), (4, 7)]
"""

from __future__ import annotations

import numpy as np

__all__ = ["between_pauses", "divide_and_conquer"]


def divide_and_conquer(
    probabilities: np.ndarray,
    max_frames: float,
    min_frames: float,
    threshold: float,
    pause_frames: float | None = None,
) -> list[tuple[int, int]]:
    """Speech segments ``[start, stop)`` in frames, in order, each shorter than ``max_frames``.

    Args:
        probabilities: speech probability of each frame, shape ``(frames,)``.
        max_frames: pieces at least this long are split (SHAS's ``max_segment_length``).
        min_frames: a split must leave both sides longer than this (SHAS's ``min_segment_length``).
        threshold: frames below it are not speech; pieces are trimmed to frames at or above it.
        pause_frames: pauses at least this long are cut first, whatever the lengths (None: never).
    """
    if max_frames <= 2 * min_frames + 1:
        raise ValueError(f"max_frames ({max_frames}) must exceed 2 * min_frames + 1 ({2 * min_frames + 1})")
    probabilities = np.asarray(probabilities)
    trim = _Trimmer(probabilities >= threshold)
    segments: list[tuple[int, int]] = []
    pending = between_pauses(probabilities >= threshold, pause_frames)[::-1]
    while pending:
        piece = pending.pop()
        if piece is None:
            continue
        start, stop = piece
        if stop - start < max_frames:
            segments.append(piece)
            continue
        left = right = None
        for split in start + np.argsort(probabilities[start:stop], kind="stable"):
            left, right = trim(start, int(split)), trim(int(split) + 1, stop)
            if _length(left) > min_frames and _length(right) > min_frames:
                break
        else:  # strict: no split leaves two long sides; keep what is long enough of the last one tried
            left = left if _length(left) > min_frames else None
            right = right if _length(right) > min_frames else None
        pending += [right, left]  # left is taken first: segments come out in order
    return segments


def between_pauses(speech: np.ndarray, pause_frames: float | None) -> list[tuple[int, int]]:
    """The recording trimmed to its speech and cut at pauses of at least ``pause_frames``
    (none: one piece, or no piece without speech)."""
    frames = np.flatnonzero(speech)
    if len(frames) == 0:
        return []
    if pause_frames is None:
        return [(int(frames[0]), int(frames[-1]) + 1)]
    gaps = np.flatnonzero(np.diff(frames) - 1 >= pause_frames)  # speech frame i, then a long pause
    starts = np.concatenate([[frames[0]], frames[gaps + 1]])
    stops = np.concatenate([frames[gaps], [frames[-1]]]) + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def _length(piece: tuple[int, int] | None) -> int:
    return 0 if piece is None else piece[1] - piece[0]


class _Trimmer:
    """Trims ``[start, stop)`` to its first and last speech frame in constant time."""

    def __init__(self, speech: np.ndarray):
        n = len(speech)
        index = np.arange(n)
        # next_speech[i]: first speech frame >= i (n if none); last_speech[i]: last speech frame < i (-1 if none)
        self.next_speech = np.minimum.accumulate(np.where(speech, index, n)[::-1])[::-1]
        self.next_speech = np.append(self.next_speech, n)
        self.last_speech = np.concatenate([[-1], np.maximum.accumulate(np.where(speech, index, -1))])

    def __call__(self, start: int, stop: int) -> tuple[int, int] | None:
        first = int(self.next_speech[start])
        if first >= stop:
            return None
        return first, int(self.last_speech[stop]) + 1
