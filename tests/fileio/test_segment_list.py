"""Streaming MuST-C segment lists: one entry at a time, resumable at an offset, errors at file:line."""

from pathlib import Path

import pytest

from espnet2_ext.fileio.segment_list import Position, SegmentListError, read_entries, read_lines

ENTRY = "- {{duration: {d}, offset: {o}, rW: 3, uW: 0, speaker_id: spk.1, wav: ted_1.wav}}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_one_line_entries_with_their_positions(tmp_path: Path):
    lines = [ENTRY.format(d=1.5, o=i) for i in range(3)]
    path = write(tmp_path / "train.yaml", "".join(lines))
    entries = list(read_entries(path))
    assert [e.value for e in entries] == [
        {"duration": 1.5, "offset": i, "rW": 3, "uW": 0, "speaker_id": "spk.1", "wav": "ted_1.wav"} for i in range(3)
    ]
    offsets = [sum(len(line.encode()) for line in lines[:i]) for i in range(3)]
    assert [tuple(e.position) for e in entries] == [(offsets[i], i + 1, i + 1) for i in range(3)]


def test_reading_resumes_at_a_position(tmp_path: Path):
    path = write(tmp_path / "train.yaml", "".join(ENTRY.format(d=1.0, o=i) for i in range(5)))
    everything = list(read_entries(path))
    assert list(read_entries(path, everything[3].position)) == everything[3:]


def test_multi_line_entries_comments_and_markers(tmp_path: Path):
    path = write(tmp_path / "train.yaml", "---\n# talks\n- {duration: 1.0,\n   offset: 2.0, wav: a.wav}\n\n"
                                          "- {duration: 3.0, offset: 4.0, wav: b.wav}  # last\n...\n")
    entries = list(read_entries(path))
    assert [e.value["offset"] for e in entries] == [2.0, 4.0]
    assert [(e.position.line, e.position.number) for e in entries] == [(3, 1), (6, 2)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ENTRY.format(d=1, o=0) * 2 + "- {duration: 1.0, offset: [0.5, wav: a.wav}\n", r":3:43: not valid YAML"),
        (ENTRY.format(d=1, o=0) + "- {duration: 1.0,\n   offset: [0.5, wav: a.wav}\n", r":3:28: not valid YAML"),
        ("duration: 1.0\n", r":1: expected a YAML list of segments"),
        ("[{duration: 1.0, offset: 0, wav: a.wav}]\n", r":1: expected a YAML list of segments"),
        (ENTRY.format(d=1, o=0) + "-5\n", r":2: expected one list item"),
    ],
    ids=["malformed entry", "malformed continuation line", "mapping", "flow list", "no item"],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str):
    path = write(tmp_path / "train.yaml", text)
    with pytest.raises(SegmentListError, match=f"^{path}{message}"):
        list(read_entries(path))


def test_lines_end_at_newlines_only_and_resume(tmp_path: Path):
    path = write(tmp_path / "train.en", "one\u2028still one\r\ntwo\n\nfour")
    lines = list(read_lines(path))
    assert [text for _, text in lines] == ["one\u2028still one\r", "two", "", "four"]
    assert [position.line for position, _ in lines] == [1, 2, 3, 4]
    assert list(read_lines(path, lines[1][0])) == lines[1:]


def test_lines_not_utf8_name_file_line_and_byte(tmp_path: Path):
    path = tmp_path / "train.de"
    path.write_bytes(b"gut\nschl\xe9cht\n")
    with pytest.raises(SegmentListError, match=f"^{path}:2: not UTF-8 .* at byte 8"):
        list(read_lines(path))


def test_resumed_lines_keep_the_caller_s_numbering(tmp_path: Path):
    path = write(tmp_path / "train.en", "a\nb\nc\n")
    assert list(read_lines(path, Position(2, 2, 2))) == [(Position(2, 2, 2), "b"), (Position(4, 3, 3), "c")]
