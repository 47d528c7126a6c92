"""Where a file stops being UTF-8, counted from the file's start."""

from espnet2_ext.fileio.text_position import line_and_column, not_utf8, not_utf8_file


def test_line_and_column_are_one_based_and_count_bytes():
    data = b"ab\ncd\xc3\xa9e\n"
    assert line_and_column(data, 0) == (1, 1)
    assert line_and_column(data, 4) == (2, 2)
    assert line_and_column(data, 7) == (2, 5)


def test_the_first_bad_byte_is_placed_in_the_whole_file(tmp_path):
    good = "caf\u00e9 ok\n" * 2000  # far past a text stream's first chunk
    path = tmp_path / "list.txt"
    path.write_bytes(good.encode() + b"abc\xff\n")
    offset = len(good.encode()) + 3
    assert not_utf8_file(path) == (
        f"{path}:2001: not UTF-8: byte 0xff at byte offset {offset} (column 4): invalid start byte"
    )
    assert not_utf8("x", b"fine") == "x: not UTF-8"
