"""Streaming readers of MuST-C's segment lists and their parallel text files.

``<split>.yaml`` is a YAML block list with one flow mapping per line::

    - {duration: 3.500000, offset: 16.310000, rW: 9, uW: 0, speaker_id: spk.1, wav: ted_1.wav}

Loading the whole document builds every node before returning the first entry:
1.6 GB and most of stage 1's time for MuST-C en-de, ten times that for a corpus ten
times larger. Here each entry is parsed on its own with yaml's C loader (about 3x
faster per entry, and one entry in memory at a time). An entry starts at a line
beginning with ``-``; indented lines that follow belong to it, so an entry written
over several lines still parses. Both readers report byte offsets, so a caller can
come back to an entry or a line later with :func:`read_entries` / :func:`read_lines`
started at that offset, without holding the corpus in memory.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import yaml

from espnet2_ext.fileio.yaml_file import yaml_problem


class SegmentListError(ValueError):
    """A malformed segment list or text file; the message names the file and line."""


class Position(NamedTuple):
    """Where an entry or line starts: byte ``offset``, 1-based ``line`` and item ``number``."""

    offset: int = 0
    line: int = 1
    number: int = 1


class Entry(NamedTuple):
    """One parsed (unchecked) list item and where it starts."""

    position: Position
    value: object


def read_lines(path: Path, start: Position = Position()) -> Iterator[tuple[Position, str]]:
    """Each ``\\n``-terminated line of a UTF-8 file from ``start`` on, without its newline.

    Only ``\\n`` ends a line (a U+2028 inside a sentence does not), as MuST-C's
    line i <-> segment i correspondence needs; here ``number`` equals ``line``.
    """
    with path.open("rb") as stream:
        stream.seek(start.offset)
        offset, line = start.offset, start.line
        for raw in stream:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                where = f"{path}:{line}"
                raise SegmentListError(f"{where}: not UTF-8 ({err.reason} at byte {offset + err.start})") from None
            yield Position(offset, line, line), text.rstrip("\n")
            offset += len(raw)
            line += 1


def read_entries(path: Path, start: Position = Position()) -> Iterator[Entry]:
    """The items of a YAML block list from ``start`` on, parsed one at a time.

    Blank lines, comments and document markers between items are skipped; anything
    else that does not start an item at column 0 (a mapping, a flow list) is an error.
    """
    number = start.number
    for position, text in _item_texts(path, start):
        yield Entry(Position(position.offset, position.line, number), _parse_item(path, position.line, text))
        number += 1


def _item_texts(path: Path, start: Position) -> Iterator[tuple[Position, str]]:
    """(where it starts, text) of each list item: its ``-`` line plus indented continuation lines."""
    first: Position | None = None
    parts: list[str] = []
    for position, text in read_lines(path, start):
        stripped = text.strip()
        if text.startswith("-") and stripped not in ("---", "..."):
            if first is not None:
                yield first, "\n".join(parts)
            first, parts = position, [text]
        elif first is not None and text[:1] in (" ", "\t", "") and not stripped.startswith("#"):
            parts.append(text)
        elif stripped and not stripped.startswith("#") and stripped not in ("---", "..."):
            expected = "a YAML list of segments, one '- {duration: ..., offset: ..., wav: ...}' per line"
            raise SegmentListError(f"{path}:{position.line}: expected {expected}, got {text!r}")
    if first is not None:
        yield first, "\n".join(parts)


def _parse_item(path: Path, line: int, text: str) -> object:
    """The value of the one-item list ``text``, with errors placed at their line in ``path``."""
    try:
        items = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as err:
        raise SegmentListError(yaml_problem(path, text, err, first_line=line)) from None
    if not isinstance(items, list) or len(items) != 1:
        raise SegmentListError(f"{path}:{line}: expected one list item '- {{...}}', got {text!r}")
    return items[0]


# --------------------------------------------------------------------------- checked entries

SEGMENT_KEYS = ("duration", "offset", "wav")


class SegmentDefinition(NamedTuple):
    """One reference sentence's place in its recording: the wav's file name, its start and length (s)."""

    wav: str
    offset: float
    duration: float


def segment_definition(entry: object, where: str) -> SegmentDefinition:
    """``entry`` checked to be ``{duration: >0, offset: >=0, wav: name, ...}``; other keys are ignored.

    Raises:
        SegmentListError: naming ``where`` and what is wrong.
    """
    if not isinstance(entry, dict):
        expected = "a mapping like {duration: 1.5, offset: 0.0, wav: ted_1.wav}"
        raise SegmentListError(f"{where}: expected {expected}, got {entry!r}")
    missing = [key for key in SEGMENT_KEYS if key not in entry]
    if missing:
        raise SegmentListError(f"{where}: missing key(s) {', '.join(missing)} in {entry!r}")
    for key in ("duration", "offset"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SegmentListError(f"{where}: {key} must be a number of seconds, got {value!r}")
    if entry["duration"] <= 0 or entry["offset"] < 0:
        raise SegmentListError(f"{where}: expected duration > 0 and offset >= 0, got {entry!r}")
    if not isinstance(entry["wav"], str) or not entry["wav"]:
        raise SegmentListError(f"{where}: wav must be a file name, got {entry['wav']!r}")
    return SegmentDefinition(entry["wav"], float(entry["offset"]), float(entry["duration"]))


def read_segment_definitions(path: Path) -> list[SegmentDefinition]:
    """Every entry of a segment list, checked (:func:`segment_definition`)."""
    if not path.is_file():
        raise SegmentListError(f"no such file {path}")
    return [segment_definition(entry.value, f"{path}: entry {entry.position.number}") for entry in read_entries(path)]


def segment_list_text(definitions: list[SegmentDefinition]) -> str:
    """A segment list in MuST-C's layout, one flow mapping per line."""
    return "".join(
        f"- {{duration: {d.duration:.6f}, offset: {d.offset:.6f}, wav: {yaml.safe_dump(d.wav).splitlines()[0]}}}\n"
        for d in definitions
    )
