"""Translate speech with a trained CTC-compressing ST model (FBK's decoding set-up).

:class:`Speech2Translation` is the Python API, in the spirit of ESPnet's
``Speech2Text``: build it once (from a training config and weights, or with
:meth:`Speech2Translation.from_pretrained` from a packed ``model.zip``), then call
it on a file or a waveform. Utterances are encoded and searched in batches (the
encoder and the search are padding-invariant, so batching never changes a
result): the decoder scores all utterances' hypotheses at each step, by
fairseq's search rules as FBK decodes (:class:`~espnet2_ext.st.beam_search.FairseqBeamSearch`,
``search: fairseq``) or ESPnet's (``search: espnet``), with the language tag
forced after <sos> and no repeated n-grams.
The intermediate CTC head's greedy transcript of the source comes with every
translation.

Nothing here imports ESPnet's task registry or its tokenizer registry (whose
phoneme tokenizers pull in g2p_en and nltk): the model is built from the
classes its config names (:func:`espnet2_ext.tasks.model_building.lazy_class`).
``espnet2_ext.bin.translate`` (audio files) and ``espnet2_ext.bin.st_inference``
(the recipe's feature dumps) are the command lines.
"""

import argparse
import copy
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml
from espnet2.text.token_id_converter import TokenIDConverter

from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import CTCCompressEncoderOutput
from espnet2_ext.inference.audio import AudioError, peak_dbfs
from espnet2_ext.inference.ordered_batches import Finished, OrderedBatches
from espnet2_ext.inference.speech_input import (
    SpeechInput,
    array_input,
    as_input,
    chunks_16k,
    file_input,
    stream_input,
)
from espnet2_ext.layers.ctc_compression import compressed_run_lengths
from espnet2_ext.main_funcs.model_archive import open_model
from espnet2_ext.main_funcs.training_utterances import TrainingUtterances, segmentation_options
from espnet2_ext.segmentation import SHAS_MUSTC, Segment, StreamSegmenter
from espnet2_ext.st.beam_search import SEARCHES, FairseqBeamSearch, Hypothesis, UtteranceBatchBeamSearch
from espnet2_ext.subtitles import DEFAULT_TIMING, Block, SubtitleLimits, TimedSegment, build_blocks
from espnet2_ext.subtitles.timing import attention_word_times
from espnet2_ext.tasks.model_building import UnreadableWeightsError, load_st_model
from espnet2_ext.utils.fbank import FRAME_LENGTH_MS, FRAME_SHIFT_MS, SAMPLE_RATE, compute_fbank, num_frames

LANG_TAG_PREFIX = "<lang:"
ATTENTION_LAYER = 3  # FBK's --extract-attn-from-layer (0-based) for SBAAM and AlignAtt
BLANK = "<blank>"  # ESPnet's id 0, never a target (an imported FBK model's fairseq <pad>)
AudioInput = str | Path | tuple[Any, int] | SpeechInput


class Translation(NamedTuple):
    """One hypothesis: detokenised text, its pieces and ids (tag and <eos> removed).

    ``word_times``: each word of ``text`` (whitespace-separated), (start, end) in seconds
    from the start of its segment, where the decoder's cross-attention aligns it
    (:mod:`espnet2_ext.subtitles.timing`); None with ``search: espnet``, which records
    no attention, or when the pieces do not spell the text's words.
    """

    text: str
    tokens: list[str]
    token_ids: list[int]
    score: float
    word_times: list[tuple[float, float]] | None = None


class SegmentTranslation(NamedTuple):
    """A stretch of the input (times in seconds), its n-best and the CTC transcript of the source."""

    start: float
    end: float
    nbest: list[Translation]
    source: str


