"""What ``translate`` is given: audio files, directories of them and Kaldi ``wav.scp`` files,
and translating them in batches that read their audio only when their turn comes.

Two kinds of problem, two treatments. A path named on the command line or in a
``wav.scp`` that does not exist, a directory without audio, an empty or malformed
``wav.scp``: the list itself is wrong, and :func:`expand_inputs` refuses it before
any work (:class:`InputListError`). A file that exists but cannot be translated
(not audio, truncated, empty, too short): that input fails alone, when it is read,
and the others are still translated (:func:`translate_inputs`).

This module does not import torch, so that a wrong input list is reported at once.
"""

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import soundfile as sf
from tqdm import tqdm

from espnet2_ext.fileio.kaldi_table import TableError, read_wav_scp
from espnet2_ext.inference.audio import (
    HEADERLESS_EXTENSIONS,
    STDIN,
    decoder_output_logged,
    is_headerless,
    is_stream,
)
from espnet2_ext.utils.progress import seconds_bar

if TYPE_CHECKING:
    from espnet2_ext.inference.speech2translation import Speech2Translation, TranslationResult
    from espnet2_ext.inference.speech_input import SpeechInput

# soundfile's formats, except headerless RAW, which needs its sample rate given.
AUDIO_EXTENSIONS = frozenset(
    {fmt.lower() for fmt in sf.available_formats()} - HEADERLESS_EXTENSIONS | {"aif", "opus", "oga"}
)
PROGRESS_MIN_INPUTS = 5
PROGRESS_MIN_SECONDS = 60.0
LISTED_AT_MOST = 5


class InputListError(Exception):
    """Inputs that cannot be used at all (missing paths, an audio-less directory, a bad ``wav.scp``)."""


class Input(NamedTuple):
    """One thing to translate: its output id and its audio file."""

    key: str
    path: str


def expand_inputs(arguments: Sequence[str], headerless: bool = False) -> list[Input]:
    """Files as given, directories' audio files (sorted), ``wav.scp`` entries in file order.

    Every path named must exist, and every directory and ``wav.scp`` must hold audio;
    otherwise :class:`InputListError` names all that is missing. With ``headerless``
    (a sample rate for them is known) directories' ``.raw`` and ``.pcm`` files are audio too.
    ``-`` is standard input, which can be read once (so named once); pipes, FIFOs and
    ``/dev/stdin`` are taken as given (:func:`~espnet2_ext.inference.audio.is_stream`).
    """
    if arguments.count(STDIN) > 1:
        raise InputListError(f"'{STDIN}' (standard input) is given {arguments.count(STDIN)} times; it can be read once")
    missing = [argument for argument in arguments if argument != STDIN and not Path(argument).exists()]
    if missing:
        raise InputListError(
            f"{missing[0]}: no such file or directory" if len(missing) == 1
            else f"{len(missing)} inputs do not exist: {_listing(missing)}"
        )
    extensions = AUDIO_EXTENSIONS | HEADERLESS_EXTENSIONS if headerless else AUDIO_EXTENSIONS
    inputs: list[Input] = []
    for argument in arguments:
        path = Path(argument)
        if is_stream(argument):
            inputs.append(Input(argument, argument))
        elif path.is_dir():
            found = sorted(
                str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower().lstrip(".") in extensions
            )
            if not found:
                raise InputListError(
                    f"directory {path} holds no audio files (extensions: {', '.join(sorted(extensions))})"
                )
            inputs += [Input(f, f) for f in found]
        elif path.suffix == ".scp":
            inputs += _wav_scp_inputs(path)
        else:
            inputs.append(Input(argument, argument))
    return inputs


