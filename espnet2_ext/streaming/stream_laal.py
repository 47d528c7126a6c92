"""StreamLAAL (FBK's ``scripts/stream_laal.py``, version 2.0): LAAL of a talk streamed whole.

A stream's words carry delays from the start of the talk. Once its translation is cut
into one line per reference sentence (mwerSegmenter's algorithm), each line's words
are measured from their sentence's start, and LAAL is computed per sentence as
SimulEval computes it for one utterance (STREAMATT_FBK.md §2):

- the lines take the talk's delays in order, as many as their words
  (``len(line.strip().split(" "))``); an empty line takes none;
- a delay becomes ``max(0, d - s)``, s the sentence's start (ms);
- the computation-aware delay first undoes SimulEval's accumulation of computing
  over the whole talk: the first word keeps its elapsed time ``e``; a word with the
  same ``e`` as the one before gets ``E' - D' + d`` (the previous word's re-based
  values); any other ``e - e_prev + d_prev``; then ``max(0, E - s)``;
- StreamLAAL is the mean over the sentences with words of their LAAL (source length:
  the sentence's duration; reference length: its words, ``split(" ")``).

The clamping at 0 is version 2.0's (March 2025); simulstream's ``stream_laal`` scorer
does not clamp, so the two differ where a word comes before its sentence's start.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import NamedTuple

from espnet2_ext.simultaneous.latency import length_adaptive_average_lagging

__all__ = ["SentenceDelays", "sentence_delays", "stream_laal"]


class SentenceDelays(NamedTuple):
    """A reference sentence's words' delays and elapsed times, from its start (ms)."""

    delays: list[float]
    elapsed: list[float]


def words_of(line: str) -> int:
    """The words a line takes delays for (FBK's ``string_to_len``, unit "word"); 0 for an empty line."""
    return len(line.strip().split(" ")) if line.strip() else 0


def sentence_delays(
    lines: Sequence[str], starts_ms: Sequence[float], delays: Sequence[float], elapsed: Sequence[float]
) -> list[SentenceDelays]:
    """FBK's ``SegmentLevelDelayElapsed`` over one talk: each line's delays re-based to its
    sentence's start ``starts_ms``, in order (see the module docstring)."""
    if len(lines) != len(starts_ms):
        raise ValueError(f"{len(lines)} lines for {len(starts_ms)} sentence starts")
    if sum(words_of(line) for line in lines) != len(delays) or len(elapsed) != len(delays):
        raise ValueError(
            f"the lines hold {sum(words_of(line) for line in lines)} words for {len(delays)} delays "
            f"and {len(elapsed)} elapsed times"
        )
    result = []
    position = 0
    prev_delay = prev_elapsed = prev_stream_delay = prev_stream_elapsed = 0.0
    first = True
    for line, start in zip(lines, starts_ms):
        count = words_of(line)
        sentence = SentenceDelays([], [])
        for delay, spent in zip(delays[position : position + count], elapsed[position : position + count]):
            if first:
                stream_elapsed = spent
            elif spent == prev_elapsed:
                stream_elapsed = prev_stream_elapsed - prev_stream_delay + delay
            else:
                stream_elapsed = spent - prev_elapsed + prev_delay
            stream_delay = max(0.0, delay - start)
            stream_elapsed = max(0.0, stream_elapsed - start)
            sentence.delays.append(stream_delay)
            sentence.elapsed.append(stream_elapsed)
            prev_delay, prev_elapsed = delay, spent
            prev_stream_delay, prev_stream_elapsed = stream_delay, stream_elapsed
            first = False
        position += count
        result.append(sentence)
    return result


class StreamLAAL(NamedTuple):
    """StreamLAAL and its computation-aware variant (ms); None where no sentence has words."""

    plain: float | None
    computation_aware: float | None


def stream_laal(
    sentences: Sequence[SentenceDelays], durations_ms: Sequence[float], references: Sequence[str]
) -> StreamLAAL:
    """The mean LAAL of the sentences that have words (SimulEval's ``LAALScorer``)."""
    plain, aware = [], []
    for sentence, duration, reference in zip(sentences, durations_ms, references, strict=True):
        if not sentence.delays:
            continue
        length = len(reference.split(" "))
        plain.append(length_adaptive_average_lagging(sentence.delays, duration, length))
        aware.append(length_adaptive_average_lagging(sentence.elapsed, duration, length))
    if not plain:
        return StreamLAAL(None, None)
    return StreamLAAL(statistics.fmean(plain), statistics.fmean(aware))
