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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml
from espnet2.text.token_id_converter import TokenIDConverter

from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import CTCCompressEncoderOutput
from espnet2_ext.inference.audio import AudioError, as_waveform, peak_dbfs, read_audio, split_at_pauses
from espnet2_ext.main_funcs.model_archive import open_model
from espnet2_ext.st.beam_search import SEARCHES, FairseqBeamSearch, UtteranceBatchBeamSearch
from espnet2_ext.tasks.model_building import load_st_model
from espnet2_ext.utils.fbank import FRAME_LENGTH_MS, FRAME_SHIFT_MS, SAMPLE_RATE, compute_fbank, num_frames

LANG_TAG_PREFIX = "<lang:"
BLANK = "<blank>"  # ESPnet's id 0, never a target (an imported FBK model's fairseq <pad>)
AudioInput = str | Path | tuple[np.ndarray, int]


class Translation(NamedTuple):
    """One hypothesis: detokenised text, its pieces and ids (tag and <eos> removed)."""

    text: str
    tokens: list[str]
    token_ids: list[int]
    score: float


class SegmentTranslation(NamedTuple):
    """A stretch of the input (times in seconds), its n-best and the CTC transcript of the source."""

    start: float
    end: float
    nbest: list[Translation]
    source: str


class TranslationResult(NamedTuple):
    """Everything translating one input gives.

    ``segments`` holds one entry per stretch translated: one for ordinary audio,
    several for audio longer than ``max_segment_seconds``, none for silence.
    ``warnings`` says why an input was segmented, or left (partly) untranslated.
    """

    name: str
    segments: list[SegmentTranslation]
    warnings: list[str]

    @property
    def text(self) -> str:
        """The best translation; segments joined by a space; empty for silence."""
        return " ".join(s.nbest[0].text for s in self.segments if s.nbest and s.nbest[0].text)

    @property
    def source(self) -> str:
        """The greedy CTC transcript of the source speech (lowercased, no punctuation)."""
        return " ".join(s.source for s in self.segments if s.source)

    @property
    def nbest(self) -> list[Translation]:
        """The n-best list of an input translated in one piece (see ``segments`` otherwise)."""
        if len(self.segments) != 1:
            raise ValueError(
                f"{self.name} was translated in {len(self.segments)} segments; "
                "read each one's n-best from .segments"
            )
        return self.segments[0].nbest


