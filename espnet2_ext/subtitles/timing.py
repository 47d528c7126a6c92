"""When each word of a translation was spoken, from the decoder's cross-attention, as SBAAM does.

SBAAM (Gaido et al., ACL 2024; FBK-fairseq ``scripts/attention_based_timestamp_estimation.py``)
times subtitle blocks without a transcript: one decoder layer's cross-attention, one
row per generated token over the encoder positions, is standardised per position
(minus the mean over the tokens, over their standard deviation), every value below
the mean set to -0.01 (so stretches nobody attends to cost a little), and the positions
are cut into consecutive spans, one per unit of text, so that the attention inside the
spans is largest. SBAAM cuts between blocks, greedily one boundary after the other;
here the units are words (a block's times are its first and last words') and the cut
is the exact optimum of the same sum, by dynamic programming (:func:`align_words`).
As in SBAAM, the first span starts at the first position and the last ends at the
last, so a segment's words cover its whole time.

An encoder position of a CTC-compressing encoder is a run of CTC frames
(:func:`~espnet2_ext.layers.ctc_compression.compressed_run_lengths`), each one
subsampling factor times 10 ms of audio: :func:`span_seconds` turns positions back
into seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["align_words", "attention_word_times", "piece_words", "span_seconds"]

WORD_START = "\u2581"  # SentencePiece's "▁"
BELOW_MEAN = -0.01  # SBAAM's value for attention below a position's mean


def piece_words(pieces: Sequence[str]) -> list[tuple[str, int, int]]:
    """The words the pieces spell, each with its first piece and the piece after its last.

    The text is the pieces joined with ``▁`` read as a space, cut at whitespace; a
    piece that is ``▁`` alone belongs to no word. Example: ``▁Ha us ▁ , ▁ja`` gives
    ``[("Haus", 0, 2), (",", 3, 4), ("ja", 4, 5)]``.
    """
    words: list[tuple[str, int, int]] = []
    current, first = "", 0
    for index, piece in enumerate(pieces):
        for char in piece.replace(WORD_START, " "):
            if char.isspace():
                if current:
                    words.append((current, first, index if piece.startswith(WORD_START) else index + 1))
                    current = ""
            else:
                if not current:
                    first = index
                current += char
    if current:
        words.append((current, first, len(pieces)))
    return words


def align_words(attention: np.ndarray, words: Sequence[tuple[int, int]]) -> list[int]:
    """Where each word's span of encoder positions ends, by SBAAM's measure (module docstring).

    Args:
        attention: one row per target token, one column per encoder position (tokens, S).
        words: each word's tokens, ``(first, end)`` row indices, in order, covering the rows.

    Returns:
        W + 1 boundaries ``0 = b_0 <= b_1 <= ... <= b_W = S``: word w spans positions
        ``[b_w, b_{w+1})`` (empty when the attention puts nothing of it anywhere better).
    """
    scores = np.asarray(attention, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"attention must be (tokens, positions), got shape {scores.shape}")
    std = scores.std(axis=0)
    std[std == 0] = 1.0
    scores = (scores - scores.mean(axis=0)) / std
    scores[scores < 0] = BELOW_MEAN
    per_word = np.stack([scores[first:end].sum(axis=0) for first, end in words])  # (W, S)
    positions = scores.shape[1]
    prefix = np.concatenate([np.zeros((len(words), 1)), np.cumsum(per_word, axis=1)], axis=1)  # (W, S + 1)
    # best[b]: the largest sum of words 0..w with word w ending at boundary b
    best = np.full(positions + 1, -np.inf)
    best[0] = 0.0
    back = np.zeros((len(words), positions + 1), dtype=np.int64)
    for w in range(len(words)):
        shifted = best - prefix[w]  # word w starting at boundary q
        starts = _running_argmax(shifted)
        back[w] = starts
        best = prefix[w] + shifted[starts]
    bounds = [positions]
    for w in range(len(words) - 1, 0, -1):
        bounds.append(int(back[w][bounds[-1]]))
    bounds.append(0)
    return bounds[::-1]


def _running_argmax(values: np.ndarray) -> np.ndarray:
    """For each index b, the first index q <= b where ``values[:b + 1]`` is largest."""
    before = np.concatenate([[-np.inf], np.maximum.accumulate(values)[:-1]])
    new_best = values > before
    new_best[0] = True
    return np.maximum.accumulate(np.where(new_best, np.arange(len(values)), 0))


def span_seconds(bounds: Sequence[int], run_frames: Sequence[int], frame_seconds: float) -> list[float]:
    """Encoder-position boundaries in seconds from the segment's start: a position is
    ``run_frames[p]`` CTC frames of ``frame_seconds`` each."""
    ends = np.concatenate([[0], np.cumsum(run_frames)])
    return [float(ends[b]) * frame_seconds for b in bounds]


def attention_word_times(
    attention: np.ndarray,
    pieces: Sequence[str],
    text: str,
    run_frames: Sequence[int],
    frame_seconds: float,
    duration: float,
) -> list[tuple[float, float]] | None:
    """Each word of ``text``: (start, end) in seconds from its segment's start, by SBAAM's alignment.

    Args:
        attention: one row per piece of the translation (tokens, S).
        pieces: the translation's pieces.
        text: the translation as the tokenizer wrote it; its words must be those the
            pieces spell (:func:`piece_words`), else None (the caller times them otherwise).
        run_frames: CTC frames per encoder position (S values).
        frame_seconds: one CTC frame's duration.
        duration: the segment's length; the last word ends there.
    """
    words = piece_words(pieces)
    if not words or [w for w, _, _ in words] != text.split() or attention.shape != (len(pieces), len(run_frames)):
        return None
    bounds = align_words(attention, [(first, end) for _, first, end in words])
    seconds = [min(t, duration) for t in span_seconds(bounds, run_frames, frame_seconds)]
    seconds[-1] = duration
    return list(zip(seconds[:-1], seconds[1:]))