class TranslationResult(NamedTuple):
    """Everything translating one input gives.

    ``segments`` holds one entry per stretch translated: one for audio within
    ``max_segment_seconds`` without a pause of ``pause_seconds``, one per speech
    segment of other audio, none for
    silence or audio without speech. ``warnings`` says why an input was left
    (partly) untranslated; ``error``, why it could not be translated at all.
    """

    name: str
    segments: list[SegmentTranslation]
    warnings: list[str]
    error: str | None = None

    @property
    def text(self) -> str:
        """The best translation; segments joined by a space; empty for silence."""
        return " ".join(s.nbest[0].text for s in self.segments if s.nbest and s.nbest[0].text)

    @property
    def source(self) -> str:
        """The greedy CTC transcript of the source speech (lowercased, no punctuation)."""
        return " ".join(s.source for s in self.segments if s.source)

    def subtitles(self, timing: str = DEFAULT_TIMING, **limits: Any) -> list[Block]:
        """The best translation as subtitle blocks (what ``translate --format srt`` writes).

        Args:
            timing: ``attention`` (each word when the cross-attention aligns it, where
                known) or ``proportional`` (each segment shared by characters).
            limits: :class:`~espnet2_ext.subtitles.SubtitleLimits`' fields, e.g.
                ``max_chars=42, max_lines=2, max_cps=21``.
        """
        return build_blocks(timed_segments(self.segments), SubtitleLimits(**limits), timing)

    @property
    def nbest(self) -> list[Translation]:
        """The n-best list of an input translated in one piece (see ``segments`` otherwise)."""
        if len(self.segments) != 1:
            raise ValueError(
                f"{self.name} was translated in {len(self.segments)} segments; "
                "read each one's n-best from .segments"
            )
        return self.segments[0].nbest


def timed_segments(segments: Sequence[SegmentTranslation]) -> list[TimedSegment]:
    """The segments' best translations, with their words' times in seconds of the recording."""
    timed = []
    for s in segments:
        best = s.nbest[0] if s.nbest else None
        times = None
        if best is not None and best.word_times is not None:
            times = [(s.start + a, s.start + b) for a, b in best.word_times]
        timed.append(TimedSegment(s.start, s.end, best.text if best else "", times))
    return timed


def text_tokenizer(token_type: str, bpemodel: str | None) -> Any:
    """ESPnet's tokenizer of a config; SentencePiece without ESPnet's tokenizer registry,
    which imports every phoneme tokenizer (g2p_en, nltk) to build any tokenizer."""
    if token_type == "bpe":
        from espnet2.text.sentencepiece_tokenizer import SentencepiecesTokenizer

        return SentencepiecesTokenizer(bpemodel)
    if token_type == "word":
        from espnet2.text.word_tokenizer import WordTokenizer

        return WordTokenizer()
    if token_type == "char":
        from espnet2.text.char_tokenizer import CharTokenizer

        return CharTokenizer()
    from espnet2.text.build_tokenizer import build_tokenizer

    return build_tokenizer(token_type=token_type, bpemodel=bpemodel)


def resolve_lang_tag(token_list: Sequence[str], lang_tag: str | None) -> list[int]:
    """Ids forced after <sos>: the language tag asked for, the model's only tag, or
    none for a model without tags (FBK's published models have none)."""
    tags = [t for t in token_list if t.startswith(LANG_TAG_PREFIX)]
    if lang_tag is None:
        if len(tags) > 1:
            raise ValueError(
                f"the model knows {len(tags)} language tags ({', '.join(tags)}); choose one with --lang_tag"
            )
        return [token_list.index(tag) for tag in tags]
    if lang_tag not in token_list:
        raise ValueError(f"--lang_tag {lang_tag!r} is not in the model's token list (tags: {tags or 'none'})")
    return [token_list.index(lang_tag)]


