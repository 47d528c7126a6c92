"""Tests for espnet2_ext/bin/make_fbank.py (fbank stage: parallel, resumable, filtered)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.bin import make_fbank
from espnet2_ext.utils.fbank import compute_fbank, num_frames

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
    """A Kaldi table as {first field: rest of line}."""
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


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
    return make_fbank.main(["--data-dir", str(data_dir), "--out-dir", str(out_dir), *extra])


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
    run(data_dir, out, "--min-frames", "0")
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
        (["--min-frames", "24", "--max-frames", "150"], {"utt_a2": "23", "utt_b2": "3", "utt_c1": "198"}),
        (["--min-frames", "0", "--max-frames", "none"], {}),
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


def test_changing_limits_reuses_computed_jobs(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    run(data_dir, out)
    ark = out / "split" / "feats.1.ark"
    stamp = ark.stat().st_mtime_ns
    run(data_dir, out, "--min-frames", "0")
    assert ark.stat().st_mtime_ns == stamp
    assert "utt_b2" in load_feats(out) and read(out / "dropped") == {}


def test_nj1_and_nj2_give_identical_features(data_dir: Path, tmp_path: Path):
    assert run(data_dir, tmp_path / "nj1", "--nj", "1") == 0
    assert run(data_dir, tmp_path / "nj2", "--nj", "2") == 0
    assert len(list((tmp_path / "nj2" / "split").glob("done.*"))) == 2
    one, two = load_feats(tmp_path / "nj1"), load_feats(tmp_path / "nj2")
    assert list(one) == list(two)
    for utt in one:
        np.testing.assert_array_equal(one[utt], two[utt])
    for name in ("utt2num_frames", "dropped", "text.src", "wav.scp", "spk2utt"):
        assert (tmp_path / "nj1" / name).read_text() == (tmp_path / "nj2" / name).read_text()


def test_smaller_nj_removes_files_of_jobs_that_no_longer_exist(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    split = out / "split"
    split.mkdir(parents=True)
    for name in ("feats.3.ark", "feats.3.scp", "utt2num_frames.3", "done.3", "feats.4.ark.tmp"):
        (split / name).write_text("from a run with --nj 4\n")
    assert run(data_dir, out) == 0
    assert sorted(p.name for p in split.iterdir()) == ["done.1", "feats.1.ark", "feats.1.scp", "utt2num_frames.1"]


def test_whole_recordings_without_segments_file(data_dir: Path, tmp_path: Path):
    (data_dir / "segments").unlink()
    for name in ("utt2spk", "text.src", "text.tgt.tagged", "spk2utt"):
        (data_dir / name).unlink()
    out = tmp_path / "dump"
    assert run(data_dir, out) == 0
    assert {utt: len(f) for utt, f in load_feats(out).items()} == {"rec_a": 298, "rec_b": 198, "rec_c": 198}


# --------------------------------------------------------------------------- resuming


def test_resume_after_kill_skips_finished_jobs_and_loses_nothing(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    jobs = make_fbank.make_jobs(make_fbank.read_recordings(data_dir), 2, (out / "split").absolute())
    assert [len(job.recordings) for job in jobs] == [1, 2]
    jobs[0].split_dir.mkdir(parents=True)
    make_fbank.run_job(jobs[0], lambda count: None)
    finished = jobs[0].ark.stat()
    # What a job killed mid-way leaves: temp files, and no done marker.
    for name in ("feats.2.ark.tmp", "feats.2.scp.tmp", "utt2num_frames.2.tmp"):
        (jobs[1].split_dir / name).write_text("utt_b1 garbage from a killed job\n")

    assert run(data_dir, out, "--nj", "2", "--min-frames", "0") == 0

    assert jobs[0].ark.stat().st_mtime_ns == finished.st_mtime_ns and jobs[0].ark.stat().st_ino == finished.st_ino
    assert jobs[1].is_done()
    assert not list(jobs[0].split_dir.glob("*.tmp"))
    scp_keys = [line.split()[0] for line in (out / "feats.scp").read_text().splitlines()]
    assert scp_keys == sorted(SEGMENTS)
    assert run(data_dir, tmp_path / "clean", "--min-frames", "0") == 0
    clean = load_feats(tmp_path / "clean")
    for utt, features in load_feats(out).items():
        np.testing.assert_array_equal(features, clean[utt])


def test_changed_data_dir_redoes_the_affected_job(data_dir: Path, tmp_path: Path):
    out = tmp_path / "dump"
    run(data_dir, out, "--min-frames", "0")
    replace(data_dir / "segments", "utt_a1 rec_a 0.000000 1.000000", "utt_a1 rec_a 0.000000 0.500000")
    run(data_dir, out, "--min-frames", "0")
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
        [sys.executable, "-m", "espnet2_ext.bin.make_fbank", "--data-dir", str(tmp_path / "nowhere"),
         "--out-dir", str(tmp_path / "dump")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: missing file") and "Traceback" not in result.stderr
