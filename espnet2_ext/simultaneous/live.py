"""An endless stream (a microphone, a broadcast) translated simultaneously, utterance after utterance.

:class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator` translates one
utterance: the model was trained on sentences, and its encoder re-runs on the whole
utterance after every chunk, so a stream must be cut. :class:`LiveTranslator` cuts it
where the speaker pauses, as it arrives: Silero VAD's speech probability for every
32-ms frame (:class:`~espnet2_ext.segmentation.voice_activity.SpeechProbability`, in
blocks of ``vad_block_frames`` so that it lags the audio by at most that much), and

- an utterance opens at the first speech frame, with up to ``pad_start_seconds`` of
  the audio before it (the lead the training utterances had);
- while it is open every sample goes to the translator once the VAD has judged its
  frame (at most ``vad_block_frames`` later), so the policy runs on time and an
  utterance holds exactly the frames up to where it ends, however the stream was cut
  into pushes: the same utterances and words from one long push as from many short ones;
- it ends, and everything left of it is written, after ``pause_seconds`` without
  speech (the model's: longer than any pause inside its training utterances), or once
  it reaches ``max_seconds`` (the model's: its training utterances' 95th percentile),
  when the next one opens at once.

Between utterances nothing is computed but the VAD. Word times are seconds since the
start of the stream. A push that is not audio (NaN or infinite samples, floats far
outside [-1, 1]) is refused before it changes anything: the stream goes on with the next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from espnet2_ext.inference.audio import as_waveform, check_sample_rate, check_samples
from espnet2_ext.segmentation.options import FRAME_SAMPLES
from espnet2_ext.segmentation.voice_activity import SpeechProbability
from espnet2_ext.simultaneous.translator import CommittedWord, SimultaneousTranslator
from espnet2_ext.utils.fbank import SAMPLE_RATE
from espnet2_ext.utils.resampling import StreamResampler

__all__ = ["LiveTranslator", "LiveWord"]

DEFAULT_PAUSE_SECONDS = 0.5  # for a model that says nothing of its training utterances
VAD_BLOCK_FRAMES = 8  # 256 ms: how late a pause or an onset is noticed at most


class LiveWord(NamedTuple):
    """A word written: its text, the stream time (s) when it was, and its utterance's number."""

    text: str
    time: float
    utterance: int


