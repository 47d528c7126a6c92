"""Whole talks streamed over a test set, as the IWSLT 2025-2026 simultaneous track runs them, and scored.

Each instance is a recording (a data dir's ``wav.scp`` entry, or an audio file): sent
to the streaming translator in chunks of ``segment_ms``, the last one as the end of the
talk, every word written getting its delay (ms of the talk received when it was written)
and its elapsed time (plus the computing so far, as SimulEval counts it). One line of
``instances.log`` per talk, appended as each talk ends (SimulEval 1.1.4's format, its
``source`` the talk's name as a one-line list, as SimulEval writes a source); then
:mod:`.longform`'s scores against the talks' reference sentences. Three ways of
streaming share this: StreamAtt with a text history (``words``, ``punctuation``,
``audio``: :class:`~espnet2_ext.streaming.translator.StreamingTranslator`) and the
voice-activity-cut baseline (``vad``: :class:`~espnet2_ext.simultaneous.live.LiveTranslator`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from espnet2_ext.fileio.data_dir import read_recordings
from espnet2_ext.inference.audio import AudioError
from espnet2_ext.inference.file_inputs import Input, input_audio
from espnet2_ext.inference.speech_input import chunks_16k
from espnet2_ext.simultaneous.evaluation import (
    INSTANCES_LOG,
    SCORES_TSV,
    SettingResult,
    SimulInstance,
    check_setting,
    dependencies,
    translate_pending,
)
from espnet2_ext.simultaneous.instances import InstanceRecord
from espnet2_ext.simultaneous.latency import write_columns_tsv
from espnet2_ext.streaming.longform import (
    ALIGNED_TXT,
    ReferenceSentence,
    StreamReferences,
    check_talks,
    data_dir_sentences,
    score_longform,
    talk_name,
    talks_of,
    write_aligned,
)
from espnet2_ext.streaming.options import StreamOptions
from espnet2_ext.utils.fbank import SAMPLE_RATE

__all__ = ["StreamRuns", "TalkSource", "stream_talk", "stream_translators"]


@dataclass(frozen=True)
class TalkSource:
    """Where the talks come from, in a form another process can rebuild them from: a data
    dir's recordings (its ``segments`` and references give the reference sentences), or
    audio files with, to score them, MuST-C's segment list and reference lines."""

    data_dir: Path | None = None
    reference_name: str = "text.tgt"
    inputs: tuple[Input, ...] = ()
    segmentation: Path | None = None
    reference: Path | None = None
    raw_sample_rate: int | None = None

    def instances(self) -> list[SimulInstance]:
        """One instance per talk, its audio read when its turn comes, its reference the talk's
        sentences joined; checked against them (each of their talks given, each talk given theirs)."""
        if self.data_dir is not None:
            instances = [
                SimulInstance(n, f"{r.recording_id}.wav", "", _reader(Input(r.recording_id, r.wav), None))
                for n, r in enumerate(read_recordings(self.data_dir))
            ]
        else:
            instances = [
                SimulInstance(n, item.path, "", _reader(item, self.raw_sample_rate)) for n, item in enumerate(self.inputs)
            ]
        sentences = self.sentences()
        if sentences is None:
            return instances
        where = str(self.data_dir) if self.data_dir is not None else str(self.segmentation)
        check_talks(sentences, [talk_name(i.source) for i in instances], where, "the inputs")
        texts = {name: " ".join(s.text for s in talk) for name, talk in talks_of(sentences).items()}
        return [i._replace(reference=texts[talk_name(i.source)]) for i in instances]

    def sentences(self) -> list[ReferenceSentence] | None:
        """The reference sentences; None when none were given."""
        if self.data_dir is not None:
            return data_dir_sentences(self.data_dir, self.reference_name)
        if self.segmentation is None:
            return None
        return list(StreamReferences.from_files(self.segmentation, self.reference).sentences)

    def references(self, out_dir: Path) -> StreamReferences | None:
        """The references as files (a data dir's written to ``out_dir``); None when none were given."""
        if self.data_dir is not None:
            return StreamReferences.written(out_dir, data_dir_sentences(self.data_dir, self.reference_name))
        if self.segmentation is None:
            return None
        return StreamReferences.from_files(self.segmentation, self.reference)


def _reader(item: Input, raw_sample_rate: int | None) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        parts = list(chunks_16k(input_audio(item, raw_sample_rate)))
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, dtype=np.float32)

    return read


