"""The translators a server can run, one per client, and their computation-aware word times.

Every translator here has the same small shape: ``from_pretrained(zip, cache_dir, device,
**options)``, ``push(samples, sample_rate)`` and ``finish()`` returning the words
committed (each with ``.text`` and ``.time``, seconds of stream received when it was),
``reset()``. :data:`TRANSLATORS` names them by dotted path, imported when first used,
so that ``serve --help`` loads no torch and a new one is one line.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from espnet2_ext.serving.protocol import TimedWord

__all__ = ["TRANSLATORS", "StreamTranslator", "TimedRun", "translator_factory", "translate_timed"]

TRANSLATORS = {
    "stream": "espnet2_ext.streaming.translator.StreamingTranslator",  # the whole stream, a bounded history
    "live": "espnet2_ext.simultaneous.live.LiveTranslator",  # cut at pauses, each utterance simultaneously
}


class StreamTranslator(Protocol):
    def push(self, samples: Any, sample_rate: int) -> Sequence[TimedWord]: ...

    def finish(self) -> Sequence[TimedWord]: ...

    def reset(self) -> None: ...


def translator_factory(
    kind: str, model: str | Path, cache_dir: str | Path | None = None, device: str = "cpu", **options: Any
) -> Callable[[], StreamTranslator]:
    """A function making one translator of ``kind`` (a key of :data:`TRANSLATORS`) with
    ``options`` each time it is called: each its own model and state."""
    if kind not in TRANSLATORS:
        raise ValueError(f"unknown translator {kind!r}; expected one of {', '.join(TRANSLATORS)}")
    module, name = TRANSLATORS[kind].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    return lambda: cls.from_pretrained(model, cache_dir=cache_dir, device=device, **options)


class TimedRun(NamedTuple):
    """A word as a translator wrote it on a whole recording: ``time`` (s of stream received,
    SimulEval's delay) and ``elapsed``, which adds the computation spent on the stream until
    then (SimulEval's computation-aware delay)."""

    text: str
    time: float
    elapsed: float


def translate_timed(
    translator: StreamTranslator, samples: np.ndarray, sample_rate: int, piece_samples: int
) -> list[TimedRun]:
    """The words of ``samples`` pushed in pieces of ``piece_samples`` as fast as the translator
    goes, then finished; each with its computation-aware delay, as ``simulate`` counts it."""
    translator.reset()
    words: list[TimedRun] = []
    computing = 0.0
    for start in range(0, len(samples), piece_samples):
        began = time.perf_counter()
        written = translator.push(samples[start : start + piece_samples], sample_rate)
        computing += time.perf_counter() - began
        words += [TimedRun(word.text, word.time, word.time + computing) for word in written]
    began = time.perf_counter()
    written = translator.finish()
    computing += time.perf_counter() - began
    return words + [TimedRun(word.text, word.time, word.time + computing) for word in written]
