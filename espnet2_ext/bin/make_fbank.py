"""Stage 2: 80-dim Kaldi fbank features of a data dir into kaldiio ark/scp files.

Reads ``wav.scp`` (plain file paths, no Kaldi pipes) and ``segments`` (without
``segments`` every recording is one utterance), computes :func:`espnet2_ext.utils.fbank.compute_fbank` for each utterance
and writes, under ``--out-dir``:

- ``split/feats.<job>.{ark,scp}``, ``split/utt2num_frames.<job>``, ``split/done.<job>``:
  one set per parallel job; a job works on temp names, renames them when complete and
  writes its done marker last, so a re-run after a kill skips finished jobs and redoes
  the others from scratch. The marker holds a hash of the job's input (recordings,
  wav paths, segment times, feature settings): a changed data dir or ``--nj`` is
  recomputed instead of reused.
- ``feats.scp`` and ``utt2num_frames`` of the utterances with ``--min-frames`` to
  ``--max-frames`` frames, sorted by utterance id (ark paths are absolute);
  ``dropped``: ``<utt-id> <frames>`` of the others. Changing the limits only redoes
  this merge: jobs keep every utterance.
- the data dir's ``text*``, ``utt2spk``, ``segments``, ``wav.scp`` and ``spk2utt``
  restricted to the kept utterances, so training reads one dir with consistent keys.

Recordings are split into contiguous groups of about equal utterance count, and each
recording is opened once, reading only its segments' samples.

Usage:
    python -m espnet2_ext.bin.make_fbank --data-dir data/train --out-dir dump/fbank/train \
        --nj 4 [--min-frames 5] [--max-frames 3000]

``--max-frames none`` (and ``--min-frames 0``) keep everything, as test sets need.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import multiprocessing.queues
import os
import queue
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from espnet2.utils.config_argparse import ArgumentParser
from espnet2.utils.types import int_or_none
from kaldiio import WriteHelper
from tqdm import tqdm

from espnet2_ext.fileio.kaldi_table import TableError, read_table, read_wav_scp
from espnet2_ext.utils.cli import CommandError, ErrorsRaise, command
from espnet2_ext.utils.fileio import write_text_atomically
from espnet2_ext.utils.fbank import (
    FRAME_LENGTH_MS,
    FRAME_SHIFT_MS,
    NUM_MEL_BINS,
    SAMPLE_RATE,
    compute_fbank,
    mix_to_mono,
)

_FEATURE_SETTINGS = f"kaldi-fbank bins={NUM_MEL_BINS} len={FRAME_LENGTH_MS} shift={FRAME_SHIFT_MS} sr={SAMPLE_RATE}"
_COPIED_FILES = ("utt2spk", "segments")
_JOB_FILE = re.compile(r"(?:feats|utt2num_frames|done)\.(\d+)(?:\.ark|\.scp)?(?:\.tmp)?")


class FbankError(CommandError):
    """Bad data dir, audio or options."""


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


@dataclass(frozen=True)
class Job:
    """The recordings one worker processes, and the names of its files in ``split_dir``."""

    index: int
    split_dir: Path
    recordings: tuple[Recording, ...]

    @property
    def utt_ids(self) -> list[str]:
        return [utt.utt_id for recording in self.recordings for utt in recording.utterances]

    @property
    def ark(self) -> Path:
        return self.split_dir / f"feats.{self.index}.ark"

    @property
    def scp(self) -> Path:
        return self.split_dir / f"feats.{self.index}.scp"

    @property
    def num_frames(self) -> Path:
        return self.split_dir / f"utt2num_frames.{self.index}"

    @property
    def marker(self) -> Path:
        return self.split_dir / f"done.{self.index}"

    def fingerprint(self) -> str:
        """Hash of everything the job's output depends on."""
        digest = hashlib.sha256(_FEATURE_SETTINGS.encode())
        for recording in self.recordings:
            digest.update(f"\n{recording.recording_id} {recording.wav}".encode())
            for utt in recording.utterances:
                digest.update(f"\n {utt.utt_id} {utt.start!r} {utt.end!r}".encode())
        return digest.hexdigest()

    def is_done(self) -> bool:
        return self.marker.is_file() and self.marker.read_text() == self.fingerprint()


# --------------------------------------------------------------------------- input