def stream_talk(translator: Any, samples: np.ndarray, index: int, source: str, reference: str) -> InstanceRecord:
    """One talk sent in chunks of ``segment_ms`` (the last as its end), as SimulEval sends a
    source: each word's delay is the talk received when the push or finish that wrote it
    returned, its elapsed time that plus the seconds spent computing on the talk so far."""
    if len(samples) == 0:
        raise AudioError(f"{source}: empty audio (0 samples)")
    segment = math.ceil(translator.options.segment_ms / 1000 * SAMPLE_RATE)
    translator.reset()
    words, delays, elapsed = [], [], []
    computing = 0.0
    starts = range(0, len(samples), segment)
    for start in starts:
        began = time.perf_counter()
        if start == starts[-1]:
            written = translator.finish(samples[start:])
        else:
            written = translator.push(samples[start : start + segment])
        computing += time.perf_counter() - began
        now = 1000 * min(start + segment, len(samples)) / SAMPLE_RATE
        for word in written:
            words.append(word.text)
            delays.append(now)
            elapsed.append(now + 1000 * computing)
    return InstanceRecord.from_words(index, words, delays, elapsed, reference, [source], 1000 * len(samples) / SAMPLE_RATE)


def stream_translators(
    model: str, settings: Sequence[StreamOptions], cache_dir: str | None, device: str, silence_dbfs: float
) -> list[Any]:
    """One translator per setting, in order: StreamAtt's for a text history, the
    voice-activity-cut one for ``vad``; the model loaded once per kind and search."""
    from espnet2_ext.simultaneous.live import LiveTranslator
    from espnet2_ext.simultaneous.translator import SimultaneousTranslator
    from espnet2_ext.streaming.translator import StreamingTranslator

    built: list[Any] = [None] * len(settings)
    for kind, wrap in ((StreamingTranslator, None), (SimultaneousTranslator, LiveTranslator.around)):
        numbers = [n for n, s in enumerate(settings) if (s.history == "vad") == (wrap is not None)]
        if not numbers:
            continue
        translators = kind.for_settings(model, [settings[n] for n in numbers], cache_dir, device, silence_dbfs)
        for n, translator in zip(numbers, translators):
            built[n] = wrap(translator) if wrap is not None else translator
    return built


def target_language(translator: Any) -> str | None:
    """The language a model's tag names (``<lang:de>`` -> ``de``), for OmniSTEval's tokeniser."""
    inner = translator if hasattr(translator, "tag") else translator.translator  # a LiveTranslator's utterances'
    for token in inner.tag:
        piece = inner.pieces[token]
        if piece.startswith("<lang:") and piece.endswith(">"):
            return piece[len("<lang:") : -1]
    return None


@dataclass(frozen=True)
class StreamRuns:
    """How a worker process builds the translators of whole-talk settings and runs one
    (the counterpart of :class:`~espnet2_ext.simultaneous.evaluation.UtteranceRuns`)."""

    source: TalkSource
    lang: str | None = None  # OmniSTEval's tokeniser; None: the model's tag's

    def translators(
        self, model: str, settings: Sequence[StreamOptions], cache_dir: str | None, device: str, silence_dbfs: float
    ) -> list[Any]:
        return stream_translators(model, settings, cache_dir, device, silence_dbfs)

    def run(
        self, translator: Any, instances: Sequence[SimulInstance], out_dir: Path, *, computation_aware: bool,
        scored: bool, on_record: Callable[[InstanceRecord], None] | None = None,
    ) -> SettingResult:
        """Stream the talks not yet in ``out_dir/instances.log``, then score the whole log
        (``scores.tsv``, ``aligned.txt``) when it holds every talk and references were given."""
        check_setting(out_dir, translator.options, dependencies(translator, instances), instances)

        def record(instance: SimulInstance, samples: np.ndarray) -> InstanceRecord:
            return stream_talk(translator, samples, instance.index, instance.source, instance.reference)

        records, failed = translate_pending(instances, out_dir, record, on_record)
        references = self.source.references(out_dir)
        scores = None
        if scored and references is not None and not failed and len(records) == len(instances):
            lang = self.lang if self.lang is not None else target_language(translator)
            scores = score_longform(out_dir / INSTANCES_LOG, records, references, lang, computation_aware)
            write_columns_tsv(out_dir / SCORES_TSV, scores.columns())
            write_aligned(out_dir / ALIGNED_TXT, scores.aligned)
        return SettingResult(records, failed, scores)
