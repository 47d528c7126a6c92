"""Scoring whole talks streamed at once, as IWSLT 2025-2026 score simultaneous translation.

A streamed talk is one line of ``instances.log``: its whole translation, each word's
delay from the start of the talk. The references are the talk's sentences with where
they lie in it (MuST-C's ``<split>.yaml``: ``wav``, ``offset``, ``duration`` per line,
and the reference sentences, one per line). The translation is cut into one line per
reference sentence and scored two ways:

- **OmniSTEval** (the IWSLT 2026 track's scorer, ``omnisteval longform``'s library):
  its own re-segmentation (SoftSegmenter alignment, Moses-tokenised for ``lang``),
  corpus BLEU and chrF (sacreBLEU, 13a) over the re-segmented lines, and LongYAAL;
  ``LongYAAL_CA`` on the elapsed times after ``--fix_simuleval_emission_ca`` (our
  elapsed times accumulate the talk's computing, as SimulEval's do). ``aligned.txt``
  holds those lines.
- **StreamLAAL** (FBK's ``stream_laal.py`` v2.0, :mod:`.stream_laal`): mwerSegmenter's
  re-segmentation (mweralign, as :mod:`espnet2_ext.main_funcs.talk_scoring` cuts talks)
  and each sentence's LAAL on delays re-based to its start and clamped at 0.

``omnisteval longform --speech_segmentation DIR/reference.yaml --ref_sentences_file
DIR/reference.txt --hypothesis_file DIR/instances.log --lang LANG --word_level
--bleu_tokenizer 13a --fix_simuleval_emission_ca`` gives ``scores.tsv``'s OmniSTEval
columns.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import NamedTuple

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.fileio.data_dir import read_recordings
from espnet2_ext.fileio.kaldi_table import read_text
from espnet2_ext.fileio.segment_list import SegmentDefinition, read_segment_definitions, segment_list_text
from espnet2_ext.simultaneous.instances import InstanceRecord
from espnet2_ext.streaming.stream_laal import StreamLAAL, sentence_delays, stream_laal

__all__ = [
    "ALIGNED_TXT",
    "REFERENCE_TXT",
    "REFERENCE_YAML",
    "LongformError",
    "LongformScores",
    "ReferenceSentence",
    "StreamReferences",
    "check_talks",
    "data_dir_sentences",
    "score_longform",
    "talks_of",
    "talk_name",
]

REFERENCE_YAML = "reference.yaml"  # a data dir's segments as MuST-C's yaml, written beside the log
REFERENCE_TXT = "reference.txt"
ALIGNED_TXT = "aligned.txt"  # the re-segmented translation, one line per reference sentence


class LongformError(ValueError):
    """References and talks that do not pair up; the message names the file, line or talk."""


class ReferenceSentence(NamedTuple):
    """A reference sentence and where it lies in its talk (seconds)."""

    wav: str
    offset: float
    duration: float
    text: str


def talk_name(source: str | Sequence[str]) -> str:
    """The name a record's talk goes by in a segment list: the basename of its source (its first line)."""
    first = source if isinstance(source, str) else source[0]
    return PurePath(first).name


def data_dir_sentences(data_dir: Path, reference_name: str = "text.tgt") -> list[ReferenceSentence]:
    """A data dir's reference sentences: its ``segments`` (recordings sorted by id, sentences in
    time order) with their references; each recording's talk is named ``<recording id>.wav``."""
    texts = read_text(data_dir / reference_name)
    sentences = []
    for recording in read_recordings(data_dir):
        for utt in recording.utterances:
            if utt.end is None:
                raise LongformError(f"{data_dir}: recording {recording.recording_id} has no segments to score against")
            if utt.utt_id not in texts:
                raise LongformError(f"{data_dir / reference_name}: no reference for utterance {utt.utt_id}")
            text = " ".join(texts[utt.utt_id].split())
            sentences.append(ReferenceSentence(f"{recording.recording_id}.wav", utt.start, utt.end - utt.start, text))
    return sentences


def talks_of(sentences: Sequence[ReferenceSentence]) -> dict[str, list[ReferenceSentence]]:
    """Each talk's sentences in order, talks in order of first appearance, by their wav's file name."""
    talks: dict[str, list[ReferenceSentence]] = {}
    for sentence in sentences:
        talks.setdefault(PurePath(sentence.wav).name, []).append(sentence)
    return talks


def check_talks(sentences: Sequence[ReferenceSentence], names: Sequence[str], where: str, what: str) -> None:
    """Every talk of the references (from ``where``) is among ``names``, and every name is one of theirs."""
    talks = talks_of(sentences)
    unknown = [name for name in names if name not in talks]
    missing = [name for name in talks if name not in names]
    if unknown:
        raise LongformError(f"{where} names no segment of {', '.join(unknown[:3])} ({what})")
    if missing:
        raise LongformError(f"{where} names {', '.join(missing[:3])}, which {what} do not hold")


