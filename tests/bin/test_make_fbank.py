"""Tests for espnet2_ext/bin/make_fbank.py and the stage it runs (main_funcs/fbank_dump.py):
parallel, resumable, filtered."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.bin import make_fbank
from espnet2_ext.fileio import data_dir as kaldi_dir
from espnet2_ext.fileio.kaldi_table import read_text
from espnet2_ext.main_funcs import fbank_dump
from espnet2_ext.utils.fbank import compute_fbank, num_frames
from tests.helpers import with_default_ctrl_c

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16000
# recording -> seconds of audio
RECORDINGS = {"rec_a": 3.0, "rec_b": 2.0, "rec_c": 2.0}
# utterance -> (recording, start, end); utt_b2 is 3 frames long, utt_c1 is the longest.
SEGMENTS = {
    "utt_a1": ("rec_a", 0.0, 1.0),
    "utt_a2": ("rec_a", 1.25, 1.5),
    "utt_a3": ("rec_a", 2.0, 3.0),
    "utt_b1": ("rec_b", 0.5, 1.5),
    "utt_b2": ("rec_b", 1.6, 1.645),
    "utt_c1": ("rec_c", 0.0, 1.995),
}
FRAMES = {"utt_a1": 98, "utt_a2": 23, "utt_a3": 98, "utt_b1": 98, "utt_b2": 3, "utt_c1": 198}


def read(path: Path) -> dict[str, str]:
    """A Kaldi table as {first field: rest of line}: the project's one reader of them."""
    return read_text(path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A Kaldi data dir like data_prep writes, over three noise wavs (rec_c is stereo)."""
    directory = tmp_path / "data" / "train"
    wavs = tmp_path / "wav"
    directory.mkdir(parents=True)
    wavs.mkdir()
    rng = np.random.default_rng(0)
    for recording, seconds in RECORDINGS.items():
        shape = (int(seconds * SAMPLE_RATE), 2) if recording == "rec_c" else int(seconds * SAMPLE_RATE)
        sf.write(wavs / f"{recording}.wav", rng.integers(-5000, 5000, shape, dtype=np.int16), SAMPLE_RATE)
    tables = {
        "wav.scp": {rec: str(wavs / f"{rec}.wav") for rec in RECORDINGS},
        "segments": {utt: f"{rec} {start:.6f} {end:.6f}" for utt, (rec, start, end) in SEGMENTS.items()},
        "utt2spk": {utt: rec for utt, (rec, _, _) in SEGMENTS.items()},
        "spk2utt": {rec: " ".join(u for u, (r, _, _) in SEGMENTS.items() if r == rec) for rec in RECORDINGS},
        "text.src": {utt: f"source of {utt}" for utt in SEGMENTS},
        "text.tgt.tagged": {utt: f"<lang:de> Ziel von {utt}" for utt in SEGMENTS},
    }
    for name, table in tables.items():
        (directory / name).write_text("".join(f"{key} {value}\n" for key, value in sorted(table.items())))
    return directory


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def run(data_dir: Path, out_dir: Path, *extra: str) -> int:
    return make_fbank.main(["--data_dir", str(data_dir), "--out_dir", str(out_dir), *extra])


def load_feats(out_dir: Path) -> dict[str, np.ndarray]:
    return dict(kaldiio.load_scp(str(out_dir / "feats.scp")))


def expected_features(data_dir: Path, utt: str) -> np.ndarray:
    """compute_fbank on the segment's samples, read independently of the stage."""
    recording, start, end = SEGMENTS[utt]
    samples, rate = sf.read(read(data_dir / "wav.scp")[recording], dtype="float32", always_2d=True)
    return compute_fbank(samples[round(start * rate) : round(end * rate)].mean(axis=1), rate)


# --------------------------------------------------------------------------- output


def test_features_equal_compute_fbank_on_the_segment(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    assert run(data_dir, out) == 0
    feats = load_feats(out)
    assert sorted(feats) == sorted(set(SEGMENTS) - {"utt_b2"})
    for utt, features in feats.items():
        np.testing.assert_array_equal(features, expected_features(data_dir, utt), err_msg=utt)


def test_frame_counts_match_durations(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    run(data_dir, out, "--min_frames", "0")
    frames = {utt: int(n) for utt, n in read(out / "utt2num_frames").items()}
    assert frames == FRAMES
    samples = {utt: round(end * SAMPLE_RATE) - round(start * SAMPLE_RATE) for utt, (_, start, end) in SEGMENTS.items()}
    assert frames == {utt: num_frames(n) for utt, n in samples.items()}
    assert {utt: len(f) for utt, f in load_feats(out).items()} == FRAMES


def test_outputs_sorted_with_absolute_ark_paths(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    run(data_dir, out, "--nj", "1")
    for name in ("feats.scp", "utt2num_frames", "text.src", "utt2spk", "segments", "wav.scp", "spk2utt"):
        keys = list(read(out / name))
        assert keys == sorted(keys), name
    for location in read(out / "feats.scp").values():
        ark, offset = location.rsplit(":", 1)
        assert Path(ark).is_absolute() and Path(ark).parent == out.absolute() / "split" and offset.isdigit()


@pytest.mark.parametrize(
    ("options", "dropped"),
    [
        ([], {"utt_b2": "3"}),
        (["--min_frames", "24", "--max_frames", "150"], {"utt_a2": "23", "utt_b2": "3", "utt_c1": "198"}),
        (["--min_frames", "0", "--max_frames", "none"], {}),
    ],
)
def test_min_max_frames_filter(data_dir: Path, tmp_path: Path, options: list[str], dropped: dict[str, str]):
    out = tmp_path / "dump"
    assert run(data_dir, out, *options) == 0
    kept = set(SEGMENTS) - set(dropped)
    assert read(out / "dropped") == dropped
    assert set(load_feats(out)) == set(read(out / "utt2num_frames")) == kept
    for name in ("text.src", "text.tgt.tagged", "utt2spk", "segments"):
        original = read(data_dir / name)
        assert read(out / name) == {utt: original[utt] for utt in sorted(kept)}, name
    recordings = {SEGMENTS[utt][0] for utt in kept}
    assert set(read(out / "wav.scp")) == recordings
    assert read(out / "spk2utt") == {
        rec: " ".join(sorted(u for u in kept if SEGMENTS[u][0] == rec)) for rec in sorted(recordings)
    }


def test_changing_limits_reuses_computed_chunks(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    run(data_dir, out)
    ark = out / "split" / "feats.1.ark"
    stamp = ark.stat().st_mtime_ns
    run(data_dir, out, "--min_frames", "0")
    assert ark.stat().st_mtime_ns == stamp
    assert "utt_b2" in load_feats(out) and read(out / "dropped") == {}


def test_nj1_and_nj2_give_identical_files(data_dir: Path, tmp_path: Path):
    assert run(data_dir, tmp_path / "nj1", "--nj", "1") == 0
    assert run(data_dir, tmp_path / "nj2", "--nj", "2") == 0
    arks = {nj: sorted((tmp_path / nj / "split").glob("feats.*.ark")) for nj in ("nj1", "nj2")}
    assert len(arks["nj1"]) == len(arks["nj2"]) > 1
    assert [p.read_bytes() for p in arks["nj1"]] == [p.read_bytes() for p in arks["nj2"]]
    one, two = load_feats(tmp_path / "nj1"), load_feats(tmp_path / "nj2")
    assert list(one) == list(two)
    for utt in one:
        np.testing.assert_array_equal(one[utt], two[utt])
    for name in ("utt2num_frames", "dropped", "text.src", "wav.scp", "spk2utt"):
        assert (tmp_path / "nj1" / name).read_text() == (tmp_path / "nj2" / name).read_text()


def test_rerun_with_another_nj_reuses_every_chunk(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    assert run(data_dir, out, "--nj", "1") == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "split").iterdir()}
    assert run(data_dir, out, "--nj", "3") == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "split").iterdir()} == stamps


def test_chunks_bound_the_work_a_kill_loses_whatever_nj(tmp_path: Path):
    """MuST-C en-de's shape: 2500 talks of 100 segments of 6.5 s (450 h)."""
    talks = [
        kaldi_dir.Recording(f"ted_{t}", f"/nowhere/ted_{t}.wav", tuple(
            kaldi_dir.Utterance(f"ted_{t}-{i}", i * 6.5, i * 6.5 + 6.5) for i in range(100)))
        for t in range(2500)
    ]
    chunks = fbank_dump.make_chunks(talks, tmp_path)
    hours = [sum(r.seconds() for r in chunk.recordings) / 3600 for chunk in chunks]
    assert len(chunks) >= 450 and max(hours) <= fbank_dump.CHUNK_SECONDS / 3600 + 650 / 3600
    assert [r for chunk in chunks for r in chunk.recordings] == talks
    assert [chunk.index for chunk in chunks] == list(range(1, len(chunks) + 1))


def test_small_sets_get_enough_chunks_for_every_job(tmp_path: Path):
    talks = [
        kaldi_dir.Recording(f"ted_{t}", "", (kaldi_dir.Utterance(f"u{t}", 0.0, 60.0),)) for t in range(100)
    ]
    assert len(fbank_dump.make_chunks(talks, tmp_path)) == fbank_dump.MIN_CHUNKS
    assert len(fbank_dump.make_chunks(talks[:5], tmp_path)) == 5


def test_stale_chunk_files_and_temp_files_are_removed(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    split = out / "split"
    split.mkdir(parents=True)
    stale = ("feats.40.ark", "feats.40.scp", "utt2num_frames.40", "done.40", "feats.41.ark.tmp", "feats.1.ark.tmp")
    for name in stale:
        (split / name).write_text("from another run\n")
    assert run(data_dir, out) == 0
    chunks = fbank_dump.make_chunks(kaldi_dir.read_recordings(data_dir), split)
    expected = [p.name for c in chunks for p in (c.ark, c.scp, c.num_frames, c.marker)]
    assert sorted(p.name for p in split.iterdir()) == sorted(expected)


def test_whole_recordings_without_segments_file(data_dir: Path, tmp_path: Path):
    (data_dir / "segments").unlink()
    for name in ("utt2spk", "text.src", "text.tgt.tagged", "spk2utt"):
        (data_dir / name).unlink()
    out = tmp_path / "dump"
    assert run(data_dir, out) == 0
    assert {utt: len(f) for utt, f in load_feats(out).items()} == {"rec_a": 298, "rec_b": 198, "rec_c": 198}


# --------------------------------------------------------------------------- resuming


def test_resume_after_kill_skips_finished_chunks_and_loses_nothing(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    chunks = fbank_dump.make_chunks(kaldi_dir.read_recordings(data_dir), (out / "split").absolute())
    assert [len(chunk.recordings) for chunk in chunks] == [1, 2]
    chunks[0].split_dir.mkdir(parents=True)
    fbank_dump.run_chunk(chunks[0], lambda count: None)
    finished = chunks[0].ark.stat()
    # What a chunk killed mid-way leaves: temp files, and no done marker.
    for name in ("feats.2.ark.tmp", "feats.2.scp.tmp", "utt2num_frames.2.tmp"):
        (chunks[1].split_dir / name).write_text("utt_b1 garbage from a killed job\n")

    assert run(data_dir, out, "--nj", "2", "--min_frames", "0") == 0

    assert chunks[0].ark.stat().st_mtime_ns == finished.st_mtime_ns and chunks[0].ark.stat().st_ino == finished.st_ino
    assert chunks[1].is_done()
    assert not list(chunks[0].split_dir.glob("*.tmp"))
    scp_keys = [line.split()[0] for line in (out / "feats.scp").read_text().splitlines()]
    assert scp_keys == sorted(SEGMENTS)
    assert run(data_dir, tmp_path / "clean", "--min_frames", "0") == 0
    clean = load_feats(tmp_path / "clean")
    for utt, features in load_feats(out).items():
        np.testing.assert_array_equal(features, clean[utt])


def test_failed_chunk_leaves_no_temp_files(data_dir: Path, tmp_path: Path):
    missing_wav(data_dir)
    chunks = fbank_dump.make_chunks(kaldi_dir.read_recordings(data_dir), tmp_path / "split")
    (tmp_path / "split").mkdir()
    with pytest.raises(kaldi_dir.DataDirError, match="rec_b.wav"):
        fbank_dump.run_chunk(chunks[1], lambda count: None)
    assert list((tmp_path / "split").iterdir()) == []


def start_with_chunk_2_blocked(data_dir: Path, out: Path) -> tuple[subprocess.Popen, Path, bytes]:
    """make_fbank with 2 jobs, in its own session, returned once chunk 1 is done while
    chunk 2 waits on a FIFO in place of rec_c's wav; also that wav's path and bytes."""
    wav = Path(read(data_dir / "wav.scp")["rec_c"])
    audio = wav.read_bytes()
    wav.unlink()
    os.mkfifo(wav)
    process = subprocess.Popen(
        [sys.executable, "-m", "espnet2_ext.bin.make_fbank", "--data_dir", str(data_dir), "--out_dir", str(out),
         "--nj", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=with_default_ctrl_c,
    )
    deadline = time.monotonic() + 120
    while not (out / "split" / "done.1").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return process, wav, audio


def stop_and_wait(process: subprocess.Popen, stop: Callable[[], None]) -> str:
    """Call ``stop``, wait for the program to end, return its stderr; kill its session if it hangs."""
    try:
        stop()
        _, stderr = process.communicate(timeout=60)
    finally:
        os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
    return stderr


@pytest.mark.parametrize(("signal_name", "to_group"), [("SIGINT", True), ("SIGTERM", False)],
                         ids=["ctrl-c", "kill"])
def test_interrupt_says_how_to_resume_and_the_rerun_resumes(
    data_dir: Path, tmp_path: Path, signal_name: str, to_group: bool
):
    """Ctrl-C (to the process group, as a terminal sends it) or SIGTERM (to the parent) while
    chunk 2 waits on a FIFO: one line, no traceback, no temp files; the re-run keeps chunk 1."""
    out = tmp_path / "dump"
    process, wav, audio = start_with_chunk_2_blocked(data_dir, out)
    signum = getattr(signal, signal_name)
    stderr = stop_and_wait(
        process, lambda: os.killpg(process.pid, signum) if to_group else os.kill(process.pid, signum)
    )
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    interrupted = [line for line in stderr.splitlines() if line.startswith("INTERRUPTED")]
    assert interrupted == [f"INTERRUPTED by {signal_name}{' (Ctrl-C)' if to_group else ''}: "
                           f"{make_fbank.HOW_TO_RESUME}"], stderr
    split = out / "split"
    assert sorted(p.name for p in split.iterdir()) == ["done.1", "feats.1.ark", "feats.1.scp", "utt2num_frames.1"]
    stamp = (split / "feats.1.ark").stat().st_mtime_ns

    wav.unlink()
    wav.write_bytes(audio)
    assert run(data_dir, out, "--nj", "2") == 0
    assert (split / "feats.1.ark").stat().st_mtime_ns == stamp
    assert run(data_dir, tmp_path / "clean") == 0
    for name in ("feats.1.ark", "feats.2.ark"):
        assert (split / name).read_bytes() == (tmp_path / "clean" / "split" / name).read_bytes()


def spawned_workers(pid: int) -> list[int]:
    """Pids of the multiprocessing workers ``pid`` spawned (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if b"multiprocessing.spawn" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_a_worker_killed_outright_is_one_error_line_and_the_rerun_resumes(data_dir: Path, tmp_path: Path):
    """A worker SIGKILLed mid-chunk (as the OOM killer does): the run stops with one ERROR line
    naming the signal and how to resume, not a hang or a traceback; the re-run finishes."""
    out = tmp_path / "dump"
    process, wav, audio = start_with_chunk_2_blocked(data_dir, out)
    workers = spawned_workers(process.pid)
    assert workers, "no spawned worker found"
    stderr = stop_and_wait(process, lambda: [os.kill(worker, signal.SIGKILL) for worker in workers])
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "died (killed by SIGKILL)" in errors[0] and "run the same command again" in errors[0]

    wav.unlink()
    wav.write_bytes(audio)
    assert run(data_dir, out, "--nj", "2") == 0
    assert not list((out / "split").glob("*.tmp"))
    assert run(data_dir, tmp_path / "clean") == 0
    assert (out / "split" / "feats.2.ark").read_bytes() == (tmp_path / "clean" / "split" / "feats.2.ark").read_bytes()


def test_changed_data_dir_redoes_the_affected_job(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    run(data_dir, out, "--min_frames", "0")
    replace(data_dir / "segments", "utt_a1 rec_a 0.000000 1.000000", "utt_a1 rec_a 0.000000 0.500000")
    run(data_dir, out, "--min_frames", "0")
    assert len(load_feats(out)["utt_a1"]) == 48


# --------------------------------------------------------------------------- bad input


def missing_wav(data_dir: Path) -> list[str]:
    Path(read(data_dir / "wav.scp")["rec_b"]).unlink()
    return []


def unreadable_wav(data_dir: Path) -> list[str]:
    Path(read(data_dir / "wav.scp")["rec_b"]).write_bytes(b"RIFF\x00junk")
    return []


def segment_out_of_range(data_dir: Path) -> list[str]:
    replace(data_dir / "segments", "utt_b1 rec_b 0.500000 1.500000", "utt_b1 rec_b 1.900000 2.500000")
    return []


def unknown_recording(data_dir: Path) -> list[str]:
    with (data_dir / "segments").open("a") as stream:
        stream.write("utt_z rec_z 0.0 1.0\n")
    return []


def missing_wav_scp(data_dir: Path) -> list[str]:
    (data_dir / "wav.scp").unlink()
    return []


def unknown_config_key(data_dir: Path) -> list[str]:
    config = data_dir.parent / "fbank.yaml"
    config.write_text("nj: 2\nmax_frame: 10\n")
    return ["--config", str(config)]


@pytest.mark.parametrize(
    ("break_input", "fragments"),
    [
        (missing_wav, ["utterance utt_b1", "cannot read wav", "rec_b.wav"]),
        (unreadable_wav, ["utterance utt_b1", "cannot read wav", "rec_b.wav"]),
        (segment_out_of_range, ["utterance utt_b1", "out of range", "rec_b.wav", "2.000 s"]),
        (unknown_recording, ["utt_z", "recording rec_z is not in wav.scp"]),
        (missing_wav_scp, ["missing file", "wav.scp"]),
        (unknown_config_key, ["max_frame", "fbank.yaml"]),
    ],
    ids=lambda value: value.__name__ if callable(value) else "",
)
def test_bad_input_gives_one_error_line_and_exit_1(
    break_input, fragments: list[str], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    extra = break_input(data_dir)
    out = tmp_path / "dump"
    assert run(data_dir, out, *extra) == 1
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert not (out / "feats.scp").exists()


def test_error_in_a_worker_stops_the_run(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    missing_wav(data_dir)
    assert run(data_dir, tmp_path / "dump", "--nj", "2") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and "utterance utt_b1" in errors[0]
    assert not (tmp_path / "dump" / "feats.scp").exists()


def test_module_exits_1_without_traceback(data_dir: Path, tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "espnet2_ext.bin.make_fbank", "--data_dir", str(tmp_path / "nowhere"),
         "--out_dir", str(tmp_path / "dump")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: missing file") and "Traceback" not in result.stderr


@pytest.mark.parametrize("occupied", ["file", "file_above"])
def test_unusable_out_dir_is_one_line_before_any_work(data_dir: Path, tmp_path: Path, capsys, occupied: str):
    (tmp_path / "taken").write_text("a file\n")
    out = tmp_path / "taken" if occupied == "file" else tmp_path / "taken" / "dump"
    assert run(data_dir, out) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: --out_dir {out}") and error.count("\n") == 1, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "taken", "wav"]
