"""Kaldi tables (``wav.scp``, ``segments``, ``text``, ``utt2spk``, ``spk2utt``): one reader
and one writer per format, with errors that name the file and line."""

from collections.abc import Iterable, Iterator
from pathlib import Path

from espnet2.fileio.read_text import read_2columns_text

from espnet2_ext.fileio.atomic import write_lines_atomically
from espnet2_ext.fileio.text_position import not_utf8_file


class TableError(ValueError):
    """A missing or malformed table; the message names the file and line."""


def read_table(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a Kaldi table, skipping blank lines."""
    for number, line in _lines(path):
        fields = line.split()
        if fields:
            yield number, fields


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; a byte that is not UTF-8 is a :class:`TableError` saying where."""
    try:
        with path.open(encoding="utf-8") as stream:
            yield from enumerate(stream, 1)
    except UnicodeDecodeError:
        raise TableError(not_utf8_file(path)) from None


def read_text(path: Path) -> dict[str, str]:
    """``<id> <text>`` lines as id -> text, in file order; an id alone has the empty text.

    ESPnet's ``read_2columns_text``, with its failures turned into :class:`TableError`.
    """
    try:
        return read_2columns_text(path)
    except FileNotFoundError:
        raise TableError(f"missing file {path}") from None
    except UnicodeDecodeError:
        raise TableError(not_utf8_file(path)) from None
    except RuntimeError as err:  # ESPnet's "<id> is duplicated (<path>:<line>)"
        raise TableError(str(err)) from None
    except ValueError:  # an empty line has no id to unpack
        raise TableError(f"{path}: a blank line; every line must be '<id> <text>'") from None


def write_text(path: Path, texts: Iterable[tuple[str, str]]) -> None:
    """``<id> <text>`` lines (the id alone for an empty text) that :func:`read_text` reads
    back, written atomically; a text must not hold a newline."""
    write_lines_atomically(path, (f"{utt_id} {text}" if text else utt_id for utt_id, text in texts))


def read_wav_scp(path: Path) -> dict[str, str]:
    """Recording id -> wav path (the rest of the line, so paths may contain spaces).

    Kaldi pipe commands (``<id> sox x.sph -t wav - |``) are refused: every consumer reads
    the files with soundfile. A refused line is quoted as written (a ``repr`` would show
    the user escapes and a ``\\n`` they never typed); it holds no newline, so the
    message stays one line.
    """
    if not path.is_file():
        raise TableError(f"missing file {path}")
    wavs: dict[str, str] = {}
    for number, line in _lines(path):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            continue
        written = line.rstrip("\n")  # universal newlines: no "\r" either
        if len(fields) != 2 or fields[0] in wavs:
            raise TableError(f"{path}:{number}: expected '<recording-id> <wav path>' with a new id, got '{written}'")
        if fields[1].endswith("|"):
            raise TableError(
                f"{path}:{number}: Kaldi pipe commands are not supported: '{written}'; "
                "convert the audio to files first (run each command once into a .wav file) and list their paths"
            )
        wavs[fields[0]] = fields[1]
    return wavs


def filter_lines(path: Path, keep: set[str]) -> list[str]:
    """Lines of a Kaldi table whose first field is in ``keep``, in file order, without newlines."""
    lines = []
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            fields = line.split(maxsplit=1)
            if fields and fields[0] in keep:
                lines.append(line.rstrip("\n"))
    return lines


def spk2utt_lines(utt2spk: Iterable[tuple[str, str]]) -> list[str]:
    """``<speaker> <utt> <utt> ...`` lines from (utterance, speaker) pairs, both sorted by id,
    as Kaldi's ``utt2spk_to_spk2utt.pl`` and ``validate_data_dir.sh`` expect."""
    by_speaker: dict[str, list[str]] = {}
    for utt_id, speaker in utt2spk:
        by_speaker.setdefault(speaker, []).append(utt_id)
    return [f"{speaker} {' '.join(sorted(utts))}" for speaker, utts in sorted(by_speaker.items())]