class PreparedAudio(NamedTuple):
    """An input checked and turned into features: one array (frames, 80) per segment."""

    name: str
    features: list[np.ndarray]
    spans: list[tuple[float, float]]
    warnings: list[str]


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
    """Load a trained model once, then translate files, waveforms or feature batches.

    Example::

        translator = Speech2Translation.from_pretrained("model.zip", beam_size=5)
        result = translator("talk.flac")               # or translator(samples, sample_rate)
        print(result.text, result.source, result.nbest[0].score)

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
        max_segment_seconds: longer audio is translated in segments cut at pauses,
            at most this long (training used utterances of at most 30 s).
        silence_dbfs: audio whose peak stays below this level is not translated
            (an empty translation and a warning instead of a hallucination).
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
        max_segment_seconds: float = 30.0,
        silence_dbfs: float = -60.0,
    ):
        if search not in SEARCHES:
            raise ValueError(f"search: unknown {search!r}, expected one of {SEARCHES}")
        check_device(device)
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if nbest < 1:
            raise ValueError(f"nbest must be >= 1, got {nbest}")
        if nbest > beam_size:
            raise ValueError(f"nbest ({nbest}) cannot exceed beam_size ({beam_size})")
        if max_segment_seconds <= 0:
            raise ValueError(f"max_segment_seconds must be > 0, got {max_segment_seconds}")
        if isinstance(st_train_config, dict):
            train_args = argparse.Namespace(**copy.deepcopy(st_train_config))
        else:
            with open(st_train_config, encoding="utf-8") as f:
                train_args = argparse.Namespace(**yaml.safe_load(f))
        model = load_st_model(train_args, st_model_file, device)
        self.model = model.to(dtype=getattr(torch, dtype)).eval()
        self.train_args = train_args
        self.device = device
        self.dtype = dtype
        self.nbest = nbest
        self.maxlen_a = maxlen_a
        self.maxlen_b = maxlen_b
        self.max_segment_seconds = max_segment_seconds
        self.silence_dbfs = silence_dbfs
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
        the constructor's search and device options.
        """
        packed = open_model(model, cache_dir)
        return cls(packed.config, packed.model_file, **kwargs)

    # ------------------------------------------------------------------ audio in

    def __call__(self, audio: str | Path | np.ndarray, sample_rate: int | None = None) -> TranslationResult:
        """Translate one input: a path, or a waveform with its sample rate (also needed by
        headerless ``.raw``/``.pcm`` files, read as 16-bit mono PCM).

        Raises:
            AudioError: unreadable, empty, or shorter than the encoder needs.
        """
        return self.translate_prepared([self.prepare(audio, sample_rate)])[0]

    def translate_batch(self, inputs: Sequence[AudioInput], batch_size: int = 10) -> list[TranslationResult]:
        """Translate many inputs (paths or ``(waveform, sample_rate)`` pairs), ``batch_size`` at a time."""
        prepared = [
            self.prepare(*item) if isinstance(item, tuple) else self.prepare(item) for item in inputs
        ]
        return self.translate_prepared(prepared, batch_size)

    def prepare(
        self,
        audio: str | Path | np.ndarray,
        sample_rate: int | None = None,
        name: str | None = None,
    ) -> PreparedAudio:
        """Read and check an input and compute the model's features, segment by segment.

        ``sample_rate`` goes with a waveform, or with a headerless file
        (:func:`~espnet2_ext.inference.audio.read_audio`); other files have theirs in their header.
        Features are the training ones: Kaldi fbank at 16 kHz (other rates are
        resampled, channels mixed down); the model applies the packed CMVN.
        """
        if isinstance(audio, (str, Path)):
            name = str(audio) if name is None else name
            waveform, sample_rate = read_audio(audio, raw_sample_rate=sample_rate)
        else:
            name = "waveform" if name is None else name
            if sample_rate is None or sample_rate <= 0:
                raise ValueError(f"{name}: give the waveform's sample rate, got {sample_rate}")
            waveform = as_waveform(audio, name)
        self._check_length(name, len(waveform), sample_rate)
        warnings: list[str] = []
        ranges = split_at_pauses(waveform, sample_rate, self.max_segment_seconds)
        peaks = [peak_dbfs(waveform[start:stop]) for start, stop in ranges]  # the ranges cover the input
        if max(peaks) < self.silence_dbfs:
            warnings.append(f"{name}: silent (peak {max(peaks):.1f} dBFS < {self.silence_dbfs:g} dBFS): not translated")
            return self._log(PreparedAudio(name, [], [], warnings))
        if len(ranges) > 1:
            warnings.append(
                f"{name}: {len(waveform) / sample_rate:.1f} s is longer than {self.max_segment_seconds:g} s: "
                f"translated in {len(ranges)} segments cut at pauses"
            )
        features, spans = [], []
        for (start, stop), peak in zip(ranges, peaks):
            segment = waveform[start:stop]
            span = (start / sample_rate, stop / sample_rate)
            if peak < self.silence_dbfs:
                warnings.append(f"{name}: {span[0]:.2f}-{span[1]:.2f} s is silent: not translated")
            elif self._frames(len(segment), sample_rate) < self.model.encoder.min_input_length:
                warnings.append(f"{name}: {span[0]:.2f}-{span[1]:.2f} s is too short to translate: skipped")
            else:
                features.append(compute_fbank(segment, sample_rate))
                spans.append(span)
        return self._log(PreparedAudio(name, features, spans, warnings))

    def translate_prepared(self, prepared: Sequence[PreparedAudio], batch_size: int = 1) -> list[TranslationResult]:
        """Translate prepared inputs; segments of similar length are batched together."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        segments = [(i, j) for i, item in enumerate(prepared) for j in range(len(item.features))]
        segments.sort(key=lambda ij: len(prepared[ij[0]].features[ij[1]]))
        decoded: dict[tuple[int, int], tuple[list[Translation], str]] = {}
        for first in range(0, len(segments), batch_size):
            chunk = segments[first : first + batch_size]
            speech, lengths = pad_features([prepared[i].features[j] for i, j in chunk])
            decoded.update(zip(chunk, self._decode(speech, lengths)))
        return [
            TranslationResult(
                item.name,
                [SegmentTranslation(*item.spans[j], *decoded[i, j]) for j in range(len(item.features))],
                item.warnings,
            )
            for i, item in enumerate(prepared)
        ]

    def _check_length(self, name: str, samples: int, sample_rate: int) -> None:
        if samples == 0:
            raise AudioError(f"{name}: empty audio (0 samples)")
        needed = self.model.encoder.min_input_length
        frames = self._frames(samples, sample_rate)
        if frames < needed:
            raise AudioError(
                f"{name}: {1000 * samples / sample_rate:.0f} ms of audio gives {frames} feature frames; "
                f"the model needs at least {needed} (about {FRAME_LENGTH_MS + FRAME_SHIFT_MS * (needed - 1):.0f} ms)"
            )

    @staticmethod
    def _frames(samples: int, sample_rate: int) -> int:
        return num_frames(int(round(samples * SAMPLE_RATE / sample_rate)))

    @staticmethod
    def _log(prepared: PreparedAudio) -> PreparedAudio:
        for warning in prepared.warnings:
            logging.warning(warning)
        return prepared

    # ------------------------------------------------------------------ features in

    def translate_features(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> list[list[Translation]]:
        """N-best translations of each utterance of a padded feature batch (B, T, F)."""
        return self._search(speech, speech_lengths)[1]

    def _decode(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> list[tuple[list[Translation], str]]:
        """(n-best, CTC source transcript) of each utterance of a padded batch."""
        enc, nbests = self._search(speech, speech_lengths)
        sources = [self._ctc_transcript(enc.ctc_logits[i, : enc.ctc_lengths[i]]) for i in range(len(nbests))]
        return list(zip(nbests, sources))

    @torch.no_grad()
    def _search(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> tuple[CTCCompressEncoderOutput, list[list[Translation]]]:
        """The encoder's output and each utterance's n-best translations."""
        speech = speech.to(device=self.device, dtype=getattr(torch, self.dtype))
        enc = self.model.encode_with_ctc(speech, speech_lengths.to(self.device))
        maxlens = [max(1, int(self.maxlen_a * int(n) + self.maxlen_b)) for n in speech_lengths]
        nbests = self.beam_search(enc.hidden, enc.lengths, maxlens)
        return enc, [[self._to_translation(yseq, score) for yseq, score in hyps[: self.nbest]] for hyps in nbests]

    def _to_translation(self, yseq: list[int], score: float) -> Translation:
        token_ids = yseq[len(self.primer) :]
        while token_ids and token_ids[-1] == self.model.eos:  # two when <eos> was forced at the length limit
            token_ids = token_ids[:-1]
        tokens = self.converter.ids2tokens(token_ids)
        return Translation(self.tokenizer.tokens2text(tokens), tokens, token_ids, score)

    def _ctc_transcript(self, logits: torch.Tensor) -> str:
        """Words separated by single spaces: a lone word-boundary piece ("▁") decodes to a space of its own."""
        text = self.src_tokenizer.tokens2text(self.src_converter.ids2tokens(greedy_ctc_ids(logits)))
        return " ".join(text.split())


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
