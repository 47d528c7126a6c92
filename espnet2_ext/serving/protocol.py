"""simulstream's client protocol, as pure functions of one message.

A client opens the WebSocket and sends, as simulstream's ``simulstream_wavs_client``
and our page do:

1. a JSON object, the configuration: ``sample_rate`` (Hz, of the audio that follows;
   16000 when absent, as simulstream assumes), and optionally ``source_lang``,
   ``target_lang`` (strings: a model translates one pair, so they select nothing) and
   ``metrics_metadata`` (anything; logged);
2. binary messages, 16-bit little-endian mono PCM, of any length;
3. ``{"end_of_stream": true}``; then, if it likes, another configuration and stream.

The server answers JSON objects: ``{"new": TEXT, "deleted": TEXT}`` (simulstream's
``IncrementalOutput.strings_to_json``; the ``new`` texts of a stream concatenate to its
translation, ``deleted`` is always empty as committed words are never retracted), with
our additions ``words`` (each ``{"text", "time"}``: the seconds of audio received when it
was committed) and ``received`` (seconds of audio received when sent); after the end of
a stream ``{"end_of_processing": true}``; and, before it closes the connection,
``{"error": MESSAGE}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from espnet2_ext.inference.audio import AudioError, check_sample_rate

__all__ = [
    "DEFAULT_SAMPLE_RATE", "END_OF_PROCESSING", "MAX_SAMPLE_RATE", "Configuration", "EndOfStream", "ProtocolError",
    "TimedWord", "error_message", "parse_audio", "parse_text", "words_message",
]

DEFAULT_SAMPLE_RATE = 16000  # simulstream's, when a configuration names none
MAX_SAMPLE_RATE = 384000  # the highest rate audio interfaces offer
END_OF_PROCESSING = json.dumps({"end_of_processing": True})


class ProtocolError(ValueError):
    """A client's message breaks the protocol: the client is told why, once, and closed."""


class TimedWord(Protocol):
    """What a translator writes: a word and the seconds of stream received when it was."""

    text: str
    time: float


@dataclass(frozen=True)
class Configuration:
    """A stream's configuration: the rate of its audio, and what the client logs."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    metadata: Any = None


@dataclass(frozen=True)
class EndOfStream:
    """The client's audio has ended."""


def parse_text(message: str) -> Configuration | EndOfStream:
    """A text message: a configuration or the end of the stream; :class:`ProtocolError` otherwise."""
    try:
        data = json.loads(message)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"malformed JSON ({err.msg} at character {err.pos}): {_excerpt(message)}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {_excerpt(message)}")
    if "end_of_stream" in data:
        return EndOfStream()
    rate = data.get("sample_rate", DEFAULT_SAMPLE_RATE)
    try:
        rate = check_sample_rate(rate, "sample_rate")
    except AudioError as err:
        raise ProtocolError(str(err)) from None
    if rate > MAX_SAMPLE_RATE:
        raise ProtocolError(f"sample_rate: {rate} Hz is above {MAX_SAMPLE_RATE} Hz")
    for key in ("source_lang", "target_lang"):
        if key in data and not isinstance(data[key], str):
            raise ProtocolError(f"{key}: expected a language code such as 'de', got {data[key]!r}")
    return Configuration(rate, data.get("metrics_metadata"))


def parse_audio(data: bytes) -> np.ndarray:
    """A binary message as 16-bit samples; :class:`ProtocolError` for an odd number of bytes."""
    if len(data) % 2:
        raise ProtocolError(f"audio: {len(data)} bytes, an odd number; expected 16-bit samples (2 bytes each)")
    return np.frombuffer(data, dtype="<i2")


def words_message(words: Sequence[TimedWord], received: float, continues: bool) -> str:
    """The words committed, as simulstream's ``new``/``deleted`` and ours; ``continues``: the
    stream has had words before, so ``new`` starts with the space that separates them."""
    new = " ".join(word.text for word in words)
    return json.dumps({
        "new": (" " if continues and new else "") + new,
        "deleted": "",
        "words": [{"text": word.text, "time": round(float(word.time), 3)} for word in words],
        "received": round(received, 3),
    }, ensure_ascii=False)


def error_message(reason: str) -> str:
    return json.dumps({"error": reason}, ensure_ascii=False)


def _excerpt(message: str, limit: int = 60) -> str:
    return repr(message if len(message) <= limit else message[:limit] + "...")
