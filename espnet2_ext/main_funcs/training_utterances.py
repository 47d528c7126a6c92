"""What the training utterances looked like, which says how to cut long audio for the model.

A model trained on sentences of a few seconds loses words on a 30-s segment, and one
trained on MuST-C's (mean 6 s, up to 30 s) loses context on 2-s ones; a model
trained on utterances that start a little before their speech and end a little after
it translates best what is cut the same way. Stage 8 packs these statistics into
the model's ``meta.yaml``; ``translate`` takes its segmentation defaults from them:

- the longest segment: the 95th percentile of the durations (for MuST-C en-de about
  what SHAS found best, 14-18 s);
- the margins of non-speech a segment keeps before and after its speech: the medians
  of those of the training utterances, as our voice-activity model sees them;
- the pauses that always separate two segments: those longer than the 99th percentile
  of the longest pause inside a training utterance.

Durations come from collect_stats' speech shapes (every kept utterance); margins and
pauses from the audio of an evenly spread sample of them. A model that says nothing
of its training (an imported FBK checkpoint) gets SHAS's MuST-C settings.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from espnet2_ext.fileio.data_dir import DataDirError, read_recordings
from espnet2_ext.fileio.kaldi_table import TableError, read_text
from espnet2_ext.segmentation.options import FRAME_SECONDS, SHAS_MUSTC, SegmentationOptions
from espnet2_ext.utils.fbank import FRAME_LENGTH_MS, FRAME_SHIFT_MS

__all__ = ["META_KEY", "TrainingUtterances", "TrainingUtterancesError", "segmentation_options"]

META_KEY = "training_utterances"  # in a packed model's meta.yaml
SAMPLED_UTTERANCES = 300  # whose audio is measured for margins and pauses
_DURATIONS = ("count", "mean", "p50", "p95", "max")
_SPEECH = ("lead", "trail", "pause", "sampled")


class TrainingUtterancesError(ValueError):
    """A shape file, data dir or ``meta.yaml`` entry that does not give the statistics."""


@dataclass(frozen=True)
class TrainingUtterances:
    """Seconds: how many utterances, their mean, median, 95th percentile and longest
    duration; and, measured on ``sampled`` of them, the median non-speech before (``lead``)
    and after (``trail``) their speech and the 99th percentile of their longest inner pause."""

    count: int
    mean: float
    p50: float
    p95: float
    max: float
    lead: float | None = None
    trail: float | None = None
    pause: float | None = None
    sampled: int | None = None

    @classmethod
    def from_shape_file(cls, path: str | Path) -> TrainingUtterances:
        """Durations from ESPnet's ``speech_shape`` (``utt frames,dims`` per line, from collect_stats)."""
        frames = []
        try:
            shapes = read_text(Path(path))
        except TableError as err:
            raise TrainingUtterancesError(str(err)) from None
        for utt, shape in shapes.items():
            try:
                frames.append(int(shape.split(",")[0]))
            except ValueError:
                raise TrainingUtterancesError(f"{path}: {utt}: expected 'frames,dims', got {shape!r}") from None
        if not frames:
            raise TrainingUtterancesError(f"{path}: no utterances")
        seconds = FRAME_LENGTH_MS / 1000 + FRAME_SHIFT_MS / 1000 * (np.array(frames, dtype=np.float64) - 1)
        p50, p95 = np.percentile(seconds, [50, 95])
        return cls(len(seconds), float(np.mean(seconds)), float(p50), float(p95), float(np.max(seconds)))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TrainingUtterances | None:
        """From a training config: durations from its speech shape file, margins and pauses
        from the audio of the data dir its training features were made from (a dump dir
        keeps the ``wav.scp`` and ``segments`` of its data dir). None without a shape file."""
        speech = [f for f in config.get("train_shape_file") or [] if Path(f).name == "speech_shape"]
        if not speech or not Path(speech[0]).is_file():
            return None
        utterances = cls.from_shape_file(speech[0])
        features = [path for path, name, _ in _triples(config) if name == "speech"]
        data_dir = Path(features[0]).parent if features else None
        if data_dir is None or not (data_dir / "wav.scp").is_file():
            logging.warning("no training audio found next to %s: segments keep no margins", features or "the config")
            return utterances
        return utterances.with_speech_of(data_dir)

    def with_speech_of(self, data_dir: Path) -> TrainingUtterances:
        """These durations, with margins and pauses measured on a sample of ``data_dir``'s utterances."""
        try:
            lead, trail, pause, sampled = _measure_speech(data_dir)
        except (DataDirError, TableError) as err:
            raise TrainingUtterancesError(f"the training audio: {err}") from None
        return dataclasses.replace(self, lead=lead, trail=trail, pause=pause, sampled=sampled)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainingUtterances | None:
        """From a packed model's ``meta.yaml`` (None when it has none, as an imported FBK model)."""
        entry = meta.get(META_KEY)
        if entry is None:
            return None
        if not isinstance(entry, Mapping) or any(key not in entry for key in _DURATIONS):
            raise TrainingUtterancesError(f"meta.yaml: {META_KEY} must hold {', '.join(_DURATIONS)}, got {entry!r}")
        values = {key: entry.get(key) for key in _DURATIONS + _SPEECH}
        seconds = [values[key] for key in ("mean", "p50", "p95", "max", "lead", "trail", "pause")]
        if not all(v is None or (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0) for v in seconds):
            raise TrainingUtterancesError(f"meta.yaml: {META_KEY} must hold seconds >= 0, got {entry!r}")
        return cls(**values)

    def to_meta(self) -> dict[str, Any]:
        """The ``meta.yaml`` entry, seconds rounded to the millisecond; unmeasured fields left out."""
        return {
            key: round(value, 3) if isinstance(value, float) else value
            for key, value in dataclasses.asdict(self).items() if value is not None
        }


