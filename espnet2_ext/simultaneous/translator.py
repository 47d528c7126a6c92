"""Simultaneous translation of live audio with the offline model, as FBK's v1_1 agents run it.

:class:`SimultaneousTranslator` is the Python API (``push`` audio as it arrives,
``finish`` at its end, ``reset`` for the next utterance) and the one implementation
of an agent's step, which ``simulate``, the recipe's stage 9 and the SimulEval
agent all drive. After every ``segment_ms`` of audio (SIMULST_FBK.md §1.4-1.7):

1. the features of everything received so far, exactly ``compute_fbank`` of it
   (:class:`~espnet2_ext.simultaneous.incremental_features.IncrementalFbank`),
   normalised with the zip's global statistics or the model's utterance CMVN
   over the prefix;
2. the whole encoder re-runs on them (it is bidirectional: every state changes);
3. one beam search forces the language tag and the tokens committed so far and
   records one decoder layer's cross-attention along the winning path;
4. the policy (:mod:`.policies`) takes what is safe of the new tokens, the word
   rule (:mod:`.words`) keeps whole words, and those are committed: forced in
   every later search and written with the time of audio received.

At the end of the input everything the last search finds is written
(``_emit_remaining_tokens``). As ``translate`` leaves them untranslated, audio too
short for the encoder, silence (peak below ``silence_dbfs``) and audio without speech
get no words, as SimulEval counts an empty prediction: no step runs before Silero
VAD has found a speech frame (its threshold the model's segmentation's), so a
click or 100 ms of noise is not turned into invented words.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from espnet2_ext.inference.audio import as_waveform, check_sample_rate, check_samples, peak_dbfs
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.layers.ctc_compression import compressed_run_lengths
from espnet2_ext.main_funcs.model_archive import ModelArchiveError, PackedModel, open_model
from espnet2_ext.segmentation.smoothing import MovingAverage
from espnet2_ext.segmentation.voice_activity import SpeechProbability
from espnet2_ext.simultaneous import policies
from espnet2_ext.simultaneous.incremental_features import GlobalCMVN, IncrementalFbank, load_global_cmvn
from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError, packed_settings
from espnet2_ext.simultaneous.words import Words, all_words, complete_words, detokenize
from espnet2_ext.st.beam_search import FairseqBeamSearch
from espnet2_ext.utils.fbank import SAMPLE_RATE
from espnet2_ext.utils.resampling import StreamResampler

__all__ = ["CommittedWord", "SimultaneousTranslator", "model_settings"]

MS_PER_FRAME = 40  # FBK's unit of time for f and wait-k: one encoder frame of 4x subsampling
VAD_BLOCK_FRAMES = 4  # Silero's 32-ms frames judged together: speech is found at most 192 ms late
# (the block, and the two frames after it that the smoothing waits for)


DEFAULT_OPTIONS = SimulOptions()  # FBK's


def model_settings(model: str | Path, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The simultaneous settings packed with a model (recipe stage 8 packs stage 9's
    ``conf/simulate.yaml``): the defaults of every program over it; ``{}`` when it has none."""
    packed = open_model(model, cache_dir)
    try:
        return packed_settings(packed.meta)
    except SimulOptionsError as err:
        raise ModelArchiveError(f"{model}: {err}") from None


class CommittedWord(NamedTuple):
    """A word written, when: ``time`` is the seconds of audio received when it was
    committed (SimulEval's delay); ``elapsed`` adds the seconds of computation
    spent on the utterance until then (its computation-aware delay)."""

    text: str
    time: float
    elapsed: float


