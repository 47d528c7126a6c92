"""A translation's segments into subtitle blocks: which words go together, on which lines, when.

Pure functions of words, times and :class:`~espnet2_ext.subtitles.limits.SubtitleLimits`.
Each segment is cut on its own, so no block spans two segments:

1. **Words into blocks** (:func:`group_words`): the cut of least cost among those whose
   blocks fit the limits (their lines, their characters at ``max_cps`` within
   ``max_seconds``, their words spoken within ``max_seconds``). A block costs 1; ending
   it after a clause's punctuation costs 1 more, between other words 2, after a
   sentence nothing; a block that runs on past a sentence's end costs 1.5, one spoken in
   less than ``min_seconds`` 2. So sentences get blocks of their own where they can, long
   ones are cut at commas before other words, and a one-word sentence joins a neighbour.
2. **Lines** (:func:`break_lines`): as few as the block needs; more than one is cut where
   the lines are most even, punctuation counting as a better place.
3. **Times** (:func:`fit_times`): each block from its first word's start to its last
   word's end, then moved as little as the limits need: lengthened to be read at
   ``max_cps`` and to last ``min_seconds``, pushing its neighbours within the segment,
   and shortened to ``max_seconds``.

Times are whole milliseconds, as subtitle files write them; inputs are taken to the
millisecond as ``translate --format jsonl`` writes them (:func:`to_ms`), so blocks built
from a translation in memory and from its jsonl record are the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from espnet2_ext.subtitles.limits import SubtitleLimits

__all__ = ["Block", "TimedSegment", "break_lines", "build_blocks", "fit_times", "group_words", "to_ms"]

SENTENCE_END = (".", "!", "?", "…", '."', '!"', '?"', ".»", "!»", "?»", ".“", "!“", "?“", ".'", "?'", "!'")
CLAUSE_END = (",", ";", ":", "–", "—", "-", ")")
_BLOCK = 1.0
_BREAK_AFTER_CLAUSE = 1.0
_BREAK_BETWEEN_WORDS = 2.0
_RUNS_PAST_SENTENCE = 1.5
_TOO_SHORT = 2.0


class Block(NamedTuple):
    """One subtitle: shown from ``start_ms`` to ``end_ms`` (milliseconds of the recording)."""

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]

    @property
    def start(self) -> float:
        return self.start_ms / 1000

    @property
    def end(self) -> float:
        return self.end_ms / 1000

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def chars(self) -> int:
        """What is read: every character of every line, the line breaks not."""
        return sum(len(line) for line in self.lines)


class TimedSegment(NamedTuple):
    """A stretch of a recording (seconds) and its translation; ``word_times`` is each word's
    (start, end) in seconds of the recording, or None where only proportional timing can be had."""

    start: float
    end: float
    text: str
    word_times: Sequence[tuple[float, float]] | None = None


def to_ms(seconds: float) -> int:
    """Milliseconds, of the time as jsonl writes it (``round(seconds, 3)``)."""
    return round(round(seconds, 3) * 1000)


def build_blocks(
    segments: Sequence[TimedSegment], limits: SubtitleLimits = SubtitleLimits(), timing: str = "attention"
) -> list[Block]:
    """The blocks of a whole translation, in time order.

    Args:
        segments: the translated segments, in time order.
        limits: the guidelines' limits.
        timing: ``attention`` (the words' own times where a segment has them,
            proportional elsewhere) or ``proportional`` (each segment's time shared
            among its words by their characters).
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, got {timing!r}")
    blocks: list[Block] = []
    for segment in segments:
        words = segment.text.split()
        if not words:
            continue
        start, end = to_ms(segment.start), to_ms(segment.end)
        if end < start:
            raise ValueError(f"segment {segment.start:.3f}-{segment.end:.3f} s ends before it starts")
        times = segment.word_times if timing == "attention" else None
        if times is not None and len(times) == len(words):
            spans = _clamped([(to_ms(s), to_ms(e)) for s, e in times], start, end)
            spans[0] = (start, spans[0][1])  # as SBAAM: the words cover the whole segment
            spans[-1] = (spans[-1][0], end)
        else:
            spans = proportional_spans(words, start, end)
        groups = group_words(words, spans, limits)
        lines = [break_lines(words[i:j], limits.max_chars, limits.max_lines) for i, j in groups]
        ideal = [(spans[i][0], spans[j - 1][1]) for i, j in groups]
        needs = [limits.reading_ms(sum(map(len, block))) for block in lines]
        for (s, e), block in zip(fit_times(ideal, needs, start, end, limits.max_ms), lines):
            blocks.append(Block(s, e, tuple(block)))
    return blocks


TIMINGS = ("attention", "proportional")


