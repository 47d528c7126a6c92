"""A streaming setting: a simultaneous one plus what StreamAtt keeps of the talk.

:class:`StreamOptions` adds to :class:`~espnet2_ext.simultaneous.options.SimulOptions`
(policy, f, chunk, layer, normalisation) the history selection of FBK's
``StreamingSTAgent`` and our bound on the audio history. ``history: none`` is the
per-utterance behaviour of ``simultaneous/``: the same options name both, so
``simulate``, ``conf/stream.yaml`` and :class:`~espnet2_ext.streaming.translator.StreamingTranslator`
share one checker. Numpy- and torch-free, as the options it extends.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError

__all__ = ["ATTENTION_HISTORIES", "AUDIO_CUTS", "HISTORIES", "META_KEY", "StreamOptions", "packed_stream_settings"]

HISTORIES = ("none", "words", "punctuation", "audio", "vad")
AUDIO_CUTS = ("fbk", "past_discarded")  # history.attended_frames_to_cut's rules
META_KEY = "streaming"  # a packed model's meta.yaml: stage 10's shared settings, the defaults of streams
ATTENTION_HISTORIES = ("words", "punctuation", "audio")  # StreamAtt's: what its audio cut reads


@dataclass(frozen=True)
class StreamOptions(SimulOptions):
    """One setting of StreamAtt (FBK's flag names in parentheses).

    Attributes:
        history: ``none`` (each utterance apart, as ``simultaneous/``), ``words``
            (FBK's FixedWords: the last ``history_words`` words), ``punctuation``
            (what follows the last strong punctuation mark) or ``audio`` (FBK's
            FixedAudio baseline: FixedWords' text, 280 ms of audio per word dropped);
            or ``vad``: no history across utterances, the talk cut where the speaker
            pauses as it arrives (:class:`~espnet2_ext.simultaneous.live.LiveTranslator`),
            the baseline StreamAtt replaces.
        history_words: words of text history kept (``--history-words``, FBK: 20).
        history_max_tokens: most tokens ``punctuation`` keeps (``--history-max-len``, 100).
        audio_cut: where the audio history starts once text left it: ``fbk`` (FBK's: the
            earliest position the kept text and the tokens not yet written attend to) or
            ``past_discarded`` (ours: and no earlier than just past what the discarded text
            attended to; see :mod:`~espnet2_ext.streaming.history`).
        max_history_seconds: most audio the encoder re-reads; ``None``: the model's
            longest training utterance (30 s when the model does not say).
        pause_flush_seconds: after this long without speech the hypothesis is written
            whole, as at the end of a talk, and the history restarts (``None``: never; FBK's
            agent has no such rule and decodes its history through any pause).
    """

    history: str = "none"
    history_words: int = 20
    history_max_tokens: int = 100
    audio_cut: str = "fbk"
    max_history_seconds: float | None = None
    pause_flush_seconds: float | None = 2.0

    def check(self) -> None:
        super().check()
        if self.history not in HISTORIES:
            raise SimulOptionsError(f"history: unknown {self.history!r}, expected one of {', '.join(HISTORIES)}")
        if self.audio_cut not in AUDIO_CUTS:
            raise SimulOptionsError(f"audio_cut: unknown {self.audio_cut!r}, expected one of {', '.join(AUDIO_CUTS)}")
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
        if self.history in ATTENTION_HISTORIES and not self.reads_attention:
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
        cut = "_pd" if self.audio_cut == "past_discarded" and self.history in ("words", "punctuation") else ""
        if self.history == "punctuation":
            return f"{name}_punct{cut}"
        if self.history == "vad":
            return f"{name}_vad"
        return f"{name}_{self.history}{self.history_words}{cut}"


def packed_stream_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The streaming settings a packed model's ``meta.yaml`` carries (:data:`META_KEY`: recipe
    stage 8 packs ``conf/stream.yaml``'s shared keys), checked; ``{}`` for a model without them."""
    entry = meta.get(META_KEY)
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise SimulOptionsError(f"meta.yaml: {META_KEY} must map the streaming options to values, got {entry!r}")
    try:
        StreamOptions.checked(**entry)
    except SimulOptionsError as err:
        raise SimulOptionsError(f"meta.yaml: {META_KEY}: {err}") from None
    return dict(entry)
