"""A data dir's recordings, utterances and samples, and its copy restricted to some utterances."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.fileio.data_dir import (
    DataDirError,
    Utterance,
    copy_data_dir,
    read_recordings,
    read_utterances,
    sample_range,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    for name in ("b", "a"):
        sf.write(tmp_path / f"{name}.wav", np.arange(16000, dtype=np.int16), 16000, subtype="PCM_16")
    (directory / "wav.scp").write_text(f"b {tmp_path / 'b.wav'}\na {tmp_path / 'a.wav'}\n")
    (directory / "segments").write_text("a2 a 0.50 0.75\na1 a 0.00 0.25\nb1 b 0.10 0.20\n")
    (directory / "utt2spk").write_text("a1 spk_a\na2 spk_a\nb1 spk_b\n")
    (directory / "text.src").write_text("a1 first\na2 second\nb1 third\n")
    return directory


def test_recordings_sorted_by_id_and_utterances_by_start(data_dir: Path):
    recordings = read_recordings(data_dir)
    assert [r.recording_id for r in recordings] == ["a", "b"]
    assert [u.utt_id for u in recordings[0].utterances] == ["a1", "a2"]
    assert recordings[0].seconds() == pytest.approx(0.5)


def test_utterance_samples_are_the_segment_s(data_dir: Path):
    (utt, samples, rate), _ = read_utterances(read_recordings(data_dir)[0])
    assert utt.utt_id == "a1" and rate == 16000 and samples.shape == (4000, 1)
    np.testing.assert_array_equal(samples[:, 0], np.arange(4000) / 32768.0)


def test_sample_range_checks_the_file_length():
    assert sample_range(Utterance("u", 0.5, None), 16000, 16000, "x.wav") == (8000, 16000)
    with pytest.raises(DataDirError, match=r"utterance u: segment 0.5-1.5 s is out of range of x.wav \(1.000 s\)"):
        sample_range(Utterance("u", 0.5, 1.5), 16000, 16000, "x.wav")


def test_unknown_recording_is_named(data_dir: Path):
    with (data_dir / "segments").open("a") as stream:
        stream.write("c1 c 0.0 0.1\n")
    with pytest.raises(DataDirError, match=r"segments:4: utterance c1: recording c is not in wav.scp"):
        read_recordings(data_dir)


def test_copy_keeps_only_the_kept_utterances_and_rebuilds_wav_scp_and_spk2utt(data_dir: Path, tmp_path: Path):
    out = tmp_path / "copy"
    copy_data_dir(data_dir, out, read_recordings(data_dir), {"a2", "a1"})
    assert (out / "text.src").read_text() == "a1 first\na2 second\n"
    assert (out / "segments").read_text() == "a2 a 0.50 0.75\na1 a 0.00 0.25\n"
    assert (out / "wav.scp").read_text() == f"a {tmp_path / 'a.wav'}\n"
    assert (out / "spk2utt").read_text() == "spk_a a1 a2\n"