def proportional_spans(words: Sequence[str], start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Each word's share of ``[start_ms, end_ms]``, by its characters and the space after it."""
    weights = [len(w) + 1 for w in words]
    total = sum(weights)
    bounds, done = [start_ms], 0
    for weight in weights:
        done += weight
        bounds.append(start_ms + round((end_ms - start_ms) * done / total))
    return list(zip(bounds[:-1], bounds[1:]))


def _clamped(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Spans within ``[start, end]``, never going back in time."""
    out, last = [], start
    for s, e in spans:
        s = min(max(s, last), end)
        e = min(max(e, s), end)
        out.append((s, e))
        last = s
    return out


def group_words(
    words: Sequence[str], spans: Sequence[tuple[int, int]], limits: SubtitleLimits
) -> list[tuple[int, int]]:
    """The blocks, as ``(first word, end word)`` index pairs, of the cut of least cost (module docstring).

    A block always fits its lines and its characters; it is spoken within ``max_seconds``
    unless it is a single word.
    """
    n = len(words)
    cost = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            block = words[i:j]
            fits = _lines_needed(block, limits.max_chars) <= limits.max_lines
            if j - i > 1 and (not fits or len(" ".join(block)) > limits.max_block_chars):
                break  # longer blocks do not fit either
            if j - i > 1 and spans[j - 1][1] - spans[i][0] > limits.max_ms:
                break
            total = cost[i] + _block_cost(words, spans, i, j, limits)
            if total < cost[j]:
                cost[j], back[j] = total, i
    groups, j = [], n
    while j > 0:
        groups.append((back[j], j))
        j = back[j]
    return groups[::-1]


def _block_cost(
    words: Sequence[str], spans: Sequence[tuple[int, int]], i: int, j: int, limits: SubtitleLimits
) -> float:
    cost = _BLOCK
    if j < len(words):
        cost += _break_cost(words[j - 1], 0.0, _BREAK_AFTER_CLAUSE, _BREAK_BETWEEN_WORDS)
    if any(w.endswith(SENTENCE_END) for w in words[i : j - 1]):
        cost += _RUNS_PAST_SENTENCE
    if spans[j - 1][1] - spans[i][0] < limits.min_ms:
        cost += _TOO_SHORT
    return cost


def _break_cost(word: str, sentence: float, clause: float, other: float) -> float:
    if word.endswith(SENTENCE_END):
        return sentence
    return clause if word.endswith(CLAUSE_END) else other


def _lines_needed(words: Sequence[str], max_chars: int) -> int:
    """Lines of at most ``max_chars`` the words fill one after the other (a longer word alone on one)."""
    lines, length = 0, 0
    for word in words:
        if lines and length + 1 + len(word) <= max_chars:
            length += 1 + len(word)
        else:
            lines, length = lines + 1, len(word)
    return lines


def break_lines(words: Sequence[str], max_chars: int, max_lines: int) -> list[str]:
    """``words`` on as few lines of at most ``max_chars`` as they need (at most ``max_lines``).

    Several lines are cut where they are most even (least sum of each line's squared
    shortfall from ``max_chars``, as a fraction of it), a cut after a sentence taking 0.5
    off that sum and after a clause 0.25. A word longer than ``max_chars`` is a line of
    its own.
    """
    count = _lines_needed(words, max_chars)
    if count > max_lines:
        raise ValueError(f"{len(words)} words need {count} lines of {max_chars} characters, more than {max_lines}")
    n = len(words)
    if count == 1:
        return [" ".join(words)]
    # best[k][j]: least cost of words[:j] on k lines
    best = [[math.inf] * (n + 1) for _ in range(count + 1)]
    back = [[0] * (n + 1) for _ in range(count + 1)]
    best[0][0] = 0.0
    for k in range(1, count + 1):
        for j in range(1, n + 1):
            for i in range(j - 1, -1, -1):
                length = len(" ".join(words[i:j]))
                if length > max_chars and j - i > 1:
                    break
                if best[k - 1][i] == math.inf:
                    continue
                shortfall = (max_chars - length) / max_chars
                total = best[k - 1][i] + shortfall * shortfall
                if j < n:
                    total -= _break_cost(words[j - 1], 0.5, 0.25, 0.0)
                if total < best[k][j]:
                    best[k][j], back[k][j] = total, i
    lines, j = [], n
    for k in range(count, 0, -1):
        i = back[k][j]
        lines.append(" ".join(words[i:j]))
        j = i
    return lines[::-1]


def fit_times(
    ideal: Sequence[tuple[int, int]], needs: Sequence[int], start: int, end: int, max_ms: int
) -> list[tuple[int, int]]:
    """Block times within ``[start, end]``, in order, each at least its need and at most ``max_ms``.

    From the ideal times (the words'), a forward pass lengthens each block to its need,
    pushing the next ones later; a backward pass pulls back what then ends after ``end``,
    pushing the earlier ones earlier. When the needs add up to more than the segment, no
    move fits them: the segment's time is shared among its blocks by their needs instead.
    """
    needs = [min(n, max_ms) for n in needs]
    times = [[max(s, start), max(e, s, start)] for s, e in ideal]
    for k, (s, e) in enumerate(times):  # forward
        if k:
            s = max(s, times[k - 1][1])
        times[k] = [s, max(e, s + needs[k])]
    later = end
    for k in range(len(times) - 1, -1, -1):  # backward
        e = min(times[k][1], later)
        s = min(times[k][0], e - needs[k])
        times[k] = [s, e]
        later = s
    if times and times[0][0] < start:  # the needs do not fit: share the segment by them
        total, done, bounds = sum(needs), 0, [start]
        for need in needs:
            done += need
            bounds.append(start + round((end - start) * done / total) if total else end)
        times = [[s, e] for s, e in zip(bounds[:-1], bounds[1:])]
    return [(s, min(e, s + max_ms)) for s, e in times]
