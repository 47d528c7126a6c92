"""A Kaldi data dir as the feature stage and the tests read it: recordings, their
utterances, the samples of each, and a copy restricted to some utterances.

``wav.scp`` holds plain file paths (no Kaldi pipes); ``segments`` cuts recordings
into utterances (without it every recording is one utterance). Errors name the
file, line or utterance at fault.
"""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from espnet2_ext.fileio.atomic import write_lines_atomically
from espnet2_ext.fileio.kaldi_table import TableError, filter_lines, read_table, read_text, read_wav_scp, spk2utt_lines

COPIED_TABLES = ("utt2spk", "segments")  # besides every text*; wav.scp and spk2utt are rebuilt
_BYTES_PER_SECOND = 2 * 16000  # 16-bit mono at 16 kHz: how a whole recording's length is estimated


class DataDirError(TableError):
    """Files of a data dir that disagree with each other or with the audio."""


@dataclass(frozen=True)
class Utterance:
    """A region of a recording in seconds; ``end=None`` means up to the end of the file."""

    utt_id: str
    start: float
    end: float | None


@dataclass(frozen=True)
class Recording:
    """One wav and its utterances, sorted by start time so reading only seeks forward."""

    recording_id: str
    wav: str
    utterances: tuple[Utterance, ...]

    def seconds(self) -> float:
        """Audio to compute: segment lengths, or for a whole recording an estimate from its file size."""
        total = 0.0
        for utt in self.utterances:
            if utt.end is not None:
                total += utt.end - utt.start
            elif os.path.isfile(self.wav):
                total += os.path.getsize(self.wav) / _BYTES_PER_SECOND
        return total


def read_segments(path: Path, wavs: dict[str, str]) -> dict[str, list[Utterance]]:
    """Recording id -> its utterances from a Kaldi ``segments`` file."""
    by_recording: dict[str, list[Utterance]] = {}
    seen: set[str] = set()
    for number, fields in read_table(path):
        where = f"{path}:{number}"
        if len(fields) != 4:
            raise TableError(f"{where}: expected '<utt-id> <recording-id> <start> <end>', got {' '.join(fields)!r}")
        utt_id, recording, start, end = fields
        try:
            times = float(start), float(end)
        except ValueError:
            raise TableError(f"{where}: utterance {utt_id}: start and end must be seconds, got {start} {end}") from None
        if utt_id in seen:
            raise TableError(f"{where}: utterance {utt_id} appears twice")
        if recording not in wavs:
            raise DataDirError(f"{where}: utterance {utt_id}: recording {recording} is not in wav.scp")
        seen.add(utt_id)
        by_recording.setdefault(recording, []).append(Utterance(utt_id, *times))
    return by_recording


def read_recordings(data_dir: Path) -> list[Recording]:
    """The data dir's recordings with their utterances, sorted by recording id."""
    wavs = read_wav_scp(data_dir / "wav.scp")
    segments = data_dir / "segments"
    if segments.is_file():
        by_recording = read_segments(segments, wavs)
    else:
        by_recording = {recording: [Utterance(recording, 0.0, None)] for recording in wavs}
    if not by_recording:
        raise DataDirError(f"{data_dir}: no utterances")
    return [
        Recording(recording, wavs[recording], tuple(sorted(utts, key=lambda u: (u.start, u.utt_id))))
        for recording, utts in sorted(by_recording.items())
    ]


def sample_range(utt: Utterance, sample_rate: int, length: int, wav: str) -> tuple[int, int]:
    """``[start, stop)`` sample indices of ``utt`` in a file of ``length`` samples, checked to lie inside it."""
    start = round(utt.start * sample_rate)
    stop = length if utt.end is None else round(utt.end * sample_rate)
    if not 0 <= start < stop <= length:
        raise DataDirError(
            f"utterance {utt.utt_id}: segment {utt.start}-{utt.end} s is out of range of {wav} "
            f"({length / sample_rate:.3f} s)"
        )
    return start, stop


def read_utterances(recording: Recording) -> Iterator[tuple[Utterance, np.ndarray, int]]:
    """(utterance, float32 samples ``(samples, channels)``, sample rate) of each utterance,
    the wav opened once and only its utterances' samples read."""
    first = recording.utterances[0].utt_id
    try:
        audio = sf.SoundFile(recording.wav)
    except (sf.SoundFileError, OSError) as err:
        where = f"utterance {first}: cannot read wav {recording.wav}"
        raise DataDirError(f"{where} (recording {recording.recording_id}): {err}") from None
    with audio:
        for utt in recording.utterances:
            yield utt, _read_span(audio, utt, recording.wav), audio.samplerate


def read_utterance(recording: Recording, utt: Utterance) -> tuple[np.ndarray, int]:
    """(float32 samples ``(samples, channels)``, sample rate) of one utterance of ``recording``."""
    try:
        audio = sf.SoundFile(recording.wav)
    except (sf.SoundFileError, OSError) as err:
        raise DataDirError(f"utterance {utt.utt_id}: cannot read wav {recording.wav}: {err}") from None
    with audio:
        return _read_span(audio, utt, recording.wav), audio.samplerate


def _read_span(audio: sf.SoundFile, utt: Utterance, wav: str) -> np.ndarray:
    start, stop = sample_range(utt, audio.samplerate, audio.frames, wav)
    try:
        audio.seek(start)
        samples = audio.read(stop - start, dtype="float32", always_2d=True)
    except (sf.SoundFileError, OSError) as err:
        raise DataDirError(f"utterance {utt.utt_id}: cannot read wav {wav}: {err}") from None
    if len(samples) != stop - start:
        raise DataDirError(f"utterance {utt.utt_id}: {wav} ended after {start + len(samples)} samples")
    return samples


def copy_data_dir(data_dir: Path, out_dir: Path, recordings: Sequence[Recording], keep: set[str]) -> None:
    """The data dir's ``text*``, ``utt2spk`` and ``segments`` restricted to ``keep``, each written
    atomically; ``wav.scp`` (the recordings still used) and ``spk2utt`` rebuilt to match."""
    names = sorted(p.name for p in data_dir.glob("text*") if p.is_file())
    names += [name for name in COPIED_TABLES if (data_dir / name).is_file()]
    for name in names:
        write_lines_atomically(out_dir / name, filter_lines(data_dir / name, keep))
    used = [r for r in recordings if any(u.utt_id in keep for u in r.utterances)]
    write_lines_atomically(out_dir / "wav.scp", [f"{r.recording_id} {r.wav}" for r in used])
    if (data_dir / "utt2spk").is_file():
        write_lines_atomically(out_dir / "spk2utt", spk2utt_lines(read_text(out_dir / "utt2spk").items()))