class SimultaneousTranslator:
    """Translate an utterance while it is spoken: words come as soon as the policy trusts them.

    Example::

        translator = SimultaneousTranslator.from_pretrained("model.zip", policy="alignatt", frame_num=4)
        for chunk in microphone():                    # any size, e.g. 100 ms of float samples
            for word in translator.push(chunk, 16000):
                print(word.text, f"(at {word.time:.1f} s)", flush=True)
        print(" ".join(w.text for w in translator.finish()))
        translator.reset()                            # the next utterance

    The policy runs once per ``segment_ms`` of audio received, however the audio is
    cut into pushes; ``finish`` takes the last samples (if any) without running it,
    as SimulEval's last segment. Audio at another rate than 16 kHz is resampled as a
    stream, which holds back up to a second of it until the next push or ``finish``.

    Args:
        translator: the offline model and its search (``search: fairseq``).
        options: the agent's setting (:class:`~espnet2_ext.simultaneous.options.SimulOptions`).
        global_cmvn: the statistics ``cmvn: global`` normalises with.
        source: what the model was loaded from, for messages.
        model_id: what tells the model apart from others (the zip's SHA-256: ``from_pretrained``
            sets it), which ``simulate`` records with a run's instances.
    """

    def __init__(
        self,
        translator: Speech2Translation,
        options: SimulOptions,
        global_cmvn: GlobalCMVN | None = None,
        source: str = "the model",
        model_id: str | None = None,
    ):
        options.check()
        layers = len(translator.model.decoder.decoders)
        if options.reads_attention and options.attention_layer >= layers:
            raise SimulOptionsError(
                f"attention_layer {options.attention_layer}: the decoder of {source} has {layers} layers "
                f"(0 to {layers - 1}); give one of them (FBK's {DEFAULT_OPTIONS.attention_layer} applies where "
                "neither you nor the settings packed with the model name one)"
            )
        if options.cmvn == "global" and global_cmvn is None:
            raise SimulOptionsError(
                f"cmvn: global needs global statistics and {source} has none: pack the model with "
                "--global_cmvn (run.sh stage 8 does), import FBK's with --gcmvn, or use cmvn: prefix"
            )
        if not isinstance(translator.beam_search, FairseqBeamSearch):
            raise ValueError("simultaneous translation needs the fairseq search (search: fairseq)")
        self.translator = translator
        self.model = translator.model
        self.model_id = model_id
        self.options = options
        self.global_cmvn = global_cmvn if options.cmvn == "global" else None
        self.tag = list(translator.primer[1:])
        self.pieces: Sequence[str] = self.model.token_list
        self.eos: int = self.model.eos
        encoder = self.model.encoder
        self._frame_ms = 10 * encoder.subsampling.factor  # one CTC frame (10-ms features)
        self._fbank = IncrementalFbank()
        self._vad = SpeechProbability(VAD_BLOCK_FRAMES)
        self._smoothing = MovingAverage(translator.segmentation.smoothing_frames // 2)  # as translate's segmenter
        self.reset()

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        silence_dbfs: float = -60.0,
        **options: Any,
    ) -> SimultaneousTranslator:
        """Load a packed ``model.zip`` (or its unpacked directory) with the setting ``options``
        (:class:`~espnet2_ext.simultaneous.options.SimulOptions`' fields); those not given are
        the model's (:func:`model_settings`), else FBK's."""
        setting = SimulOptions.checked(**{**model_settings(model, cache_dir), **options})
        (translator,) = cls.for_settings(model, [setting], cache_dir, device, silence_dbfs)
        return translator

    @classmethod
    def for_settings(
        cls,
        model: str | Path,
        settings: Sequence[SimulOptions],
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        silence_dbfs: float = -60.0,
    ) -> list[SimultaneousTranslator]:
        """One translator per setting, the model loaded once per distinct search (beam,
        n-gram rule, length, tag): what the recipe's list of settings needs."""
        packed = open_model(model, cache_dir)
        stats = load_global_cmvn(packed.global_cmvn) if packed.global_cmvn is not None else None
        searches: dict[tuple, Speech2Translation] = {}
        translators = []
        for setting in settings:
            setting = cls._setting_for(setting, packed)
            search = (setting.beam_size, setting.no_repeat_ngram_size, setting.maxlen_b, setting.lang_tag)
            if search not in searches:
                searches[search] = Speech2Translation.from_pretrained(
                    model,
                    cache_dir,
                    device=device,
                    search="fairseq",
                    beam_size=setting.beam_size,
                    no_repeat_ngram_size=setting.no_repeat_ngram_size,
                    maxlen_a=0.0,
                    maxlen_b=setting.maxlen_b,
                    lang_tag=setting.lang_tag,
                    silence_dbfs=silence_dbfs,
                )
            translators.append(cls(searches[search], setting, stats, source=str(model), model_id=packed.digest))
        return translators

    @classmethod
    def _setting_for(cls, setting: SimulOptions, packed: PackedModel) -> SimulOptions:
        """The setting as this kind of translator runs it on ``packed`` (defaults it takes from the model)."""
        return setting

    # ------------------------------------------------------------------ the stream

    def reset(self) -> None:
        """Forget the utterance, to start another."""
        self._fbank.reset()
        self._resampler: StreamResampler | None = None
        self._rate: int | None = None
        self._received = 0  # input samples at self._rate
        self._next_step = 0  # input samples after which the policy runs next
        self._peak = float("-inf")
        self._vad.reset()
        self._smoothing.reset()
        self._speech_seen = False  # whether a VAD frame of the utterance was speech
        self._computing = 0.0  # seconds spent on this utterance
        self._committed: list[int] = []  # target ids forced after the tag
        self._previous: list[int] | None = None  # local agreement's last hypothesis
        self._waitk_written = 0
        self._finished_target = False
        self.words: list[CommittedWord] = []
        self.finished = False

    @property
    def text(self) -> str:
        """Everything written so far."""
        return " ".join(word.text for word in self.words)

    @property
    def seconds_received(self) -> float:
        return self._received / self._rate if self._rate else 0.0

    def push(self, samples: Any, sample_rate: int = SAMPLE_RATE) -> list[CommittedWord]:
        """Take the next audio (mono float or integer samples, any length); return the words
        committed because of it, each with the time of audio received when it was."""
        if self.finished:
            raise RuntimeError("finish() was called: reset() before pushing another utterance")
        started = time.perf_counter()
        waveform = self._accept(samples, sample_rate)
        committed: list[CommittedWord] = []
        position = 0
        while position < len(waveform):
            if self._received >= self._next_step:
                self._next_step += self._segment_samples()
            take = min(len(waveform) - position, self._next_step - self._received)
            self._feed(waveform[position : position + take])
            position += take
            if self._received == self._next_step:
                committed += self._written(self._step(final=False), started)
        self._computing += time.perf_counter() - started
        return committed

    def finish(self, samples: Any = None, sample_rate: int = SAMPLE_RATE) -> list[CommittedWord]:
        """The end of the utterance: take its last samples, if any, without running the policy
        (SimulEval's last segment), and write everything the final search finds."""
        if self.finished:
            raise RuntimeError("finish() was already called: reset() first")
        started = time.perf_counter()
        if samples is not None:
            self._feed(self._accept(samples, sample_rate))
        if self._resampler is not None:
            self._feed_16k(self._resampler.finish())
        if not self._speech_seen:
            self._judge(np.concatenate([self._smoothing.feed(self._vad.finish()), self._smoothing.finish()]))
        self.finished = True
        committed = self._written(self._step(final=True), started)
        self._computing += time.perf_counter() - started
        return committed

    def _accept(self, samples: Any, sample_rate: int) -> np.ndarray:
        rate = check_sample_rate(sample_rate, "push")
        if self._rate is None:
            self._rate = rate
            self._resampler = StreamResampler(rate, SAMPLE_RATE) if rate != SAMPLE_RATE else None
        elif rate != self._rate:
            raise ValueError(f"push: {rate} Hz, but this utterance started at {self._rate} Hz")
        waveform = as_waveform(samples, "push")
        check_samples(waveform, "push", rate, self._received)
        return waveform

    def _segment_samples(self) -> int:
        """SimulEval's segment: ``ceil(segment_ms / 1000 * rate)`` samples."""
        return math.ceil(self.options.segment_ms / 1000 * self._rate)

    def _feed(self, waveform: np.ndarray) -> None:
        self._received += len(waveform)
        self._peak = max(self._peak, peak_dbfs(waveform))
        self._feed_16k(self._resampler.feed(waveform) if self._resampler is not None else waveform)

    def _feed_16k(self, waveform: np.ndarray) -> None:
        """Features, and the VAD until it has found speech."""
        self._fbank.feed(waveform)
        if not self._speech_seen:
            self._judge(self._smoothing.feed(self._vad.feed(waveform)))

    def _judge(self, probabilities: np.ndarray) -> None:
        """Speech is found as ``translate``'s segmenter finds it: smoothed probabilities at the threshold."""
        self._speech_seen = bool(np.any(probabilities >= self.translator.segmentation.threshold))

    def _written(self, words: list[str], started: float) -> list[CommittedWord]:
        """``words`` as committed now: at the audio received, after the computation so far."""
        now = self.seconds_received
        elapsed = now + self._computing + time.perf_counter() - started
        committed = [CommittedWord(word, now, elapsed) for word in words]
        self.words += committed
        return committed

    # ------------------------------------------------------------------ one step

    @torch.no_grad()
    def _step(self, final: bool) -> list[str]:
        """The words committed after the audio so far (all that is left when ``final``).

        The audio and text it conditions on are the utterance so far; a subclass that
        streams whole talks bounds them (:meth:`_bound_audio`, :meth:`_select_history`).
        """
        self._bound_audio()
        features = self._fbank.features
        if self._finished_target or len(features) < self.model.encoder.min_input_length:
            return []
        if self._silent():
            return []
        encoded = self._encode(features)
        source_words = 0  # wait-k's, counted once per step (the CTC transcript's words cost a decoding)
        if self.options.policy == "waitk" and not final:
            source_words = self._waitk_source_words(encoded)
            if policies.waitk_words(source_words, self._waitk_written, self.options.waitk) == 0:
                return []
        prefix = self.tag + self._committed
        layer = self.options.attention_layer if self.options.reads_attention else None
        (hypotheses,) = self.translator.beam_search(
            encoded.hidden, encoded.lengths, [self.options.maxlen_b], prefixes=[prefix], attention_layer=layer
        )
        if not hypotheses:  # every hypothesis died in the forced prefix
            return []
        best = hypotheses[0]
        tokens = best.tokens[1:]  # after <sos>: prefix, new tokens, <eos>
        if final:
            return self._commit(all_words(tokens[len(prefix) :], self.pieces, self.eos))
        committed = self._commit(self._policy(tokens, best.attention, len(prefix), encoded, source_words))
        self._select_history(best.attention, encoded)
        return committed

    # ------------------------------------------------------------------ what a step conditions on

    def _silent(self) -> bool:
        """No search while everything received is quieter than ``silence_dbfs`` or has no speech."""
        return self._peak < self.translator.silence_dbfs or not self._speech_seen

    def _bound_audio(self) -> None:
        """Before a step: the features it encodes are the whole utterance, kept as they are."""

    def _select_history(self, attention: torch.Tensor | None, encoded: Any) -> None:
        """After a policy step: every committed token stays forced, all audio stays."""

    def _encode(self, features: np.ndarray) -> Any:
        """The encoder's output for the whole prefix, normalised as ``cmvn`` says."""
        model = self.model
        dtype = getattr(torch, self.translator.dtype)
        lengths = torch.tensor([len(features)], device=self.translator.device)
        if self.global_cmvn is not None:
            x = torch.from_numpy(self.global_cmvn(features))[None].to(self.translator.device, dtype)
            return model.encoder.encode(x, lengths)
        x = torch.from_numpy(np.array(features))[None].to(self.translator.device, dtype)
        return model.encode_with_ctc(x, lengths)

    def _policy(
        self, tokens: list[int], attention: torch.Tensor | None, prefix_len: int, encoded: Any, source_words: int
    ) -> Words:
        options = self.options
        if options.policy == "alignatt":
            runs = self._run_frames(encoded) if options.frame_unit == "time" else None
            accepted = policies.alignatt(
                tokens, attention, prefix_len, options.frame_num, options.frame_unit, runs
            )
            return complete_words(accepted, self.pieces, self.eos)
        if options.policy == "edatt":
            accepted = policies.edatt(
                tokens, attention, prefix_len, options.frame_num, options.attn_threshold, has_lang_tag=bool(self.tag)
            )
            return complete_words(accepted, self.pieces, self.eos)
        if options.policy == "la":
            previous, self._previous = self._previous, tokens
            agreed = policies.local_agreement(previous, tokens, prefix_len, self.eos)
            return complete_words(agreed, self.pieces, self.eos)
        accepted = policies.waitk(tokens, prefix_len, self.pieces, source_words, self._waitk_written, options.waitk)
        self._waitk_written += policies.waitk_words(source_words, self._waitk_written, options.waitk)
        if self.eos in accepted:  # the hypothesis ended before the input: wait-k's translation is done
            self._finished_target = True
        ids = [i for i in accepted if i != self.eos]
        return Words(ids, detokenize(ids, self.pieces, self.eos))

    def _commit(self, words: Words) -> list[str]:
        self._committed += words.ids
        return words.text.split()

    def _position_runs(self, encoded: Any) -> list[int]:
        """How many CTC frames each encoder position merged (all 1 without compression)."""
        encoder = self.model.encoder
        (runs,) = compressed_run_lengths(
            encoded.ctc_lengths,
            encoded.ctc_logits,
            encoder.compression,
            encoder.compression_fixed_ratio,
            encoder.compression_max_out_size,
        )
        return runs

    def _run_frames(self, encoded: Any) -> list[int]:
        """How many 40-ms frames each encoder position covers (``frame_unit: time``)."""
        scale = max(1, self._frame_ms // MS_PER_FRAME)
        return [n * scale for n in self._position_runs(encoded)]

    def _waitk_source_words(self, encoded: Any) -> int:
        if self.options.waitk_source == "ctc":
            logits = encoded.ctc_logits[0, : int(encoded.ctc_lengths[0])]
            return policies.source_words_ctc(self.translator.ctc_transcript(logits))
        frames_40ms = int(encoded.ctc_lengths[0]) * self._frame_ms // MS_PER_FRAME
        return policies.source_words_fixed(frames_40ms, self.options.segment_factor)
