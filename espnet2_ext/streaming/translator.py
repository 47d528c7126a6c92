"""A whole talk translated as one stream, as FBK's StreamAtt does it with an offline model.

:class:`StreamingTranslator` is :class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator`
(the same step: features, encoder, one forced beam search, AlignAtt or EDAtt, the
word rule) on an input that never ends. What it conditions on is bounded instead of
growing (STREAMATT_FBK.md §1):

- the forced prefix is the **text history**: after every policy step that wrote
  something, only what :mod:`.history` selects stays (the last N words, or what
  follows the last strong punctuation mark);
- the encoder re-reads the **audio history**: when text left, the feature frames
  before the earliest encoder position that the kept text and the tokens not yet
  written attend to are dropped (``audio``: 280 ms per word dropped);
- beyond FBK, the audio history never exceeds ``max_history_seconds`` (FBK's lets
  it grow while no text leaves: silence, music, a hypothesis that keeps reading the
  newest audio), and a talk of any length runs as one stream (FBK's agent restarts
  after ``--max-len`` writes);
- no search runs while the audio history is quieter than ``silence_dbfs``, as
  :class:`SimultaneousTranslator` skips a silent utterance.

Words carry the seconds of stream received when they were written. At the end of
the stream everything the last search finds is written, as FBK's agent does.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from espnet2_ext.inference.audio import peak_dbfs
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs.model_archive import PackedModel
from espnet2_ext.main_funcs.training_utterances import TrainingUtterances
from espnet2_ext.simultaneous.incremental_features import GlobalCMVN
from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError
from espnet2_ext.simultaneous.translator import CommittedWord, SimultaneousTranslator
from espnet2_ext.streaming import history
from espnet2_ext.streaming.options import StreamOptions
from espnet2_ext.utils.fbank import FRAME_SHIFT_MS

__all__ = ["DEFAULT_MAX_HISTORY_SECONDS", "StreamingTranslator", "StreamedWord"]

DEFAULT_MAX_HISTORY_SECONDS = 30.0  # for a model that does not say how long its utterances were

StreamedWord = CommittedWord  # text, seconds of stream received when written, and with the computing


class StreamingTranslator(SimultaneousTranslator):
    """Translate a talk of any length as it is spoken, with a bounded history (StreamAtt).

    Example::

        stream = StreamingTranslator.from_pretrained("model.zip", policy="alignatt", frame_num=4,
                                                     history="words", history_words=20)
        for chunk in microphone():               # any size
            for word in stream.push(chunk, 16000):
                print(word.text, end=" ", flush=True)
        stream.finish()

    Args:
        translator: the offline model and its search (``search: fairseq``).
        options: the setting (:class:`~espnet2_ext.streaming.options.StreamOptions`,
            ``history`` not ``none``; ``max_history_seconds`` resolved).
        global_cmvn: the statistics ``cmvn: global`` normalises with.
        source: what the model was loaded from, for messages.
    """

    options: StreamOptions

    def __init__(
        self,
        translator: Speech2Translation,
        options: StreamOptions,
        global_cmvn: GlobalCMVN | None = None,
        source: str = "the model",
    ):
        if not isinstance(options, StreamOptions) or not options.streams:
            raise SimulOptionsError("a stream needs a history: words, punctuation or audio")
        if options.max_history_seconds is None:
            raise ValueError("max_history_seconds must be resolved (from_pretrained takes it from the model)")
        super().__init__(translator, options, global_cmvn, source)
        self._subsampling = int(self._frame_ms // FRAME_SHIFT_MS)  # feature frames per encoder frame
        self._max_frames = int(options.max_history_seconds * 1000 / FRAME_SHIFT_MS)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        silence_dbfs: float = -60.0,
        **options: Any,
    ) -> StreamingTranslator:
        """Load a packed ``model.zip`` (or its directory) with the setting ``options``
        (:class:`~espnet2_ext.streaming.options.StreamOptions`' fields; ``history`` defaults to ``words``)."""
        options.setdefault("history", "words")
        (translator,) = cls.for_settings(model, [StreamOptions.checked(**options)], cache_dir, device, silence_dbfs)
        return translator

    @classmethod
    def _setting_for(cls, setting: SimulOptions, packed: PackedModel) -> SimulOptions:
        """``max_history_seconds`` from the model's longest training utterance, when not given."""
        if not isinstance(setting, StreamOptions) or setting.max_history_seconds is not None:
            return setting
        trained = TrainingUtterances.from_meta(packed.meta)
        seconds = trained.max if trained is not None else DEFAULT_MAX_HISTORY_SECONDS
        return setting.with_values(max_history_seconds=float(seconds))

    def reset(self) -> None:
        """Forget the talk, to start another."""
        super().reset()
        self._chunk_peaks: deque[tuple[float, float]] = deque()  # (stream seconds at its end, dBFS)

    @property
    def history_seconds(self) -> float:
        """Seconds of audio the next step's encoder reads."""
        return len(self._fbank.features) * FRAME_SHIFT_MS / 1000

    @property
    def text_history(self) -> list[int]:
        """The target ids the next search forces after the language tag."""
        return list(self._committed)

    # ------------------------------------------------------------------ hooks of the step

    def _feed(self, waveform: np.ndarray) -> None:
        super()._feed(waveform)
        self._chunk_peaks.append((self.seconds_received, peak_dbfs(waveform)))

    def _silent(self) -> bool:
        """The audio history is quieter than ``silence_dbfs`` (chunks before it forgotten)."""
        start = self._fbank.discarded_frames * FRAME_SHIFT_MS / 1000
        while self._chunk_peaks and self._chunk_peaks[0][0] <= start:
            self._chunk_peaks.popleft()
        return not any(peak >= self.translator.silence_dbfs for _, peak in self._chunk_peaks)

    def _bound_audio(self) -> None:
        """The oldest frames beyond ``max_history_seconds`` go before the encoder sees them."""
        excess = len(self._fbank.features) - self._max_frames
        if excess > 0:
            self._fbank.discard(excess)

    def _select_history(self, attention: torch.Tensor | None, encoded: Any) -> None:
        """StreamAtt's selection after a policy step: the text history, then the audio it still needs."""
        options = self.options
        old = self._committed
        kept = history.select_text(options.history, old, self.pieces, options.history_words,
                                   options.history_max_tokens)
        discarded = len(old) - len(kept)
        if discarded == 0:
            return
        if options.history == "audio":
            frames = history.fixed_audio_frames_to_cut(old[:discarded], self.pieces)
        else:
            frames = history.attended_frames_to_cut(
                attention, len(self.tag), discarded, self._position_runs(encoded), self._subsampling
            )
        self._committed = kept
        self._fbank.discard(min(frames, len(self._fbank.features)))
