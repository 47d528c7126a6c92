"""Recipe stage 2: 80-dim Kaldi fbank of a data dir into kaldiio ark/scp files, in
resumable chunks computed by parallel workers.

Writes, under the output dir:

- ``split/feats.<chunk>.{ark,scp}``, ``split/utt2num_frames.<chunk>``, ``split/done.<chunk>``:
  one set per chunk, the unit of work and of resumption. A chunk is a run of whole
  recordings holding about ``CHUNK_SECONDS`` (an hour) of audio, a few seconds to a
  minute of work, and there are at least ``MIN_CHUNKS`` of them (fewer only with
  fewer recordings) so that small sets keep every job busy. Chunks never depend on
  the number of jobs: the workers take chunks in turn, and a re-run with another
  number reuses every finished one. A chunk is computed under temp names, renamed
  when complete, and its done marker is written last, so a kill loses at most the
  chunks in progress. The marker holds a hash of the chunk's input (recordings, wav
  paths, segment times, feature settings): a chunk whose input changed is recomputed
  instead of reused. Temp files of unfinished chunks are removed on Ctrl-C or
  SIGTERM, and by the next run after a SIGKILL.
- ``feats.scp`` and ``utt2num_frames`` of the utterances with ``min_frames`` to
  ``max_frames`` frames (``None``: no upper limit), sorted by utterance id (ark paths
  are absolute); ``dropped``: ``<utt-id> <frames>`` of the others. Changing the limits
  only redoes this merge: chunks keep every utterance.
- the data dir's ``text*``, ``utt2spk``, ``segments``, ``wav.scp`` and ``spk2utt``
  restricted to the kept utterances (:func:`espnet2_ext.fileio.data_dir.copy_data_dir`),
  so training reads one dir with consistent keys.

Each recording is opened once, reading only its segments' samples. Features take
about as much disk as the 16-bit audio: 115 MB per hour (51 GB for MuST-C en-de).
"""

import hashlib
import logging
import math
import multiprocessing
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np
import torch
from kaldiio import WriteHelper
from tqdm import tqdm

from espnet2_ext.fileio.atomic import write_lines_atomically, write_text_atomically
from espnet2_ext.fileio.data_dir import Recording, copy_data_dir, read_recordings, read_utterances
from espnet2_ext.fileio.kaldi_table import TableError, read_text
from espnet2_ext.utils.fbank import (
    FRAME_LENGTH_MS,
    FRAME_SHIFT_MS,
    NUM_MEL_BINS,
    SAMPLE_RATE,
    compute_fbank,
)
from espnet2_ext.utils.progress import progress_bar
from espnet2_ext.utils.waveform import mix_to_mono

CHUNK_SECONDS = 3600.0
MIN_CHUNKS = 32
_FEATURE_SETTINGS = f"kaldi-fbank bins={NUM_MEL_BINS} len={FRAME_LENGTH_MS} shift={FRAME_SHIFT_MS} sr={SAMPLE_RATE}"
_CHUNK_FILE = re.compile(r"(?:feats|utt2num_frames|done)\.(\d+)(?:\.ark|\.scp)?(?:\.tmp)?")


class FbankDumpError(ValueError):
    """An output dir kaldiio cannot name, or chunk outputs that do not match their input."""


class WorkerDied(FbankDumpError):
    """A worker process ended without finishing its chunk (killed by the OOM killer, say)."""

    @classmethod
    def of(cls, worker: multiprocessing.Process) -> "WorkerDied":
        """The error naming how ``worker`` ended, once it has (waiting a few seconds at most)."""
        worker.join(timeout=5)
        code = worker.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return cls(
            f"fbank worker {worker.name} (pid {worker.pid}) died ({how}) before finishing its chunk; "
            "finished chunks are kept: run the same command again to resume"
        )


@dataclass(frozen=True)
class Chunk:
    """A run of recordings computed as one unit, and the names of its files in ``split_dir``."""

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
        """Hash of everything the chunk's output depends on."""
        digest = hashlib.sha256(_FEATURE_SETTINGS.encode())
        for recording in self.recordings:
            digest.update(f"\n{recording.recording_id} {recording.wav}".encode())
            for utt in recording.utterances:
                digest.update(f"\n {utt.utt_id} {utt.start!r} {utt.end!r}".encode())
        return digest.hexdigest()

    def is_done(self) -> bool:
        return self.marker.is_file() and self.marker.read_text() == self.fingerprint()


def make_chunks(recordings: Sequence[Recording], split_dir: Path) -> list[Chunk]:
    """Contiguous runs of recordings of about equal audio, at most ``CHUNK_SECONDS`` each
    (plus one recording), at least ``MIN_CHUNKS`` of them where there are enough recordings.

    They depend on the data only, never on the number of jobs, so any run reuses any other's chunks.
    """
    seconds = [recording.seconds() for recording in recordings]
    if sum(seconds) <= 0:
        seconds = [1.0] * len(recordings)
    total = sum(seconds)
    count = min(len(recordings), max(MIN_CHUNKS, math.ceil(total / CHUNK_SECONDS)))
    groups: list[list[Recording]] = [[] for _ in range(count)]
    done = 0.0
    for recording, length in zip(recordings, seconds):
        groups[min(int(done * count / total), count - 1)].append(recording)
        done += length
    non_empty = [group for group in groups if group]
    return [Chunk(index, split_dir, tuple(group)) for index, group in enumerate(non_empty, 1)]


