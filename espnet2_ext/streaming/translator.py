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
  written attend to are dropped (``audio``: 280 ms per word dropped); with
  ``audio_cut: past_discarded`` (ours) at least those up to the last position the
  discarded text attended to, so that a sentence's audio leaves with its text;
- beyond FBK, the audio history never exceeds ``max_history_seconds`` (FBK's lets
  it grow while no text leaves: silence, music, a hypothesis that keeps reading the
  newest audio), and a talk of any length runs as one stream (FBK's agent restarts
  after ``--max-len`` writes);
- after ``pause_flush_seconds`` without speech (Silero VAD, judged as
  :class:`SimultaneousTranslator` judges an utterance before its first step, and as
  ``translate``'s segmenter does) the last search's tokens are all written, as at the
  end of a talk, and the history restarts: no search runs while the audio history holds
  no speech, and such a history is cut to the lead the model's training utterances had
  before their speech. Silence, music or noise between talks writes nothing and costs no
  search, and the next speech starts afresh. FBK's agent decodes through any pause and
  keeps all the audio while no text leaves.

Words carry the seconds of stream received when they were written. At the end of
the stream everything the last search finds is written, as FBK's agent does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs.model_archive import ModelArchiveError, PackedModel, open_model
from espnet2_ext.main_funcs.training_utterances import TrainingUtterances
from espnet2_ext.segmentation.options import FRAME_SECONDS
from espnet2_ext.simultaneous.incremental_features import GlobalCMVN
from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError
from espnet2_ext.simultaneous.translator import (
    VAD_BLOCK_FRAMES,
    CommittedWord,
    SimultaneousTranslator,
    model_settings,
)
from espnet2_ext.streaming import history
from espnet2_ext.streaming.options import ATTENTION_HISTORIES, StreamOptions, packed_stream_settings
from espnet2_ext.utils.fbank import FRAME_SHIFT_MS

__all__ = ["DEFAULT_MAX_HISTORY_SECONDS", "StreamedWord", "StreamingTranslator", "stream_settings"]

DEFAULT_MAX_HISTORY_SECONDS = 30.0  # for a model that does not say how long its utterances were

StreamedWord = CommittedWord  # text, seconds of stream received when written, and with the computing


def stream_settings(model: str | Path, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The settings packed with a model for streams: stage 9's simultaneous ones, then stage 10's
    streaming ones over them (``{}`` when it has neither)."""
    packed = open_model(model, cache_dir)
    try:
        return {**model_settings(model, cache_dir), **packed_stream_settings(packed.meta)}
    except SimulOptionsError as err:
        raise ModelArchiveError(f"{model}: {err}") from None


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
        model_id: what tells the model apart (the zip's SHA-256), recorded by ``simulate``.
    """

    options: StreamOptions

    def __init__(
        self,
        translator: Speech2Translation,
        options: StreamOptions,
        global_cmvn: GlobalCMVN | None = None,
        source: str = "the model",
        model_id: str | None = None,
    ):
        if not isinstance(options, StreamOptions) or options.history not in ATTENTION_HISTORIES:
            raise SimulOptionsError(f"StreamAtt needs a history: {', '.join(ATTENTION_HISTORIES)}")
        if options.max_history_seconds is None:
            raise ValueError("max_history_seconds must be resolved (from_pretrained takes it from the model)")
        super().__init__(translator, options, global_cmvn, source, model_id)
        self._subsampling = int(self._frame_ms // FRAME_SHIFT_MS)  # feature frames per encoder frame
        self._max_frames = int(options.max_history_seconds * 1000 / FRAME_SHIFT_MS)
        vad_lag = (VAD_BLOCK_FRAMES + translator.segmentation.smoothing_frames // 2) * FRAME_SECONDS
        lead = translator.segmentation.pad_start_seconds + vad_lag  # kept of a history without speech
        self._lead_frames = int(lead * 1000 / FRAME_SHIFT_MS)

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
        (:class:`~espnet2_ext.streaming.options.StreamOptions`' fields; ``history`` defaults to
        ``words``); those not given are the model's packed streaming, then simultaneous settings
        (:func:`stream_settings`), else FBK's."""
        setting = StreamOptions.checked(**{"history": "words", **stream_settings(model, cache_dir), **options})
        (translator,) = cls.for_settings(model, [setting], cache_dir, device, silence_dbfs)
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
        self._vad_frames = 0  # Silero frames judged so far
        self._speech_until = float("-inf")  # stream seconds where the last speech frame judged ends

    @property
    def history_seconds(self) -> float:
        """Seconds of audio the next step's encoder reads."""
        return len(self._fbank.features) * FRAME_SHIFT_MS / 1000

    @property
    def text_history(self) -> list[int]:
        """The target ids the next search forces after the language tag."""
        return list(self._committed)

    # ------------------------------------------------------------------ hooks of the step

    def _feed_16k(self, waveform: np.ndarray) -> None:
        """Features, and the VAD all along the talk (the base class stops it at the first speech)."""
        self._fbank.feed(waveform)
        self._judge(self._smoothing.feed(self._vad.feed(waveform)))

    def _judge(self, probabilities: np.ndarray) -> None:
        """Where the last speech frame judged ends, in stream seconds."""
        speech = np.flatnonzero(probabilities >= self.translator.segmentation.threshold)
        if len(speech):
            self._speech_until = (self._vad_frames + int(speech[-1]) + 1) * FRAME_SECONDS
            self._speech_seen = True
        self._vad_frames += len(probabilities)

    def _silent(self) -> bool:
        """No speech judged in the audio history (the frames before it dropped)."""
        return self._speech_until <= self._fbank.discarded_frames * FRAME_SHIFT_MS / 1000

    def _step(self, final: bool) -> list[str]:
        """A policy step; after a long pause, the flush of everything the hypothesis holds."""
        if final or not self._paused():
            return super()._step(final)
        words = super()._step(final=True)
        self._committed = []
        self._fbank.discard(max(0, len(self._fbank.features) - self._lead_frames))
        return words

    def _paused(self) -> bool:
        """The history holds speech, but none was judged for ``pause_flush_seconds``."""
        pause = self.options.pause_flush_seconds
        if pause is None or self._silent():
            return False
        return self._speech_until + pause <= self._vad_frames * FRAME_SECONDS

    def _bound_audio(self) -> None:
        """Before the encoder sees them: a history without speech goes, but for its lead (the
        text history with it); the oldest frames beyond ``max_history_seconds`` go."""
        frames = len(self._fbank.features)
        if self._silent() and frames > self._lead_frames:
            self._fbank.discard(frames - self._lead_frames)
            self._committed = []
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
                attention, len(self.tag), discarded, self._position_runs(encoded), self._subsampling,
                options.audio_cut,
            )
        self._committed = kept
        self._fbank.discard(min(frames, len(self._fbank.features)))
