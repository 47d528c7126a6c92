"""What ``translate`` is given: audio files, directories of them and Kaldi ``wav.scp`` files,
and translating them in batches that read their audio only when their turn comes."""

import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Union

import soundfile as sf
from tqdm import tqdm

from espnet2_ext.fileio.kaldi_table import TableError, read_wav_scp

# soundfile's formats, except headerless RAW, which needs its parameters given.
AUDIO_EXTENSIONS = frozenset({fmt.lower() for fmt in sf.available_formats()} - {"raw"} | {"aif", "opus", "oga"})
PROGRESS_MIN_INPUTS = 5


class InputListError(Exception):
    """An input list that cannot be used at all (an audio-less directory, a bad ``wav.scp``)."""


class Input(NamedTuple):
    """One thing to translate: its output id and its audio file."""

    key: str
    path: str


def expand_inputs(arguments: Sequence[str]) -> List[Input]:
    """Files as given, directories' audio files (sorted), ``wav.scp`` entries in file order."""
    inputs: List[Input] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                str(f) for f in path.rglob("*") if f.is_file() and f.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS
            )
            if not found:
                raise InputListError(
                    f"directory {path} holds no audio files (extensions: {', '.join(sorted(AUDIO_EXTENSIONS))})"
                )
            inputs += [Input(f, f) for f in found]
        elif path.suffix == ".scp":
            try:
                inputs += [Input(key, wav) for key, wav in read_wav_scp(path).items()]
            except TableError as err:
                raise InputListError(str(err)) from None
        else:  # a missing file is that input's error, not a reason to stop the others
            inputs.append(Input(argument, argument))
    return inputs


def duration(path: str) -> float:
    """Seconds of audio from the file header; 0 where soundfile cannot open it (the error comes on reading)."""
    try:
        return sf.info(path).duration
    except (sf.SoundFileError, RuntimeError, OSError):
        return 0.0


def translate_inputs(translator, inputs: Sequence[Input], batch_size: int) -> Dict[int, Union[object, str]]:
    """Each input's :class:`~espnet2_ext.inference.TranslationResult`, or the message saying
    why it could not be translated, by input index.

    Inputs go longest first, so a batch holds similar lengths and little padding;
    a batch's audio is read only when its turn comes, so memory stays bounded.
    """
    from espnet2_ext.inference.audio import AudioError

    order = sorted(range(len(inputs)), key=lambda i: -duration(inputs[i].path))
    results: Dict[int, Union[object, str]] = {}
    with tqdm(total=len(inputs), unit="file", disable=len(inputs) <= PROGRESS_MIN_INPUTS, file=sys.stderr) as bar:
        for first in range(0, len(order), batch_size):
            prepared = {}
            for index in order[first : first + batch_size]:
                try:
                    prepared[index] = translator.prepare(inputs[index].path, name=inputs[index].key)
                except AudioError as err:
                    results[index] = str(err)
            translated = translator.translate_prepared(list(prepared.values()), batch_size)
            results.update(zip(prepared, translated))
            bar.update(len(order[first : first + batch_size]))
    return results
