"""Reading Kaldi tables (``wav.scp``, ``segments``) with errors that name the file and line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class TableError(ValueError):
    """A missing or malformed table; the message names the file and line."""


def read_table(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a Kaldi table, skipping blank lines."""
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            fields = line.split()
            if fields:
                yield number, fields


def read_wav_scp(path: Path) -> dict[str, str]:
    """Recording id -> wav path (the rest of the line, so paths may contain spaces).

    Kaldi pipes (``cmd |``) are refused: every consumer reads the files with soundfile.
    """
    if not path.is_file():
        raise TableError(f"missing file {path}")
    wavs: dict[str, str] = {}
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2 or fields[0] in wavs:
                raise TableError(f"{path}:{number}: expected '<recording-id> <wav path>' with a new id, got {line!r}")
            if fields[1].endswith("|"):
                raise TableError(f"{path}:{number}: Kaldi pipes are not supported, give a file path: {line!r}")
            wavs[fields[0]] = fields[1]
    return wavs