class LiveTranslator:
    """Translate a stream of any length as it arrives, cut into utterances at pauses.

    Example (16-bit PCM on stdin, e.g. from ``arecord``)::

        live = LiveTranslator.from_pretrained("model.zip", policy="alignatt", frame_num=4)
        while chunk := sys.stdin.buffer.read(3200):
            for word in live.push(np.frombuffer(chunk, "<i2"), 16000):
                print(word.text, end=" ", flush=True)
        live.finish()

    Args:
        translator: the utterance translator.
        pause_seconds: a pause this long ends an utterance.
        max_seconds: an utterance is cut at this length.
        pad_start_seconds: audio kept before an utterance's first speech frame.
        threshold: frames less likely speech than this are not speech.
        vad_block_frames: 32-ms frames the VAD waits for before it decides.
    """

    def __init__(
        self,
        translator: SimultaneousTranslator,
        pause_seconds: float = DEFAULT_PAUSE_SECONDS,
        max_seconds: float = 18.0,
        pad_start_seconds: float = 0.0,
        threshold: float = 0.5,
        vad_block_frames: int = VAD_BLOCK_FRAMES,
    ):
        if not pause_seconds > 0 or not max_seconds > pause_seconds or pad_start_seconds < 0:
            raise ValueError(
                f"expected 0 < pause_seconds < max_seconds and pad_start_seconds >= 0, got "
                f"{pause_seconds}, {max_seconds}, {pad_start_seconds}"
            )
        self.translator = translator
        self.pause_frames = max(1, round(pause_seconds * SAMPLE_RATE / FRAME_SAMPLES))
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.lead_samples = int(pad_start_seconds * SAMPLE_RATE)
        self.threshold = threshold
        self._vad = SpeechProbability(vad_block_frames)
        self.reset()

    @classmethod
    def from_pretrained(
        cls, model: str | Path, cache_dir: str | Path | None = None, device: str = "cpu", **options: Any
    ) -> LiveTranslator:
        """A packed model with the setting ``options``; the pauses, lengths and lead the
        model's training utterances had (as ``translate`` segments long audio)."""
        return cls.around(SimultaneousTranslator.from_pretrained(model, cache_dir, device, **options))

    @classmethod
    def around(cls, translator: SimultaneousTranslator) -> LiveTranslator:
        """``translator``'s utterances cut as its model's training utterances were."""
        cut = translator.translator.segmentation
        return cls(
            translator,
            pause_seconds=cut.pause_seconds or DEFAULT_PAUSE_SECONDS,
            max_seconds=cut.max_seconds,
            pad_start_seconds=cut.pad_start_seconds,
            threshold=cut.threshold,
        )

    @property
    def options(self) -> Any:
        """The setting each utterance is translated with."""
        return self.translator.options

    @property
    def model_id(self) -> str | None:
        return self.translator.model_id

    def reset(self) -> None:
        """Forget the stream, to start another."""
        self.translator.reset()
        self._vad.reset()
        self._resampler: StreamResampler | None = None
        self._rate: int | None = None
        self._audio = np.zeros(0, dtype=np.float32)  # 16 kHz samples from _audio_start on
        self._audio_start = 0  # stream sample of _audio[0]
        self._received = 0  # input samples pushed (at the stream's rate)
        self._judged = 0  # stream samples whose VAD frames are known
        self._utterance_start: int | None = None  # stream sample where the open utterance starts
        self._fed = 0  # stream samples given to the open utterance's translator
        self._quiet_frames = 0
        self.utterances = 0  # utterances opened so far
        self.spans: list[tuple[float, float]] = []  # (start, end) in stream seconds of each utterance closed

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[LiveWord]:
        """Take the next audio; return the words written because of it.

        Raises:
            AudioError: samples that are not audio; the stream is left as it was before.
        """
        rate = check_sample_rate(sample_rate, "push")
        if self._rate is not None and rate != self._rate:
            raise ValueError(f"push: {rate} Hz, but this stream started at {self._rate} Hz")
        waveform = as_waveform(samples, "push")
        check_samples(waveform, "push", rate, self._received)
        if self._rate is None:  # a new stream
            self._rate = rate
            self._resampler = StreamResampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None
            self.spans = []
        self._received += len(waveform)
        if self._resampler is not None:
            waveform = self._resampler.feed(waveform)
        return self._take(waveform, self._vad.feed(waveform))

    def finish(self, samples: Any = None, sample_rate: int = SAMPLE_RATE) -> list[LiveWord]:
        """The end of the stream, after its last ``samples`` if given (pushed as any others):
        the rest of the open utterance; then :meth:`reset`."""
        words = self.push(samples, sample_rate) if samples is not None and len(samples) else []
        tail = self._resampler.finish() if self._resampler is not None else np.zeros(0, dtype=np.float32)
        words += self._take(tail, self._vad.finish())
        if self._utterance_start is not None:
            words += self._close()
        spans = self.spans
        self.reset()
        self.spans = spans  # what the stream was cut into, until the next push
        return words

    # ------------------------------------------------------------------ the state machine

    def _take(self, waveform: np.ndarray, probabilities: np.ndarray) -> list[LiveWord]:
        """Decide frame by frame; the open utterance gets the audio up to the last frame judged."""
        self._audio = np.concatenate([self._audio, waveform])
        words: list[LiveWord] = []
        for probability in probabilities:
            frame_start = self._judged
            self._judged += FRAME_SAMPLES
            if self._utterance_start is None:
                if probability >= self.threshold:
                    self._open(max(0, frame_start - self.lead_samples))
                continue
            self._quiet_frames = 0 if probability >= self.threshold else self._quiet_frames + 1
            if self._quiet_frames >= self.pause_frames:
                words += self._feed_open_utterance() + self._close()
            elif self._judged - self._utterance_start >= self.max_samples:
                words += self._feed_open_utterance() + self._close()
                self._open(self._judged)
        words += self._feed_open_utterance()
        if self._utterance_start is None:  # keep only what a lead may need
            keep_from = max(self._audio_start, self._judged - self.lead_samples)
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from
        return words

    def _open(self, start: int) -> None:
        self._utterance_start = self._fed = max(start, self._audio_start)
        self._quiet_frames = 0
        self.utterances += 1
        self.translator.reset()

    def _feed_open_utterance(self) -> list[LiveWord]:
        """Give the open utterance the samples after what it has, up to the last frame judged
        (all the audio at the stream's end, whose last frame is padded)."""
        if self._utterance_start is None:
            return []
        end = min(self._judged, self._audio_start + len(self._audio))
        if end <= self._fed:
            return []
        committed = self.translator.push(self._audio[self._fed - self._audio_start : end - self._audio_start])
        self._fed = end
        return self._in_stream_time(committed)

    def _close(self) -> list[LiveWord]:
        words = self._in_stream_time(self.translator.finish())
        self.spans.append((self._utterance_start / SAMPLE_RATE, self._fed / SAMPLE_RATE))
        self._audio = self._audio[self._fed - self._audio_start :]
        self._audio_start = self._fed
        self._utterance_start = None
        return words

    def _in_stream_time(self, committed: list[CommittedWord]) -> list[LiveWord]:
        start = self._utterance_start / SAMPLE_RATE
        return [LiveWord(word.text, start + word.time, self.utterances) for word in committed]
