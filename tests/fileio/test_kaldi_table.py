"""Kaldi tables: one reader per format, errors that name the file and line."""

import pytest

from espnet2_ext.fileio.kaldi_table import TableError, read_table, read_text, read_wav_scp, spk2utt_lines, write_text


def test_wav_scp_keeps_paths_with_spaces(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("a /data/a b.wav\n\nb rel/b.flac\n", encoding="utf-8")
    assert read_wav_scp(scp) == {"a": "/data/a b.wav", "b": "rel/b.flac"}


@pytest.mark.parametrize(
    "line, message",
    [
        ("lonely", "expected '<recording-id> <wav path>' with a new id"),
        ("a x.wav", "expected '<recording-id> <wav path>' with a new id"),
        ("b sox x.wav -t wav - |", "Kaldi pipe commands are not supported"),
    ],
    ids=["one field", "duplicate id", "pipe"],
)
def test_bad_wav_scp_line_is_named(tmp_path, line, message):
    scp = tmp_path / "wav.scp"
    scp.write_text(f"a a.wav\n{line}\n", encoding="utf-8")
    with pytest.raises(TableError, match=f"^{scp}:2: {message}"):
        read_wav_scp(scp)


@pytest.mark.parametrize("line", [
    "talk1 sox 'talk 1.sph' -t wav - |",
    "talk1 sph2pipe -f wav C:\\data\\talk1.sph |",
    "talk1\tsox x.wav -t wav - |",
], ids=["quotes", "backslashes", "tab"])
def test_pipe_command_is_quoted_as_written_and_says_what_to_do(tmp_path, line):
    scp = tmp_path / "wav.scp"
    scp.write_bytes(f"a a.wav\r\n{line}\r\n".encode())  # CRLF: no "\r" in the message either
    with pytest.raises(TableError) as error:
        read_wav_scp(scp)
    assert str(error.value) == (
        f"{scp}:2: Kaldi pipe commands are not supported: '{line}'; convert the audio to files first "
        "(run each command once into a .wav file) and list their paths"
    )


def test_malformed_line_is_quoted_as_written(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("a 'a'.wav\na C:\\a.wav\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"got 'a C:\\a\.wav'$"):
        read_wav_scp(scp)


@pytest.mark.parametrize("reader", [read_wav_scp, lambda path: list(read_table(path))], ids=["wav.scp", "table"])
def test_non_utf8_table_is_a_table_error_saying_where(tmp_path, reader):
    path = tmp_path / "wav.scp"
    path.write_bytes(b"a a.wav\nb \xe9.wav\n")
    with pytest.raises(TableError) as error:
        reader(path)
    assert str(error.value).startswith(f"{path}:2: not UTF-8: byte 0xe9 at byte offset 10 (column 3)")


def test_missing_wav_scp(tmp_path):
    with pytest.raises(TableError, match="missing file"):
        read_wav_scp(tmp_path / "wav.scp")


def test_text_is_espnet_s_two_column_reading(tmp_path):
    path = tmp_path / "text"
    path.write_text("utt1 Hallo  Welt \nutt2\n", encoding="utf-8")
    assert read_text(path) == {"utt1": "Hallo  Welt", "utt2": ""}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "missing file {path}"),
        ("a x\na y\n", "a is duplicated ({path}:2)"),
        ("a x\n\nb y\n", "{path}: a blank line"),
        (b"a \xff\n", "{path}:1: not UTF-8: byte 0xff at byte offset 2 (column 3)"),
    ],
    ids=["missing", "duplicate", "blank line", "not UTF-8"],
)
def test_bad_text_is_a_table_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "text"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(TableError) as error:
        read_text(path)
    assert str(error.value).startswith(message.format(path=path))


def test_spk2utt_lines_sort_speakers_and_their_utterances():
    pairs = [("u3", "s2"), ("u2", "s1"), ("u1", "s1")]
    assert spk2utt_lines(pairs) == ["s1 u1 u2", "s2 u3"]


def test_written_text_reads_back_in_order(tmp_path):
    """An empty text is the id alone, as ESPnet's reader takes it."""
    path = tmp_path / "text"
    write_text(path, [("b", "zwei Wörter"), ("a", ""), ("c", "x")])
    assert path.read_text(encoding="utf-8") == "b zwei Wörter\na\nc x\n"
    assert list(read_text(path).items()) == [("b", "zwei Wörter"), ("a", ""), ("c", "x")]