def output_names(inputs: Sequence[Input], suffix: str) -> list[str]:
    """One file name per input for its own output (``translate --output_dir``): the audio
    file's name without its extension, or the ``wav.scp`` key, then ``suffix``.

    Two inputs of the same name, or a key that is no file name (``/``, ``.``, ``..``),
    are an :class:`InputListError` naming them.
    """
    names: dict[str, str] = {}
    for item in inputs:
        name = Path(item.path).stem if item.key == item.path else item.key
        if "/" in name or name in ("", ".", ".."):
            raise InputListError(f"{item.key!r} cannot name a file")
        file_name = name + suffix
        if file_name in names:
            raise InputListError(f"{names[file_name]} and {item.key} would both write {file_name}")
        names[file_name] = item.key
    return list(names)


def _wav_scp_inputs(path: Path) -> list[Input]:
    try:
        wavs = read_wav_scp(path)
    except TableError as err:  # its non-UTF-8 message says where, too
        raise InputListError(str(err)) from None
    if not wavs:
        raise InputListError(f"{path} lists no audio files")
    missing = [f"{key} {wav}" for key, wav in wavs.items() if not Path(wav).exists()]
    if missing:
        raise InputListError(
            f"{path}: {len(missing)} of {len(wavs)} listed audio files do not exist: {_listing(missing)}"
        )
    return [Input(key, wav) for key, wav in wavs.items()]


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:LISTED_AT_MOST])
    return shown if len(items) <= LISTED_AT_MOST else f"{shown}, ... ({len(items) - LISTED_AT_MOST} more)"


def input_audio(item: Input, raw_sample_rate: int | None = None) -> "SpeechInput":
    """The audio of one listed input, to be read when its turn comes: a headerless file or a
    stream at ``raw_sample_rate`` (the user's, for them), any other file at its header's rate."""
    from espnet2_ext.inference.speech_input import file_input  # torch: not needed to check the list

    takes_rate = is_headerless(item.path) or is_stream(item.path)
    return file_input(item.path, item.key, raw_sample_rate if takes_rate else None)


def duration(path: str, raw_sample_rate: int | None = None) -> float:
    """Seconds of audio from the file's header (or size, for headerless audio); 0 where that
    says nothing (the error, if any, comes on reading), as for a stream, which cannot be
    looked at before it is read."""
    if is_stream(path):
        return 0.0
    if is_headerless(path):
        return os.path.getsize(path) / 2 / raw_sample_rate if raw_sample_rate else 0.0
    try:
        with decoder_output_logged(Path(path)):  # libmpg123's warnings about a damaged MP3
            return sf.info(path).duration
    except (sf.SoundFileError, RuntimeError, OSError):
        return 0.0


def translate_inputs(
    translator: "Speech2Translation", inputs: Sequence[Input], batch_size: int, raw_sample_rate: int | None = None
) -> Iterator["TranslationResult"]:
    """Each input's :class:`~espnet2_ext.inference.TranslationResult`, in input order, as soon
    as it is done; one that could not be translated has its ``error`` set.

    Files are read one after the other in blocks (a long recording is segmented as
    a stream); segments of similar lengths are translated together. Headerless
    files are read at ``raw_sample_rate``, and fail without one. On a terminal, a
    progress bar counts the seconds of audio read, once there are more than a few
    files or a minute of audio (its total from the files' headers).
    """
    total = sum(duration(item.path, raw_sample_rate) for item in inputs)
    small = len(inputs) <= PROGRESS_MIN_INPUTS and total < PROGRESS_MIN_SECONDS
    with seconds_bar(total, disable=small) as bar:
        items = (_counted(input_audio(item, raw_sample_rate), bar) for item in inputs)
        yield from translator.translate_inputs(items, batch_size)


def _counted(item: "SpeechInput", bar: tqdm) -> "SpeechInput":
    """``item``, its blocks counted on ``bar`` in seconds as they are read."""
    from espnet2_ext.inference.speech_input import SpeechInput

    def opened() -> tuple[int, Iterator]:
        rate, blocks = item.open()

        def counting() -> Iterator:
            for block in blocks:
                bar.update(len(block) / rate)
                yield block

        return rate, counting()

    return SpeechInput(item.name, opened)