class Speech2Translation:
    """Load a trained model once, then translate files, waveforms, streams or feature batches.

    Example::

        translator = Speech2Translation.from_pretrained("model.zip", beam_size=5)
        result = translator("talk.flac")               # or translator(samples, sample_rate)
        print(result.text, result.source)
        for segment in result.segments:                # a long recording comes in several
            print(segment.start, segment.end, segment.nbest[0].text, segment.nbest[0].score)

    Audio longer than ``max_segment_seconds`` is cut where speech is least likely:
    Silero VAD's speech probabilities, split by SHAS's divide-and-conquer
    (:mod:`espnet2_ext.segmentation`), and so is any at pauses of ``pause_seconds``;
    shorter audio without such a pause is translated whole. Audio
    without speech (silence, noise) gets an empty translation and a warning.

    Args:
        st_train_config: the ``config.yaml`` written by training, or its contents
            as a mapping with file paths resolved (what :meth:`from_pretrained` passes).
        st_model_file: model weights (e.g. the averaged checkpoint), loaded strictly;
            None leaves the weights random (benchmarks).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (checked: :func:`check_device`).
        search: ``fairseq`` (FBK's decoding, fairseq's ``SequenceGenerator`` rules)
            or ``espnet`` (ESPnet's beam search with fairseq's stopping rule).
        beam_size: beam width, >= 1 (FBK: 5).
        no_repeat_ngram_size: forbid repeating n-grams of this size (0: off; FBK: 5).
        maxlen_a, maxlen_b: at most ``maxlen_a * input_frames + maxlen_b`` tokens.
        nbest: hypotheses returned per utterance, 1 to ``beam_size``.
        lang_tag: target-language tag forced after <sos>, e.g. ``<lang:de>``.
        dtype: inference dtype.
        max_segment_seconds: segments are shorter than this; None: the model's (the
            95th percentile of ``training_utterances``), else SHAS's MuST-C setting (18 s).
        min_segment_seconds: a cut leaves both sides longer than this (SHAS: 0.2 s).
        vad_threshold: speech probability below which a frame is not speech (SHAS: 0.5).
        pause_seconds: pauses at least this long always separate segments; None: the
            model's (longer than those inside its training utterances), 0: never (SHAS).
        pad_start_seconds, pad_end_seconds: non-speech a segment keeps before and after
            its speech; None: the model's (its training utterances' medians), else 0.
        silence_dbfs: audio whose peak stays below this level is not translated
            (an empty translation and a warning instead of a hallucination).
        training_utterances: what the model's training utterances looked like, which sets
            the segmentation defaults (:mod:`espnet2_ext.main_funcs.training_utterances`).
        attention_layer: the decoder layer (0-based) whose cross-attention times the
            words (``Translation.word_times``, ``search: fairseq`` only); None: FBK's 3,
            or the last layer of a decoder with fewer.
    """

    def __init__(
        self,
        st_train_config: Path | str | dict[str, Any],
        st_model_file: Path | str | None,
        device: str = "cpu",
        search: str = "fairseq",
        beam_size: int = 5,
        no_repeat_ngram_size: int = 5,
        maxlen_a: float = 0.0,
        maxlen_b: int = 200,
        nbest: int = 1,
        lang_tag: str | None = None,
        dtype: str = "float32",
        max_segment_seconds: float | None = None,
        min_segment_seconds: float = SHAS_MUSTC.min_seconds,
        vad_threshold: float = SHAS_MUSTC.threshold,
        pause_seconds: float | None = None,
        pad_start_seconds: float | None = None,
        pad_end_seconds: float | None = None,
        silence_dbfs: float = -60.0,
        training_utterances: TrainingUtterances | None = None,
        attention_layer: int | None = None,
    ):
        if search not in SEARCHES:
            raise ValueError(f"search: unknown {search!r}, expected one of {SEARCHES}")
        check_device(device)
        check_search_options(beam_size, nbest, maxlen_a, maxlen_b, no_repeat_ngram_size)
        if not math.isfinite(silence_dbfs) or silence_dbfs > 0:
            raise ValueError(f"silence_dbfs must be a level <= 0 dBFS, got {silence_dbfs}")
        self.segmentation = segmentation_options(
            training_utterances, max_segment_seconds, min_segment_seconds, vad_threshold,
            pause_seconds, pad_start_seconds, pad_end_seconds,
        )
        if isinstance(st_train_config, dict):
            train_args = argparse.Namespace(**copy.deepcopy(st_train_config))
        else:
            with open(st_train_config, encoding="utf-8") as f:
                train_args = argparse.Namespace(**yaml.safe_load(f))
        model = load_st_model(train_args, st_model_file, device)
        self.attention_layer = check_attention_layer(attention_layer, len(model.decoder.decoders))
        self.model = model.to(dtype=getattr(torch, dtype)).eval()
        self.train_args = train_args
        self.device = device
        self.dtype = dtype
        self.nbest = nbest
        self.maxlen_a = maxlen_a
        self.maxlen_b = maxlen_b
        self.silence_dbfs = silence_dbfs
        self._segmenter: StreamSegmenter | None = None  # Silero's network loads on first use
        token_list = model.token_list
        self.converter = TokenIDConverter(token_list=token_list)
        self.tokenizer = text_tokenizer(train_args.token_type, train_args.bpemodel)
        self.src_converter = TokenIDConverter(token_list=model.src_token_list)
        self.src_tokenizer = text_tokenizer(train_args.src_token_type, train_args.src_bpemodel)
        prefix = resolve_lang_tag(token_list, lang_tag)
        self.primer = [model.sos] + prefix
        if search == "fairseq":
            self.beam_search = FairseqBeamSearch(
                model.decoder,
                vocab_size=len(token_list),
                sos=model.sos,
                eos=model.eos,
                prefix=prefix,
                beam_size=beam_size,
                no_repeat_ngram_size=no_repeat_ngram_size,
                never=[token_list.index(BLANK)] if BLANK in token_list else [],
            ).eval()
        else:
            self.beam_search = UtteranceBatchBeamSearch(
                model.decoder,
                vocab_size=len(token_list),
                sos=model.sos,
                eos=model.eos,
                primer=self.primer,
                beam_size=beam_size,
                no_repeat_ngram_size=no_repeat_ngram_size,
            ).eval()

    @classmethod
    def from_pretrained(
        cls, model: str | Path, cache_dir: str | Path | None = None, **kwargs: Any
    ) -> "Speech2Translation":
        """Load a packed ``model.zip`` (recipe stage 8) or the directory it was unpacked into.

        The archive is checked before anything is built
        (:func:`espnet2_ext.main_funcs.model_archive.open_model`); ``kwargs`` are
        the constructor's search, segmentation and device options. What the model's
        training utterances looked like, packed with it, sets the segmentation's defaults.
        """
        packed = open_model(model, cache_dir)
        kwargs.setdefault("training_utterances", TrainingUtterances.from_meta(packed.meta))
        try:
            return cls(packed.config, packed.model_file, **kwargs)
        except UnreadableWeightsError as err:
            raise packed.unreadable_weights(err.reason) from None

    # ------------------------------------------------------------------ audio in

    def __call__(self, audio: str | Path | Any, sample_rate: int | None = None) -> TranslationResult:
        """Translate one input: a path, or a waveform with its sample rate (also needed by
        headerless ``.raw``/``.pcm`` files, read as 16-bit mono PCM).

        Raises:
            AudioError: unreadable, empty, not valid audio, or shorter than the encoder needs.
        """
        if isinstance(audio, (str, Path)):
            item = file_input(audio, raw_sample_rate=sample_rate)
        else:
            item = array_input(audio, sample_rate)
        (result,) = self.translate_inputs([item])
        if result.error is not None:
            raise AudioError(result.error)
        return result

    def translate_batch(self, inputs: Iterable[AudioInput], batch_size: int = 10) -> list[TranslationResult]:
        """Translate many inputs (paths, ``(waveform, sample_rate)`` pairs or
        :class:`~espnet2_ext.inference.speech_input.SpeechInput`), ``batch_size`` segments at a time.

        Each input gets its result; one that cannot be translated gets its ``error``
        (and no segments) instead of stopping the others.
        """
        return list(self.translate_inputs(_as_inputs(inputs), batch_size))

    def translate_stream(
        self, chunks: Iterable[Any], sample_rate: int, name: str = "stream", batch_size: int = 1
    ) -> Iterator[SegmentTranslation]:
        """Translate audio that arrives in chunks (live, or a recording longer than memory):
        each segment is yielded as soon as it is cut and translated.

        Memory stays bounded by the segmenter's window (4 x ``max_segment_seconds``,
        at least 60 s) whatever the length of the stream. Warnings are logged.

        Raises:
            AudioError: a chunk that is not valid audio, or a stream too short to translate.
        """
        warnings: list[str] = []
        pending: list[tuple[tuple[float, float], np.ndarray]] = []
        for span, features in self._segment_features(stream_input(chunks, sample_rate, name), warnings):
            pending.append((span, features))
            if len(pending) >= batch_size:
                yield from self._translate_segments(pending)
                pending = []
        yield from self._translate_segments(pending)
        for warning in warnings:
            logging.warning(warning)

    def translate_inputs(self, inputs: Iterable[SpeechInput], batch_size: int = 10) -> Iterator[TranslationResult]:
        """Each input's result, in input order, as soon as it and those before it are done.

        Inputs are read one after the other, in blocks, and cut into segments;
        segments of similar lengths are translated together (:class:`OrderedBatches`).
        An input that fails (unreadable, not valid audio, too short) gets its ``error``.
        """
        batches: OrderedBatches[tuple[list[Translation], str]] = OrderedBatches(self._decode_features, batch_size)
        for item in inputs:
            warnings: list[str] = []
            number = batches.open(item.name, warnings)
            try:
                for span, features in self._segment_features(item, warnings):
                    batches.add(number, span, features)
                    yield from map(self._result, batches.ready())
            except AudioError as err:
                batches.fail(number, str(err))
            else:
                batches.close(number)
            for warning in warnings:
                logging.warning(warning)
            yield from map(self._result, batches.ready())
        yield from map(self._result, batches.finish())

    def _segment_features(
        self, item: SpeechInput, warnings: list[str]
    ) -> Iterator[tuple[tuple[float, float], np.ndarray]]:
        """The features of each speech segment of an input, as the segmenter cuts them.

        ``warnings`` gets why stretches were not translated (silent, too short) or,
        when none was, why (silent, no speech). Raises :class:`AudioError` for an
        input that is empty or shorter than the model needs, once it has ended.
        """
        segmenter = self._stream_segmenter()
        segmenter.reset()
        peak, count, skipped = float("-inf"), 0, []

        def segments() -> Iterator[Segment]:
            nonlocal peak
            for chunk in chunks_16k(item):
                peak = max(peak, peak_dbfs(chunk))
                yield from segmenter.feed(chunk)
            final = segmenter.finish()
            self._check_length(item.name, segmenter.samples_seen)
            yield from final

        for segment in segments():
            reason = self._unusable(segment)
            if reason is not None:
                skipped.append(f"{item.name}: {segment.span[0]:.2f}-{segment.span[1]:.2f} s {reason}")
                continue
            count += 1
            yield segment.span, compute_fbank(segment.samples, SAMPLE_RATE)
        seconds = segmenter.samples_seen / SAMPLE_RATE
        if count == 0 and peak < self.silence_dbfs:
            warnings.append(f"{item.name}: silent (peak {peak:.1f} dBFS < {self.silence_dbfs:g} dBFS): not translated")
        elif not segmenter.speech_seen:
            warnings.append(
                f"{item.name}: no speech found in {seconds:.1f} s (no frame reaches the voice-activity "
                f"threshold {self.segmentation.threshold:g}): not translated"
            )
        else:
            warnings += skipped
            if count > 1:
                logging.info("%s: %.1f s translated in %d segments", item.name, seconds, count)

    def _unusable(self, segment: Segment) -> str | None:
        """Why a segment is not translated, or None."""
        if peak_dbfs(segment.samples) < self.silence_dbfs:
            return "is silent: not translated"
        if num_frames(len(segment.samples)) < self.model.encoder.min_input_length:
            return "is too short to translate: skipped"
        return None

    def _stream_segmenter(self) -> StreamSegmenter:
        if self._segmenter is None:
            self._segmenter = StreamSegmenter(self.segmentation)
        return self._segmenter

    def _check_length(self, name: str, samples: int) -> None:
        if samples == 0:
            raise AudioError(f"{name}: empty audio (0 samples)")
        needed = self.model.encoder.min_input_length
        frames = num_frames(samples)
        if frames < needed:
            raise AudioError(
                f"{name}: {1000 * samples / SAMPLE_RATE:.0f} ms of audio gives {frames} feature frames; "
                f"the model needs at least {needed} (about {FRAME_LENGTH_MS + FRAME_SHIFT_MS * (needed - 1):.0f} ms)"
            )

    def _translate_segments(
        self, segments: Sequence[tuple[tuple[float, float], np.ndarray]]
    ) -> list[SegmentTranslation]:
        if not segments:
            return []
        decoded = self._decode_features([features for _, features in segments])
        return [SegmentTranslation(*span, nbest, source) for (span, _), (nbest, source) in zip(segments, decoded)]

    @staticmethod
    def _result(done: Finished[tuple[list[Translation], str]]) -> TranslationResult:
        segments = [SegmentTranslation(*span, nbest, source) for span, (nbest, source) in done.segments]
        return TranslationResult(done.name, segments, done.warnings, done.error)

    # ------------------------------------------------------------------ features in

    def translate_features(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> list[list[Translation]]:
        """N-best translations of each utterance of a padded feature batch (B, T, F)."""
        return self._search(speech, speech_lengths)[1]

    def _decode_features(self, features: Sequence[np.ndarray]) -> list[tuple[list[Translation], str]]:
        """(n-best, CTC source transcript) of each feature array (frames, dims)."""
        speech, lengths = pad_features(features)
        enc, nbests = self._search(speech, lengths)
        sources = [self.ctc_transcript(enc.ctc_logits[i, : enc.ctc_lengths[i]]) for i in range(len(nbests))]
        return list(zip(nbests, sources))

    @torch.no_grad()
    def _search(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[CTCCompressEncoderOutput, list[list[Translation]]]:
        """The encoder's output and each utterance's n-best translations, their words timed
        by the cross-attention when the search records it."""
        speech = speech.to(device=self.device, dtype=getattr(torch, self.dtype))
        enc = self.model.encode_with_ctc(speech, speech_lengths.to(self.device))
        maxlens = [max(1, int(self.maxlen_a * int(n) + self.maxlen_b)) for n in speech_lengths]
        if isinstance(self.beam_search, FairseqBeamSearch):
            nbests = self.beam_search(enc.hidden, enc.lengths, maxlens, attention_layer=self.attention_layer)
            encoder = self.model.encoder
            runs = compressed_run_lengths(
                enc.ctc_lengths, enc.ctc_logits, encoder.compression,
                encoder.compression_fixed_ratio, encoder.compression_max_out_size,
            )
        else:
            nbests = self.beam_search(enc.hidden, enc.lengths, maxlens)
            runs = [None] * len(nbests)
        frame_seconds = FRAME_SHIFT_MS * self.model.encoder.subsampling.factor / 1000
        return enc, [
            [
                self._to_translation(h, run, frame_seconds, audio_seconds(int(n)))
                for h in hyps[: self.nbest]
            ]
            for hyps, run, n in zip(nbests, runs, speech_lengths)
        ]

    def _to_translation(
        self, hyp: Hypothesis, runs: list[int] | None, frame_seconds: float, seconds: float
    ) -> Translation:
        """The hypothesis' text, pieces and ids, its words timed when its attention is known
        (one column per token after <sos>: the primer's tag first, <eos> last)."""
        token_ids = hyp.tokens[len(self.primer) :]
        while token_ids and token_ids[-1] == self.model.eos:  # two when <eos> was forced at the length limit
            token_ids = token_ids[:-1]
        tokens = self.converter.ids2tokens(token_ids)
        text = self.tokenizer.tokens2text(tokens)
        times = None
        if hyp.attention is not None and runs is not None and tokens:
            first = len(self.primer) - 1
            rows = hyp.attention[:, first : first + len(tokens)].T.cpu().numpy()
            times = attention_word_times(rows, tokens, text, runs, frame_seconds, seconds)
        return Translation(text, tokens, token_ids, hyp.score, times)

    def ctc_transcript(self, logits: torch.Tensor) -> str:
        """Words separated by single spaces: a lone word-boundary piece ("▁") decodes to a space of its own."""
        text = self.src_tokenizer.tokens2text(self.src_converter.ids2tokens(greedy_ctc_ids(logits)))
        return " ".join(text.split())


def check_attention_layer(layer: int | None, layers: int) -> int:
    """The decoder layer to read: ``layer``, checked, or FBK's :data:`ATTENTION_LAYER`
    (the last of a decoder with fewer layers) for None."""
    if layer is None:
        return min(ATTENTION_LAYER, layers - 1)
    if not 0 <= layer < layers:
        raise ValueError(f"attention_layer {layer}: the decoder has {layers} layers (0 to {layers - 1})")
    return layer


def audio_seconds(frames: int) -> float:
    """The length of audio whose features are ``frames`` frames (one 25-ms window, then 10-ms shifts)."""
    return (FRAME_LENGTH_MS + FRAME_SHIFT_MS * (frames - 1)) / 1000


def check_search_options(
    beam_size: int, nbest: int, maxlen_a: float, maxlen_b: int, no_repeat_ngram_size: int
) -> None:
    """``ValueError`` for search options that would silently give nothing or too little."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if nbest < 1:
        raise ValueError(f"nbest must be >= 1, got {nbest}")
    if nbest > beam_size:
        raise ValueError(f"nbest ({nbest}) cannot exceed beam_size ({beam_size})")
    if not math.isfinite(maxlen_a) or maxlen_a < 0:
        raise ValueError(f"maxlen_a must be >= 0, got {maxlen_a}")
    if maxlen_b < 0:
        raise ValueError(f"maxlen_b must be >= 0, got {maxlen_b}")
    if maxlen_a == 0 and maxlen_b == 0:
        raise ValueError("maxlen_a and maxlen_b are both 0: every translation would be empty")
    if no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be >= 0 (0: off), got {no_repeat_ngram_size}")


def _as_inputs(inputs: Iterable[AudioInput]) -> Iterator[SpeechInput]:
    """The API's inputs as SpeechInputs; one that is none of the accepted forms fails alone."""
    for number, item in enumerate(inputs):
        try:
            yield as_input(item)
        except AudioError as err:
            message = str(err)

            def refused(message: str = message) -> tuple[int, Iterable[np.ndarray]]:
                raise AudioError(message)

            yield SpeechInput(f"input {number}", refused)


def check_device(device: str) -> None:
    """``ValueError`` unless ``device`` is ``cpu``, or ``cuda`` / ``cuda:N`` with that GPU present."""
    try:
        parsed = torch.device(device)
    except RuntimeError:  # torch names its 20 device types
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: expected cpu, cuda or cuda:N")
    if parsed.type == "cpu":
        return
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        gpus = "is 1 CUDA GPU (cuda:0)" if count == 1 else f"are {count} CUDA GPUs (cuda:0 to cuda:{count - 1})"
        raise ValueError(f"device {device!r}: there {gpus}")


def greedy_ctc_ids(logits: torch.Tensor, blank: int = 0) -> list[int]:
    """Greedy CTC decoding of one utterance's logits (T, V): best label per frame,
    repeats merged, then blanks dropped (so a label repeated across a blank stays twice)."""
    ids = torch.unique_consecutive(logits.argmax(-1))
    return ids[ids != blank].tolist()


def pad_features(features: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch (B, T, F) and lengths (B,) of feature arrays (T_i, F)."""
    lengths = torch.tensor([len(f) for f in features])
    batch = torch.zeros(len(features), int(lengths.max()), features[0].shape[1])
    for i, f in enumerate(features):
        batch[i, : len(f)] = torch.from_numpy(f)
    return batch, lengths