# --------------------------------------------------------------------------- one chunk


def recording_features(recording: Recording) -> Iterator[tuple[str, np.ndarray]]:
    """(utt id, features ``(frames, 80)``) of each utterance of the recording."""
    for utt, samples, sample_rate in read_utterances(recording):
        yield utt.utt_id, compute_fbank(mix_to_mono(samples), sample_rate)


def temp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def run_chunk(chunk: Chunk, report: Callable[[int], object]) -> None:
    """Compute one chunk's features into temp files, publish them, write the marker last.

    ``report`` receives the number of utterances finished, once per recording. On
    any exception (an error, Ctrl-C, a parent gone) the temp files are removed.
    The three outputs are renamed one by one; only the marker, written last, says
    the set is complete.
    """
    chunk.marker.unlink(missing_ok=True)
    outputs = (chunk.ark, chunk.scp, chunk.num_frames)
    try:
        lengths = []
        with WriteHelper(f"ark,scp:{temp_path(chunk.ark)},{temp_path(chunk.scp)}") as writer:
            for recording in chunk.recordings:
                for utt_id, features in recording_features(recording):
                    writer(utt_id, features)
                    lengths.append(f"{utt_id} {len(features)}")
                report(len(recording.utterances))
        scp_lines = temp_path(chunk.scp).read_text(encoding="utf-8").splitlines()
        old, new = f" {temp_path(chunk.ark)}:", f" {chunk.ark}:"
        _write_lines(temp_path(chunk.scp), [line.replace(old, new, 1) for line in scp_lines])
        _write_lines(temp_path(chunk.num_frames), lengths)
    except BaseException:
        for path in outputs:
            temp_path(path).unlink(missing_ok=True)
        raise
    for path in outputs:
        os.replace(temp_path(path), path)
    write_text_atomically(chunk.marker, chunk.fingerprint())


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    """A chunk's temp file: published by :func:`run_chunk` with the others, not on its own."""
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        stream.writelines(f"{line}\n" for line in lines)