@dataclass(frozen=True)
class StreamReferences:
    """The reference sentences of a test set in file order, and the two files that hold them."""

    yaml: Path
    text: Path
    sentences: tuple[ReferenceSentence, ...]

    @classmethod
    def from_files(cls, yaml: Path, text: Path) -> StreamReferences:
        """A segment list and its reference lines, which must be as many."""
        definitions = read_segment_definitions(yaml)
        try:
            lines = text.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise LongformError(f"--reference {text}: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise LongformError(f"--reference {text}: not UTF-8") from None
        if len(lines) != len(definitions):
            raise LongformError(
                f"{text} has {len(lines)} lines but {yaml} has {len(definitions)} segments: one reference line each"
            )
        return cls(yaml, text, tuple(ReferenceSentence(*d, line.strip()) for d, line in zip(definitions, lines)))

    @classmethod
    def written(cls, out_dir: Path, sentences: Sequence[ReferenceSentence]) -> StreamReferences:
        """``sentences`` written to ``out_dir`` as MuST-C's files (what ``omnisteval`` reads)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        yaml, text = out_dir / REFERENCE_YAML, out_dir / REFERENCE_TXT
        write_text_atomically(yaml, segment_list_text([SegmentDefinition(s.wav, s.offset, s.duration) for s in sentences]))
        write_text_atomically(text, "".join(s.text + "\n" for s in sentences))
        return cls.from_files(yaml, text)

    @classmethod
    def from_data_dir(cls, data_dir: Path, reference_name: str, out_dir: Path) -> StreamReferences:
        """A data dir's reference sentences (:func:`data_dir_sentences`), written to ``out_dir``."""
        return cls.written(out_dir, data_dir_sentences(data_dir, reference_name))

    def talks(self) -> dict[str, list[ReferenceSentence]]:
        return talks_of(self.sentences)

    def check_talks(self, names: Sequence[str], what: str) -> None:
        check_talks(self.sentences, names, str(self.yaml), what)


@dataclass(frozen=True)
class LongformScores:
    """A stream run's scores (ms for latencies) and its re-segmented translation."""

    bleu: float
    chrf: float
    long_yaal: float | None
    stream_laal: StreamLAAL
    long_yaal_ca: float | None
    aligned: tuple[str, ...]
    computation_aware: bool

    def columns(self) -> dict[str, float]:
        """``scores.tsv``'s columns (a latency no sentence has words for is NaN)."""
        nan = math.nan
        columns = {
            "BLEU": self.bleu,
            "chrF": self.chrf,
            "LongYAAL": nan if self.long_yaal is None else self.long_yaal,
            "StreamLAAL": nan if self.stream_laal.plain is None else self.stream_laal.plain,
        }
        if self.computation_aware:
            columns["LongYAAL_CA"] = nan if self.long_yaal_ca is None else self.long_yaal_ca
            aware = self.stream_laal.computation_aware
            columns["StreamLAAL_CA"] = nan if aware is None else aware
        return columns


def score_longform(
    log: Path,
    records: Sequence[InstanceRecord],
    references: StreamReferences,
    lang: str | None,
    computation_aware: bool = False,
) -> LongformScores:
    """Both scorings of the talks of ``log`` (whose ``records`` these are) against ``references``."""
    by_talk = {talk_name(record.source): record for record in records}
    references.check_talks(list(by_talk), f"the records of {log}")
    aligned, bleu, chrf, yaal, yaal_ca = _omnisteval(log, references, lang)
    sentences, durations, texts = [], [], []
    for name, talk in references.talks().items():
        record = by_talk[name]
        lines = _mwer_lines(name, talk, record.prediction)
        sentences += sentence_delays(lines, [1000 * s.offset for s in talk], record.delays, record.elapsed)
        durations += [1000 * s.duration for s in talk]
        texts += [s.text for s in talk]
    laal = stream_laal(sentences, durations, texts)
    return LongformScores(bleu, chrf, yaal, laal, yaal_ca, tuple(aligned), computation_aware)


def _omnisteval(log: Path, references: StreamReferences, lang: str | None) -> tuple[list[str], float, float, float | None, float | None]:
    """OmniSTEval's longform evaluation: the re-segmented lines, BLEU, chrF, LongYAAL and its _CA."""
    from omnisteval import evaluate_instances, resegment
    from omnisteval.io import load_resegmentation_inputs

    ref_words, hyp_words, segmentation, ref_sentences = load_resegmentation_inputs(
        str(references.yaml), None, str(references.text), str(log), hypothesis_format="jsonl",
        char_level=False, offset_delays=False, fix_emission_ca_flag=True,
    )
    with _default_sigterm():  # its alignment forks a pool, which ends its workers with SIGTERM
        instances, _ = resegment(ref_words, hyp_words, segmentation, ref_sentences, char_level=False, lang=lang)
    quiet = logging.getLogger("omnisteval")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its notes on empty segments and Unicode are for its own report
    try:
        scores, _, _ = evaluate_instances(instances, is_longform=True, bleu_tokenizer="13a", fix_emission_ca_flag=True)
    finally:
        quiet.setLevel(level)
    return (
        [instance.prediction for instance in instances],
        scores["bleu"],
        scores["chrf"],
        _finite(scores.get("long_yaal")),
        _finite(scores.get("ca_long_yaal")),
    )


@contextmanager
def _default_sigterm() -> Iterator[None]:
    """SIGTERM's default action meanwhile (in the main thread), so that processes forked now die
    of it quietly rather than run the command line's handler (which reports an interruption)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _mwer_lines(name: str, talk: Sequence[ReferenceSentence], prediction: str) -> list[str]:
    """The talk's translation cut onto its sentences as FBK's StreamLAAL cuts it (mwerSegmenter)."""
    from espnet2_ext.main_funcs.talk_alignment import TalkReference, align_talk

    reference = TalkReference(name, tuple(str(n) for n in range(len(talk))), tuple(s.text for s in talk))
    return list(align_talk(reference, prediction).lines)


def write_aligned(path: Path, lines: Sequence[str]) -> None:
    """``aligned.txt``: one re-segmented line per reference sentence."""
    write_text_atomically(path, "".join(line + "\n" for line in lines))
