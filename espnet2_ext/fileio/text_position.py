"""Saying where a file stops being UTF-8: its line, byte offset and column.

A text stream's ``UnicodeDecodeError`` counts bytes from the chunk it was
decoding, not from the file's start, so the place is found again from the bytes.
"""

from pathlib import Path


def line_and_column(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of byte ``offset`` of ``data``."""
    return data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)


def not_utf8(name: str | Path, data: bytes) -> str:
    """``<name>:<line>: not UTF-8: byte 0x.. at byte offset N (column C): <reason>`` for the
    first byte of ``data`` that does not decode (``<name>: not UTF-8`` if none)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line, column = line_and_column(data, err.start)
        return (
            f"{name}:{line}: not UTF-8: byte 0x{data[err.start]:02x} at byte offset {err.start} "
            f"(column {column}): {err.reason}"
        )
    return f"{name}: not UTF-8"


def not_utf8_file(path: Path) -> str:
    """:func:`not_utf8` of a file's bytes."""
    return not_utf8(path, path.read_bytes())