def read_segments(path: Path, wavs: dict[str, str]) -> dict[str, list[Utterance]]:
    """Recording id -> its utterances from a Kaldi ``segments`` file."""
    by_recording: dict[str, list[Utterance]] = {}
    seen: set[str] = set()
    for number, fields in read_table(path):
        where = f"{path}:{number}"
        if len(fields) != 4:
            raise FbankError(f"{where}: expected '<utt-id> <recording-id> <start> <end>', got {' '.join(fields)!r}")
        utt_id, recording, start, end = fields
        try:
            times = float(start), float(end)
        except ValueError:
            raise FbankError(f"{where}: utterance {utt_id}: start and end must be seconds, got {start} {end}") from None
        if utt_id in seen:
            raise FbankError(f"{where}: utterance {utt_id} appears twice")
        if recording not in wavs:
            raise FbankError(f"{where}: utterance {utt_id}: recording {recording} is not in wav.scp")
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
        raise FbankError(f"{data_dir}: no utterances")
    return [
        Recording(recording, wavs[recording], tuple(sorted(utts, key=lambda u: (u.start, u.utt_id))))
        for recording, utts in sorted(by_recording.items())
    ]


def make_jobs(recordings: Sequence[Recording], nj: int, split_dir: Path) -> list[Job]:
    """At most ``nj`` jobs of contiguous recordings with about equal utterance counts."""
    total = sum(len(r.utterances) for r in recordings)
    groups: list[list[Recording]] = [[] for _ in range(min(nj, len(recordings)))]
    done = 0
    for recording in recordings:
        groups[min(done * len(groups) // total, len(groups) - 1)].append(recording)
        done += len(recording.utterances)
    non_empty = [group for group in groups if group]
    return [Job(index, split_dir, tuple(group)) for index, group in enumerate(non_empty, 1)]


# --------------------------------------------------------------------------- features


def recording_features(recording: Recording) -> Iterator[tuple[str, np.ndarray]]:
    """(utt id, features) of each utterance, reading only its samples from the open wav."""
    first = recording.utterances[0].utt_id
    try:
        audio = sf.SoundFile(recording.wav)
    except (sf.SoundFileError, OSError) as err:
        where = f"utterance {first}: cannot read wav {recording.wav}"
        raise FbankError(f"{where} (recording {recording.recording_id}): {err}") from None
    with audio:
        for utt in recording.utterances:
            start, stop = sample_range(utt, audio.samplerate, audio.frames, recording.wav)
            try:
                audio.seek(start)
                samples = audio.read(stop - start, dtype="float32", always_2d=True)
            except (sf.SoundFileError, OSError) as err:
                raise FbankError(f"utterance {utt.utt_id}: cannot read wav {recording.wav}: {err}") from None
            if len(samples) != stop - start:
                raise FbankError(f"utterance {utt.utt_id}: {recording.wav} ended after {start + len(samples)} samples")
            yield utt.utt_id, compute_fbank(mix_to_mono(samples), audio.samplerate)


def sample_range(utt: Utterance, sample_rate: int, length: int, wav: str) -> tuple[int, int]:
    """``[start, stop)`` sample indices of ``utt``, checked against the file length."""
    start = round(utt.start * sample_rate)
    stop = length if utt.end is None else round(utt.end * sample_rate)
    if not 0 <= start < stop <= length:
        raise FbankError(
            f"utterance {utt.utt_id}: segment {utt.start}-{utt.end} s is out of range of {wav} "
            f"({length / sample_rate:.3f} s)"
        )
    return start, stop


def run_job(job: Job, report: Callable[[int], object]) -> None:
    """Compute one job's features into temp files, publish them, write the marker last.

    ``report`` receives the number of utterances finished, once per recording.
    """
    job.marker.unlink(missing_ok=True)
    tmp = {path: path.with_name(path.name + ".tmp") for path in (job.ark, job.scp, job.num_frames)}
    lengths = []
    with WriteHelper(f"ark,scp:{tmp[job.ark]},{tmp[job.scp]}") as writer:
        for recording in job.recordings:
            for utt_id, features in recording_features(recording):
                writer(utt_id, features)
                lengths.append(f"{utt_id} {len(features)}")
            report(len(recording.utterances))
    scp_lines = tmp[job.scp].read_text(encoding="utf-8").splitlines()
    write_lines(tmp[job.scp], [line.replace(f" {tmp[job.ark]}:", f" {job.ark}:", 1) for line in scp_lines])
    write_lines(tmp[job.num_frames], lengths)
    for final, temporary in ((job.ark, tmp[job.ark]), (job.scp, tmp[job.scp]), (job.num_frames, tmp[job.num_frames])):
        os.replace(temporary, final)
    write_text_atomically(job.marker, job.fingerprint())


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """One torch thread while inside; fbank of one utterance is too small to parallelise.

    With several threads each call pays synchronisation overhead (measured 25x slower
    on 2 shared cores); parallelism comes from ``--nj`` instead.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _worker(job: Job, messages: multiprocessing.queues.Queue, parent: int) -> None:
    """Body of a worker process: one single-threaded job, reporting through ``messages``.

    Ctrl-C is left to the parent, which terminates its workers. A worker whose parent
    was killed (SIGKILL/SIGTERM skip the parent's cleanup) stops at its next report
    instead of racing a re-run for the same job files.
    """

    def report(count: int) -> None:
        if os.getppid() != parent:
            raise SystemExit(f"fbank job {job.index}: parent process {parent} is gone")
        messages.put(("progress", count))

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        run_job(job, report)
    except FbankError as err:
        messages.put(("error", str(err)))
        return
    messages.put(("done", job.index))


def run_jobs(jobs: Sequence[Job], nj: int, progress: tqdm) -> None:
    """Run ``jobs`` in-process (``nj=1``) or each in its own worker process.

    Workers are spawned, not forked (forking after torch's thread pool ran can hang);
    on the first error the others are terminated (their unfinished jobs are redone by
    the next run) and the error is raised.
    """
    if nj == 1:
        with single_threaded_torch():
            for job in jobs:
                run_job(job, progress.update)
        return
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    workers = [context.Process(target=_worker, args=(job, messages, os.getpid()), daemon=True) for job in jobs]
    for worker in workers:
        worker.start()
    try:
        remaining = len(workers)
        while remaining:
            try:
                kind, value = messages.get(timeout=1.0)
            except queue.Empty:
                crashed = [w for w in workers if w.exitcode not in (None, 0)]
                if crashed:
                    raise RuntimeError(f"fbank worker {crashed[0].name} died (exit code {crashed[0].exitcode})")
                continue
            if kind == "error":
                raise FbankError(value)
            if kind == "progress":
                progress.update(value)
            else:
                remaining -= 1
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


# --------------------------------------------------------------------------- output


def write_lines(path: Path, lines: Sequence[str]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        stream.writelines(f"{line}\n" for line in lines)


def read_job_outputs(job: Job) -> tuple[dict[str, str], dict[str, int]]:
    """A finished job's scp entries and frame counts, checked to cover exactly its utterances."""
    with job.scp.open(encoding="utf-8") as stream:
        scp = dict(line.rstrip("\n").split(" ", 1) for line in stream)
    frames = {fields[0]: int(fields[1]) for _, fields in read_table(job.num_frames)}
    expected = set(job.utt_ids)
    if set(scp) != expected or set(frames) != expected:
        raise FbankError(f"outputs of job {job.index} do not match its utterances; delete {job.marker} and re-run")
    return scp, frames


def merge_outputs(jobs: Sequence[Job], out_dir: Path, min_frames: int, max_frames: int | None) -> set[str]:
    """Write the sorted ``feats.scp``, ``utt2num_frames`` and ``dropped``; return the kept ids."""
    scp: dict[str, str] = {}
    frames: dict[str, int] = {}
    for job in jobs:
        job_scp, job_frames = read_job_outputs(job)
        scp.update(job_scp)
        frames.update(job_frames)
    keep = sorted(u for u, n in frames.items() if min_frames <= n and (max_frames is None or n <= max_frames))
    dropped = sorted(set(frames) - set(keep))
    write_text_atomically(out_dir / "dropped", "".join(f"{u} {frames[u]}\n" for u in dropped))
    write_text_atomically(out_dir / "utt2num_frames", "".join(f"{u} {frames[u]}\n" for u in keep))
    write_text_atomically(out_dir / "feats.scp", "".join(f"{u} {scp[u]}\n" for u in keep))
    if dropped:
        logging.info("dropped %d utterances outside %s-%s frames, listed in %s", len(dropped), min_frames,
                     max_frames, out_dir / "dropped")
    return set(keep)


def filter_table(path: Path, keep: set[str]) -> list[str]:
    """Lines of a Kaldi table whose first field is in ``keep``, in file order."""
    lines = []
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            fields = line.split(maxsplit=1)
            if fields and fields[0] in keep:
                lines.append(line.rstrip("\n"))
    return lines


def copy_data_dir(data_dir: Path, out_dir: Path, recordings: Sequence[Recording], keep: set[str]) -> None:
    """The data dir's files restricted to ``keep``; ``wav.scp`` and ``spk2utt`` rebuilt."""
    names = sorted(p.name for p in data_dir.glob("text*") if p.is_file())
    names += [name for name in _COPIED_FILES if (data_dir / name).is_file()]
    for name in names:
        write_text_atomically(out_dir / name, "".join(f"{line}\n" for line in filter_table(data_dir / name, keep)))
    used = [r for r in recordings if any(u.utt_id in keep for u in r.utterances)]
    write_text_atomically(out_dir / "wav.scp", "".join(f"{r.recording_id} {r.wav}\n" for r in used))
    if (data_dir / "utt2spk").is_file():
        spk2utt: dict[str, list[str]] = {}
        for _, (utt_id, speaker) in read_table(out_dir / "utt2spk"):
            spk2utt.setdefault(speaker, []).append(utt_id)
        text = "".join(f"{spk} {' '.join(sorted(utts))}\n" for spk, utts in sorted(spk2utt.items()))
        write_text_atomically(out_dir / "spk2utt", text)


def remove_stale_job_files(split_dir: Path, job_count: int) -> None:
    """Delete job files numbered above ``job_count``, left by a run with a larger ``--nj``."""
    for path in split_dir.iterdir():
        match = _JOB_FILE.fullmatch(path.name)
        if match and int(match.group(1)) > job_count:
            path.unlink()


def make_fbank(data_dir: Path, out_dir: Path, nj: int, min_frames: int, max_frames: int | None) -> None:
    """The whole stage: jobs (skipping finished ones), merge, filtered data dir copy."""
    split_dir = Path(os.path.abspath(out_dir / "split"))
    if "," in str(split_dir):
        raise FbankError(f"--out-dir must not contain ',' (kaldiio's 'ark,scp:' specifier): {split_dir}")
    recordings = read_recordings(data_dir)
    jobs = make_jobs(recordings, nj, split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_job_files(split_dir, len(jobs))
    todo = [job for job in jobs if not job.is_done()]
    total = sum(len(job.utt_ids) for job in jobs)
    logging.info("%s: %d utterances in %d jobs, %d already done", data_dir, total, len(jobs), len(jobs) - len(todo))
    started = time.perf_counter()
    with tqdm(total=total, initial=total - sum(len(job.utt_ids) for job in todo), unit="utt", desc="fbank") as bar:
        run_jobs(todo, nj, bar)
    seconds = time.perf_counter() - started
    keep = merge_outputs(jobs, out_dir, min_frames, max_frames)
    copy_data_dir(data_dir, out_dir, recordings, keep)
    computed = sum(len(job.utt_ids) for job in todo)
    logging.info("computed %d utterances in %.1f s (%.1f utt/s); %s: %d utterances kept",
                 computed, seconds, computed / max(seconds, 1e-9), out_dir / "feats.scp", len(keep))


# --------------------------------------------------------------------------- command line


class _Parser(ErrorsRaise, ArgumentParser):
    """ESPnet's ``--config`` parser (unknown keys are an error); errors end as one ``ERROR:`` line."""


def get_parser() -> ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="Kaldi data dir with wav.scp and segments")
    parser.add_argument("--out-dir", required=True, help="where feats.scp and the filtered data dir go")
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--min-frames", type=int, default=5, help="drop utterances with fewer frames")
    parser.add_argument("--max-frames", type=int_or_none, default=3000, help="drop longer utterances; none: keep all")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = get_parser().parse_args(argv)
    if args.nj < 1 or args.min_frames < 0:
        raise FbankError(f"need --nj >= 1 and --min-frames >= 0, got {args.nj} and {args.min_frames}")
    if args.max_frames is not None and args.max_frames < args.min_frames:
        raise FbankError(f"--max-frames ({args.max_frames}) is below --min-frames ({args.min_frames})")
    return args


@command(TableError)
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = parse_args(argv)
    make_fbank(Path(args.data_dir), Path(args.out_dir), args.nj, args.min_frames, args.max_frames)


if __name__ == "__main__":
    sys.exit(main())
