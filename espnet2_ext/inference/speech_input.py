"""What can be translated, each turned into the same thing: checked 16 kHz mono audio in chunks.

A file (read block by block), a waveform with its sample rate, or a stream of
chunks (live audio, or a recording longer than memory) all become a
:class:`SpeechInput`: a name, and a way to get the audio. Nothing is read until
:func:`chunks_16k` is iterated, so a list of thousands of files costs nothing
up front, and a bad file fails when its turn comes, alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from espnet2_ext.inference.audio import (
    AudioError,
    as_waveform,
    check_sample_rate,
    check_samples,
    is_headerless,
    open_audio,
)
from espnet2_ext.utils.fbank import SAMPLE_RATE
from espnet2_ext.utils.resampling import StreamResampler

__all__ = ["SpeechInput", "array_input", "as_input", "chunks_16k", "file_input", "stream_input"]

Opener = Callable[[], tuple[int, Iterable[np.ndarray]]]


class SpeechInput(NamedTuple):
    """One thing to translate: its name (in messages and outputs) and how to open its audio.

    ``open()`` returns the sample rate and mono float chunks at that rate.
    """

    name: str
    open: Opener


def file_input(path: str | Path, name: str | None = None, raw_sample_rate: int | None = None) -> SpeechInput:
    """A soundfile-readable file (``raw_sample_rate`` only for headerless ``.raw``/``.pcm``), read in blocks."""

    def opened() -> tuple[int, Iterable[np.ndarray]]:
        audio = open_audio(path, raw_sample_rate)
        return audio.sample_rate, audio.blocks

    return SpeechInput(str(path) if name is None else name, opened)


def array_input(samples: Any, sample_rate: Any, name: str = "waveform") -> SpeechInput:
    """A whole waveform: (samples,), (samples, channels) or (channels, samples), float or integer.

    The samples are checked before the sample rate: a file's bytes passed as samples are
    refused as such, with what to pass instead, rather than for the rate they lack.
    """

    def opened() -> tuple[int, Iterable[np.ndarray]]:
        waveform = as_waveform(samples, name)
        return check_sample_rate(sample_rate, name), iter([waveform])

    return SpeechInput(name, opened)


def stream_input(chunks: Iterable[Any], sample_rate: Any, name: str = "stream") -> SpeechInput:
    """Audio that arrives in chunks (each as :func:`array_input` takes it), all at ``sample_rate``."""

    def opened() -> tuple[int, Iterable[np.ndarray]]:
        rate = check_sample_rate(sample_rate, name)
        return rate, (as_waveform(chunk, name) for chunk in chunks)

    return SpeechInput(name, opened)


def as_input(item: Any, raw_sample_rate: int | None = None) -> SpeechInput:
    """What the Python API accepts: a :class:`SpeechInput`, a path, or a ``(waveform, sample_rate)`` pair."""
    if isinstance(item, SpeechInput):
        return item
    if isinstance(item, (str, Path)):
        return file_input(item, raw_sample_rate=raw_sample_rate if is_headerless(item) else None)
    if isinstance(item, tuple) and len(item) == 2:
        return array_input(*item)
    raise AudioError(
        f"expected a path, a (waveform, sample_rate) pair or a SpeechInput, got {type(item).__name__}"
    )


def chunks_16k(item: SpeechInput) -> Iterator[np.ndarray]:
    """The input's audio as checked 16 kHz mono float32 chunks (resampled as one stream).

    Raises:
        AudioError: from opening or reading the input, or samples that are NaN,
            infinite or far outside [-1, 1] (:func:`~espnet2_ext.inference.audio.check_samples`).
    """
    sample_rate, chunks = item.open()
    resampler = StreamResampler(sample_rate, SAMPLE_RATE)
    seen = 0
    for chunk in chunks:
        check_samples(chunk, item.name, sample_rate, seen)
        seen += len(chunk)
        yield resampler.feed(chunk)
    yield resampler.finish()
