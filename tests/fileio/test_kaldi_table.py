"""wav.scp parsing: errors name the file and line."""

import pytest

from espnet2_ext.fileio.kaldi_table import TableError, read_wav_scp


def test_wav_scp_keeps_paths_with_spaces(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("a /data/a b.wav\n\nb rel/b.flac\n", encoding="utf-8")
    assert read_wav_scp(scp) == {"a": "/data/a b.wav", "b": "rel/b.flac"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("lonely", "expected '<recording-id> <wav path>' with a new id"),
        ("a x.wav", "expected '<recording-id> <wav path>' with a new id"),
        ("b sox x.wav -t wav - |", "Kaldi pipes are not supported"),
    ],
    ids=["one field", "duplicate id", "pipe"],
)
def test_bad_wav_scp_line_is_named(tmp_path, line, message):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a a.wav\n{line}\n", encoding="utf-8")
    with pytest.raises(TableError, match=f"^{scp}:2: {message}"):
        read_wav_scp(scp)


def test_missing_wav_scp(tmp_path):
    with pytest.raises(TableError, match="missing file"):
        read_wav_scp(tmp_path / "wav.scp")