# --------------------------------------------------------------------------- workers


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """One torch thread while inside; fbank of one utterance is too small to parallelise.

    With several threads each call pays synchronisation overhead (measured 25x slower
    on 2 shared cores); parallelism comes from the jobs instead.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while inside: processes started here inherit it, even across exec.

    Ctrl-C then reaches the parent only, which stops its workers itself, and a worker
    still importing torch prints no traceback of its own.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker(connection: Connection, parent: int) -> None:
    """Body of a worker process: single-threaded chunks received on ``connection`` until ``None``.

    A worker whose parent was killed (SIGKILL skips the parent's cleanup) stops at its
    next report instead of racing a re-run for the same chunk files.
    """

    def report(count: int) -> None:
        if os.getppid() != parent:
            raise SystemExit(f"fbank worker: parent process {parent} is gone")
        connection.send(("progress", count))

    torch.set_num_threads(1)
    for chunk in iter(connection.recv, None):
        try:
            run_chunk(chunk, report)
        except TableError as err:
            connection.send(("error", str(err)))
            return
        connection.send(("done", chunk.index))


def run_chunks(chunks: Sequence[Chunk], nj: int, progress: tqdm) -> None:
    """Run ``chunks`` in ``nj`` worker processes, each handed the next chunk when it
    finishes one, or in-process when only one would work (starting a worker costs
    seconds of imports).

    Workers are spawned, not forked (forking after torch's thread pool ran can hang),
    and talk to the parent over one pipe each: pipes need no named semaphores, so a
    Ctrl-C at any moment leaves none for multiprocessing's resource tracker to report
    as leaked. On the first error, Ctrl-C or SIGTERM the workers are terminated
    (their chunks are redone by the next run) and the exception propagates.
    """
    if min(nj, len(chunks)) <= 1:
        with single_threaded_torch():
            for chunk in chunks:
                run_chunk(chunk, progress.update)
        return
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe() for _ in range(min(nj, len(chunks)))]
    workers = {
        ours: context.Process(target=_worker, args=(theirs, os.getpid()), daemon=True) for ours, theirs in pipes
    }
    try:
        with sigint_ignored():
            for worker in workers.values():
                worker.start()
        for _, theirs in pipes:
            theirs.close()  # the worker's end now lives in the worker only: its death reads as EOF here
        dispatch_chunks(workers, chunks, progress)
    finally:
        for worker in workers.values():
            if worker.is_alive():
                worker.terminate()
            if worker.pid is not None:
                worker.join()
        for ours, theirs in pipes:
            ours.close()
            theirs.close()


def dispatch_chunks(workers: dict[Connection, multiprocessing.Process], chunks: Sequence[Chunk], progress: tqdm) -> None:
    """Hand each worker a chunk, and the next whenever it reports one done (``None``, its
    signal to stop, once none is left), until all are done; raise the first error or
    the death of a worker that still had a chunk."""
    waiting = iter(chunks)
    busy: set[Connection] = set()

    def hand_next(connection: Connection) -> None:
        chunk = next(waiting, None)
        try:
            connection.send(chunk)
        except OSError:  # a broken pipe: the worker is gone
            raise WorkerDied.of(workers[connection]) from None
        if chunk is None:
            busy.discard(connection)
        else:
            busy.add(connection)

    for connection in workers:
        hand_next(connection)
    while busy:
        for connection in wait(list(busy)):
            try:
                kind, value = connection.recv()
            except (EOFError, OSError):  # closed, or reset with our last message unread
                raise WorkerDied.of(workers[connection]) from None
            if kind == "error":
                raise TableError(value)
            if kind == "progress":
                progress.update(value)
            else:
                hand_next(connection)


# --------------------------------------------------------------------------- merging


def read_chunk_outputs(chunk: Chunk) -> tuple[dict[str, str], dict[str, int]]:
    """A finished chunk's scp entries and frame counts, checked to cover exactly its utterances."""
    scp = read_text(chunk.scp)
    frames = {utt_id: int(count) for utt_id, count in read_text(chunk.num_frames).items()}
    expected = set(chunk.utt_ids)
    if set(scp) != expected or set(frames) != expected:
        raise FbankDumpError(
            f"outputs of chunk {chunk.index} do not match its utterances; delete {chunk.marker} and re-run"
        )
    return scp, frames


def merge_outputs(chunks: Sequence[Chunk], out_dir: Path, min_frames: int, max_frames: int | None) -> set[str]:
    """Write the sorted ``feats.scp``, ``utt2num_frames`` and ``dropped``; return the kept ids."""
    scp: dict[str, str] = {}
    frames: dict[str, int] = {}
    for chunk in chunks:
        chunk_scp, chunk_frames = read_chunk_outputs(chunk)
        scp.update(chunk_scp)
        frames.update(chunk_frames)
    keep = sorted(u for u, n in frames.items() if min_frames <= n and (max_frames is None or n <= max_frames))
    dropped = sorted(set(frames) - set(keep))
    write_lines_atomically(out_dir / "dropped", [f"{u} {frames[u]}" for u in dropped])
    write_lines_atomically(out_dir / "utt2num_frames", [f"{u} {frames[u]}" for u in keep])
    write_lines_atomically(out_dir / "feats.scp", [f"{u} {scp[u]}" for u in keep])
    if dropped:
        logging.info("dropped %d utterances outside %s-%s frames, listed in %s", len(dropped), min_frames,
                     max_frames, out_dir / "dropped")
    return set(keep)


def remove_stale_files(split_dir: Path, chunk_count: int) -> None:
    """Delete temp files (a killed run's) and files of chunks numbered above ``chunk_count``."""
    for path in split_dir.iterdir():
        match = _CHUNK_FILE.fullmatch(path.name)
        if match and (path.suffix == ".tmp" or int(match.group(1)) > chunk_count):
            path.unlink()


def dump_fbank(data_dir: Path, out_dir: Path, nj: int, min_frames: int, max_frames: int | None) -> None:
    """The whole stage: chunks (skipping finished ones), merge, filtered data dir copy."""
    split_dir = Path(os.path.abspath(out_dir / "split"))
    if "," in str(split_dir):
        raise FbankDumpError(f"the output dir must not contain ',' (kaldiio's 'ark,scp:' specifier): {split_dir}")
    recordings = read_recordings(data_dir)
    chunks = make_chunks(recordings, split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_files(split_dir, len(chunks))
    todo = [chunk for chunk in chunks if not chunk.is_done()]
    total = sum(len(chunk.utt_ids) for chunk in chunks)
    hours = sum(recording.seconds() for recording in recordings) / 3600
    logging.info("%s: %d utterances, %.1f h, in %d chunks, %d already done; %d jobs", data_dir, total, hours,
                 len(chunks), len(chunks) - len(todo), min(nj, len(todo)))
    started = time.perf_counter()
    try:
        initial = total - sum(len(c.utt_ids) for c in todo)
        with progress_bar(total=total, initial=initial, unit="utt", desc="fbank") as bar:
            run_chunks(todo, nj, bar)
    finally:
        remove_stale_files(split_dir, len(chunks))
    seconds = time.perf_counter() - started
    keep = merge_outputs(chunks, out_dir, min_frames, max_frames)
    copy_data_dir(data_dir, out_dir, recordings, keep)
    computed = sum(len(chunk.utt_ids) for chunk in todo)
    logging.info("computed %d utterances in %.1f s (%.1f utt/s); %s: %d utterances kept",
                 computed, seconds, computed / max(seconds, 1e-9), out_dir / "feats.scp", len(keep))
