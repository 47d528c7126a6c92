"""Where translate's lines go, and what a user sees when writing fails or they press Ctrl-C.

Each test runs the program as a user does, in a subprocess, with the packed tiny model.
"""

import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import DECODE_SEARCH, with_default_ctrl_c

ROOT = Path(__file__).resolve().parents[2]
SEARCH = [arg for key, value in DECODE_SEARCH.items() for arg in (f"--{key}", str(value))]


def command(model: Path, cache: Path, *argv) -> list[str]:
    return [sys.executable, "-m", "espnet2_ext.bin.translate", "--model", str(model), "--cache_dir", str(cache),
            *SEARCH, *map(str, argv)]


def run(model: Path, cache: Path, *argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command(model, cache, *argv), capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_stdout_that_cannot_be_written_is_one_error(packed_trained, cache, clips):
    with open("/dev/full", "w") as full:
        result = subprocess.run(command(packed_trained, cache, sorted(clips.values())[0]), stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=with_default_ctrl_c)
    assert result.returncode == 1
    assert result.stderr == "ERROR: writing to stdout failed: No space left on device\n"


def test_output_to_a_full_device_is_one_error_and_the_device_stays(packed_trained, cache, clips):
    result = run(packed_trained, cache, sorted(clips.values())[0], "--output", "/dev/full")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "ERROR: writing to /dev/full failed: No space left on device\n"
    assert Path("/dev/full").is_char_device()


def test_output_through_a_symlink_writes_its_target(packed_trained, cache, clips, tmp_path, translator):
    target = tmp_path / "results" / "hyps.tsv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.tsv"
    link.symlink_to(target)
    clip = sorted(clips.values())[0]
    result = run(packed_trained, cache, clip, "--output", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and target.read_text() == f"{clip}\t{translator(clip).text}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["hyps.tsv"]


def test_output_to_a_fifo_streams_lines_to_its_reader(packed_trained, cache, clips, tmp_path):
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.extend(fifo.read_text().splitlines()))
    reader.start()
    inputs = sorted(clips.values())[:3]
    result = run(packed_trained, cache, *inputs, "--output", fifo, timeout=300)
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in received] == [str(p) for p in inputs]
    assert fifo.is_fifo(), "the FIFO is written, not replaced by a file"


def test_ctrl_c_is_one_line_keeps_the_lines_written_and_leaves_output_as_it_was(packed_trained, cache, clips, tmp_path):
    inputs = sorted(clips.values()) * 20  # long enough to be interrupted
    process = subprocess.Popen(command(packed_trained, cache, *inputs, "--batch_size", 1), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=with_default_ctrl_c)
    first = process.stdout.readline()  # a line is written as soon as its input is done
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=120)
    assert first.startswith(f"{inputs[0]}\t")
    assert process.returncode == 128 + signal.SIGINT
    assert err.splitlines() == [
        "INTERRUPTED by SIGINT (Ctrl-C): the lines and subtitle files written so far are complete; "
        "an --output file was left as it was"
    ]
    assert all("\t" in line for line in rest.splitlines()), "every line written is whole"

    out = tmp_path / "hyps.tsv"
    out.write_text("old\n")
    process = subprocess.Popen(command(packed_trained, cache, *inputs, "--output", out), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=with_default_ctrl_c)
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # writing has begun
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGINT and len(err.splitlines()) == 1, err
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["hyps.tsv"]


@pytest.mark.parametrize("threads", [1000])
def test_more_threads_than_cores_are_clamped_with_a_warning(packed_trained, cache, clips, threads):
    result = run(packed_trained, cache, sorted(clips.values())[0], "--num_threads", threads)
    cores = len(os.sched_getaffinity(0))
    assert result.returncode == 0
    assert f"--num_threads {threads} is more than the {cores} cores available: using {cores}" in result.stderr


def test_a_long_recording_shows_its_progress_in_seconds_on_a_terminal(packed_trained, cache, clips, tmp_path):
    """One file of 70 s: no bar by file count, but one counting the seconds read (on a terminal only)."""
    import numpy as np
    import soundfile as sf

    pieces = [sf.read(path, dtype="float32")[0] for path in sorted(clips.values())]
    pause = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([part for piece in pieces for part in (piece, pause)])
    audio = np.tile(audio, int(np.ceil(70 * 16000 / len(audio))))[: 70 * 16000]
    path = tmp_path / "talk.wav"
    sf.write(path, audio, 16000)
    master, slave = pty.openpty()
    try:
        result = subprocess.run(command(packed_trained, cache, path), stdout=subprocess.PIPE, stderr=slave,
                                text=True, cwd=ROOT, timeout=600)
    finally:
        os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's other end is closed and its buffer read
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert result.returncode == 0 and result.stdout.startswith(f"{path}\t")
    assert "100%" in drawn.decode() and "70.0/70.0" in drawn.decode(), drawn.decode()
    logged = run(packed_trained, cache, path)
    assert logged.returncode == 0 and logged.stderr == "", "no bar where stderr is not a terminal"
