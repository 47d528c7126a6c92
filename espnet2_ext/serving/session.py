"""One client's streams as a state machine over the protocol's messages: no sockets, no threads.

A session waits for a configuration; then audio goes to its translator, whose words
come back as messages; the end of the stream writes the rest and
``end_of_processing``, and the session waits for the next configuration. A message
out of place raises :class:`~espnet2_ext.serving.protocol.ProtocolError`.
"""

from __future__ import annotations

from espnet2_ext.serving.protocol import (
    END_OF_PROCESSING,
    Configuration,
    EndOfStream,
    ProtocolError,
    parse_audio,
    parse_text,
    words_message,
)
from espnet2_ext.serving.translators import StreamTranslator

__all__ = ["ClientSession"]


class ClientSession:
    """A client's protocol state and the translator it owns while connected.

    Example::

        session = ClientSession(translator)
        for message in incoming:              # str (JSON) or bytes (16-bit PCM)
            for reply in session.receive(message):
                send(reply)
        session.close()                       # the translator is clean for the next client
    """

    def __init__(self, translator: StreamTranslator):
        self.translator = translator
        self.configuration: Configuration | None = None
        self._samples = 0  # of the current stream
        self._has_words = False

    def receive(self, message: str | bytes) -> list[str]:
        """The replies to one message (computed by the translator: may take a while)."""
        if isinstance(message, (bytes, bytearray, memoryview)):
            return self._audio(bytes(message))
        event = parse_text(message)
        if isinstance(event, EndOfStream):
            return self._end()
        if self.configuration is not None and self._samples:
            raise ProtocolError('a configuration in the middle of a stream; send {"end_of_stream": true} first')
        self.configuration = event
        return []

    def close(self) -> None:
        """Forget the stream, if any (the client left in the middle of one)."""
        self.translator.reset()
        self.configuration = None
        self._samples = 0
        self._has_words = False

    @property
    def received_seconds(self) -> float:
        return self._samples / self.configuration.sample_rate if self.configuration else 0.0

    def _audio(self, data: bytes) -> list[str]:
        if self.configuration is None:
            raise ProtocolError("audio before the configuration: send a JSON object with the sample_rate first")
        samples = parse_audio(data)
        if not len(samples):
            return []
        self._samples += len(samples)
        return self._replies(self.translator.push(samples, self.configuration.sample_rate))

    def _end(self) -> list[str]:
        if self.configuration is None:
            raise ProtocolError("end_of_stream before any configuration")
        replies = self._replies(self.translator.finish(), always=True) + [END_OF_PROCESSING]
        self.close()
        return replies

    def _replies(self, words: list, always: bool = False) -> list[str]:
        if not words and not always:
            return []
        message = words_message(words, self.received_seconds, continues=self._has_words)
        self._has_words = self._has_words or bool(words)
        return [message]
