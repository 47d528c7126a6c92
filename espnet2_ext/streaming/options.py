"""A streaming setting: a simultaneous one plus what StreamAtt keeps of the talk.

:class:`StreamOptions` adds to :class:`~espnet2_ext.simultaneous.options.SimulOptions`
(policy, f, chunk, layer, normalisation) the history selection of FBK's
``StreamingSTAgent`` and our bound on the audio history. ``history: none`` is the
per-utterance behaviour of ``simultaneous/``: the same options name both, so
``simulate``, ``conf/stream.yaml`` and :class:`~espnet2_ext.streaming.translator.StreamingTranslator`
share one checker. Numpy- and torch-free, as the options it extends.
"""

from dataclasses import dataclass

from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError

__all__ = ["HISTORIES", "StreamOptions"]

HISTORIES = ("none", "words", "punctuation", "audio")


@dataclass(frozen=True)
class StreamOptions(SimulOptions):
    """One setting of StreamAtt (FBK's flag names in parentheses).

    Attributes:
        history: ``none`` (each utterance apart, as ``simultaneous/``), ``words``
            (FBK's FixedWords: the last ``history_words`` words), ``punctuation``
            (what follows the last strong punctuation mark) or ``audio`` (FBK's
            FixedAudio baseline: FixedWords' text, 280 ms of audio per word dropped).
        history_words: words of text history kept (``--history-words``, FBK: 20).
        history_max_tokens: most tokens ``punctuation`` keeps (``--history-max-len``, 100).
        max_history_seconds: most audio the encoder re-reads; ``None``: the model's
            longest training utterance (30 s when the model does not say).
        pause_flush_seconds: after this long without speech the hypothesis is written
            whole, as at the end of a talk, and the history restarts (``None``: never; FBK's
            agent has no such rule and decodes its history through any pause).
    """

    history: str = "none"
    history_words: int = 20
    history_max_tokens: int = 100
    max_history_seconds: float | None = None
    pause_flush_seconds: float | None = 2.0

    def check(self) -> None:
        super().check()
        if self.history not in HISTORIES:
            raise SimulOptionsError(f"history: unknown {self.history!r}, expected one of {', '.join(HISTORIES)}")
        for name in ("history_words", "history_max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SimulOptionsError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("max_history_seconds", "pause_flush_seconds"):
            seconds = getattr(self, name)
            if seconds is not None and (
                isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
            ):
                raise SimulOptionsError(f"{name} must be a number of seconds > 0 (or null), got {seconds!r}")
        if self.streams and not self.reads_attention:
            raise SimulOptionsError(
                f"history {self.history} needs a policy that reads the cross-attention (alignatt or edatt), "
                f"not {self.policy}"
            )

    @property
    def streams(self) -> bool:
        """A whole talk as one stream (any history but ``none``)."""
        return self.history != "none"

    def describe(self) -> str:
        name = super().describe()
        if not self.streams:
            return name
        if self.history == "punctuation":
            return f"{name}_punct"
        return f"{name}_{self.history}{self.history_words}"