def _triples(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    triples = []
    for item in config.get("train_data_path_and_name_and_type") or []:
        if isinstance(item, (list, tuple)) and len(item) == 3:
            triples.append(tuple(item))
        elif isinstance(item, str) and item.count(",") >= 2:
            triples.append(tuple(item.rsplit(",", 2)))
    return triples


def _measure_speech(data_dir: Path) -> tuple[float, float, float, int]:
    """(median lead, median trail, p99 of the longest inner pause, utterances measured) over
    an evenly spread sample of the data dir's utterances, by the segmenter's own view of
    speech (Silero's probabilities averaged as for pDAC, at SHAS's threshold)."""
    from espnet2_ext.fileio.data_dir import read_utterances
    from espnet2_ext.segmentation.smoothing import moving_average
    from espnet2_ext.segmentation.voice_activity import SpeechProbability
    from espnet2_ext.utils.fbank import resample
    from espnet2_ext.utils.waveform import mix_to_mono

    recordings = read_recordings(data_dir)
    total = sum(len(r.utterances) for r in recordings)
    step = max(1, -(-total // SAMPLED_UTTERANCES))  # at most SAMPLED_UTTERANCES
    vad, half = SpeechProbability(), SHAS_MUSTC.smoothing_frames // 2
    leads, trails, pauses = [], [], []
    number = 0
    for recording in recordings:
        chosen = tuple(u for i, u in enumerate(recording.utterances, start=number) if i % step == 0)
        number += len(recording.utterances)
        if not chosen:
            continue
        for _, samples, rate in read_utterances(dataclasses.replace(recording, utterances=chosen)):
            audio = resample(mix_to_mono(samples), rate)
            probabilities = moving_average(np.concatenate([vad.feed(audio), vad.finish()]), half)
            speech = np.flatnonzero(probabilities >= SHAS_MUSTC.threshold)
            if len(speech) == 0:
                continue
            leads.append(speech[0] * FRAME_SECONDS)
            trails.append(max(0.0, len(audio) / 16000 - (speech[-1] + 1) * FRAME_SECONDS))
            pauses.append((np.max(np.diff(speech)) - 1 if len(speech) > 1 else 0) * FRAME_SECONDS)
    if not leads:
        raise TrainingUtterancesError(f"{data_dir}: no speech found in the sampled training utterances")
    return float(np.median(leads)), float(np.median(trails)), float(np.percentile(pauses, 99)), len(leads)


def segmentation_options(
    training: TrainingUtterances | None,
    max_seconds: float | None = None,
    min_seconds: float = SHAS_MUSTC.min_seconds,
    threshold: float = SHAS_MUSTC.threshold,
    pause_seconds: float | None = None,
    pad_start_seconds: float | None = None,
    pad_end_seconds: float | None = None,
) -> SegmentationOptions:
    """The segmentation for a model: each value given, else the training utterances'
    (see the module), else SHAS's MuST-C settings (18 s, no cut at pauses, no margins).
    ``pause_seconds`` 0 means: no cut at pauses.

    Raises:
        ValueError: options pDAC cannot work with (see :class:`SegmentationOptions`).
    """
    if max_seconds is None:
        max_seconds = training.p95 if training is not None else SHAS_MUSTC.max_seconds
        max_seconds = max(max_seconds, 2 * min_seconds + 2 * FRAME_SECONDS)  # a model trained on very short clips
    if pause_seconds is None and training is not None and training.pause is not None:
        pause_seconds = max(training.pause, 2 * FRAME_SECONDS)  # a pause longer than any inside an utterance
    measured = training is not None and training.lead is not None

    def margin(given: float | None, trained: float | None) -> float:
        return given if given is not None else trained if measured and trained is not None else 0.0

    return SegmentationOptions(
        max_seconds=max_seconds,
        min_seconds=min_seconds,
        threshold=threshold,
        pause_seconds=pause_seconds or None,
        pad_start_seconds=margin(pad_start_seconds, training.lead if training else None),
        pad_end_seconds=margin(pad_end_seconds, training.trail if training else None),
    )
