"""Decoding the segments of many inputs in batches, and handing results back in input order.

Translating is fastest when a batch holds segments of similar lengths (little
padding), and most useful when each input's result comes out as soon as it is
done, in the order the inputs were given (a reader of the output, a Ctrl-C that
keeps what is finished). :class:`OrderedBatches` does both with bounded memory:
segments wait in a pool of ``pool_batches`` batches; a full pool is sorted by
length and decoded batch by batch; an input is released when it has been read
to its end (or failed) and all its segments are decoded, after every input
before it. Padding never changes a result, so neither the pool nor the order
changes a translation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

import numpy as np

__all__ = ["Finished", "OrderedBatches"]

Decoded = TypeVar("Decoded")
Span = tuple[float, float]


class Finished(NamedTuple, Generic[Decoded]):
    """One input, done: its segments' spans and decodings in time order, its warnings, or its error."""

    number: int
    name: str
    segments: list[tuple[Span, Decoded]]
    warnings: list[str]
    error: str | None


@dataclass
class _Input(Generic[Decoded]):
    name: str
    warnings: list[str]
    expected: int = 0
    closed: bool = False
    error: str | None = None
    decoded: dict[int, tuple[Span, Decoded]] = field(default_factory=dict)


class _Waiting(NamedTuple):
    number: int
    index: int
    span: Span
    features: np.ndarray


class OrderedBatches(Generic[Decoded]):
    """Segments in, batches decoded, inputs out in order.

    Example::

        batches = OrderedBatches(decode, batch_size=10)
        for item in items:
            number = batches.open(item.name)
            for span, features in segments_of(item):
                batches.add(number, span, features)
                yield from batches.ready()
            batches.close(number, warnings)
        yield from batches.finish()

    Args:
        decode: decodes a batch of feature arrays ``(frames, dims)``, one result each.
        batch_size: segments per call of ``decode``.
        pool_batches: how many batches' worth of segments wait to be sorted by length.
    """

    def __init__(
        self, decode: Callable[[Sequence[np.ndarray]], Sequence[Decoded]], batch_size: int, pool_batches: int = 4
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._decode, self._batch_size, self._pool_size = decode, batch_size, batch_size * pool_batches
        self._inputs: dict[int, _Input[Decoded]] = {}
        self._pool: list[_Waiting] = []
        self._opened = 0
        self._released = 0

    def open(self, name: str, warnings: list[str] | None = None) -> int:
        """Start an input; returns its number. ``warnings`` may still grow until :meth:`close`."""
        number = self._opened
        self._inputs[number] = _Input(name, warnings if warnings is not None else [])
        self._opened += 1
        return number

    def add(self, number: int, span: Span, features: np.ndarray) -> None:
        """A segment of input ``number``, in time order; a full pool is decoded."""
        item = self._inputs[number]
        self._pool.append(_Waiting(number, item.expected, span, features))
        item.expected += 1
        if len(self._pool) >= self._pool_size:
            self._decode_pool()

    def fail(self, number: int, message: str) -> None:
        """Input ``number`` failed: its segments are dropped, its result is the message."""
        self._inputs[number].error = message
        self._pool = [waiting for waiting in self._pool if waiting.number != number]
        self.close(number)

    def close(self, number: int) -> None:
        """Input ``number`` has no more segments."""
        self._inputs[number].closed = True

    def ready(self) -> Iterator[Finished[Decoded]]:
        """The inputs finished, in order, that have not been handed out yet."""
        while self._released in self._inputs:
            item = self._inputs[self._released]
            if not item.closed or (item.error is None and len(item.decoded) < item.expected):
                return
            del self._inputs[self._released]
            segments = [] if item.error else [item.decoded[i] for i in range(item.expected)]
            yield Finished(self._released, item.name, segments, item.warnings, item.error)
            self._released += 1

    def finish(self) -> Iterator[Finished[Decoded]]:
        """Decode what waits and hand out every closed input."""
        self._decode_pool()
        yield from self.ready()

    def _decode_pool(self) -> None:
        pool = sorted(self._pool, key=lambda waiting: len(waiting.features))
        self._pool = []
        for first in range(0, len(pool), self._batch_size):
            batch = pool[first : first + self._batch_size]
            for waiting, decoded in zip(batch, self._decode([w.features for w in batch]), strict=True):
                self._inputs[waiting.number].decoded[waiting.index] = (waiting.span, decoded)
