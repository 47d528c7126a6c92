"""User audio for translation: files of any soundfile format read in blocks, arrays, checks.

Files are read block by block (:func:`open_audio`), so a recording longer than
memory can be translated as a stream; a pipe (``-`` for stdin, ``/dev/stdin``, bash's
``<(sox ...)``) is read whole first, as decoders seek in their input, its format given
by its header or, for headerless PCM, by the sample rate the user gives. Arrays and files alike are checked for what
would silently give a wrong translation: NaN or infinite samples, floats far
outside [-1, 1], sample rates that are not a whole number of Hz or too low for
speech (:func:`check_sample_rate`, :func:`check_samples`). Features are not
computed here: :func:`espnet2_ext.utils.fbank.compute_fbank` is the one definition of them.

Audio cut short (an interrupted download or copy) is refused, never translated in
part. libsndfile reads such a file up to where it stops, and even trims the length
a WAV or AIFF header declares to the bytes present, so the checks are ours: a
RIFF/AIFF audio chunk shorter than its header says, an Ogg stream whose last page is
incomplete or does not end the stream, fewer frames decoded than a FLAC header or an
MP3's Xing/Info/VBRI header declares (libsndfile only estimates the length of an MP3
without one, from its size, so a short read proves nothing there).
"""

from __future__ import annotations

import io
import logging
import numbers
import struct
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import soundfile as sf

from espnet2_ext.utils.native_output import captured_fd
from espnet2_ext.utils.waveform import MIN_SAMPLE_RATE, mix_to_mono

__all__ = [
    "HEADERLESS_EXTENSIONS", "MIN_SAMPLE_RATE", "STDIN", "AudioError", "OpenedAudio", "as_waveform",
    "check_sample_rate", "check_samples", "decoder_output_logged", "is_headerless", "is_stream", "open_audio",
    "peak_dbfs", "read_audio",
]

# Float audio is in [-1, 1]; a peak above this is integer PCM stored as floats, or not audio.
MAX_FLOAT_PEAK = 2.0
# Extensions of headerless audio, read as 16-bit little-endian mono PCM at a rate given by the user.
HEADERLESS_EXTENSIONS = frozenset({"raw", "pcm"})
_HEADERLESS_FORMAT = dict(format="RAW", subtype="PCM_16", channels=1, endian="LITTLE")
_READ_BLOCK_FRAMES = 1 << 20
STDIN = "-"  # the input name that reads standard input
# How a stream's first bytes name its container (a stream has no file name to say it): WAV, AIFF, Ogg, FLAC, MP3.
_HEADERS = (b"RIFF", b"FORM", b"OggS", b"fLaC", b"ID3")
_OGG_END_OF_STREAM = 0x04


class AudioError(ValueError):
    """Audio that cannot be translated; the message names the input and the reason."""


def is_headerless(path: str | Path) -> bool:
    """Whether ``path`` names headerless audio (``.raw``, ``.pcm``), which has no sample rate of its own."""
    return Path(path).suffix.lower().lstrip(".") in HEADERLESS_EXTENSIONS


def read_audio(path: str | Path, raw_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a soundfile-readable file, whole.

    See :func:`open_audio`, which reads it block by block.
    """
    audio = open_audio(path, raw_sample_rate)
    blocks = list(audio.blocks)
    return (np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)), audio.sample_rate


class OpenedAudio(NamedTuple):
    """An audio file checked and opened: its sample rate, and its mono float32 samples in blocks."""

    sample_rate: int
    blocks: Iterator[np.ndarray]


def open_audio(path: str | Path, raw_sample_rate: int | None = None) -> OpenedAudio:
    """Check and open a soundfile-readable file, to read it in blocks (bounded memory).

    Multi-channel audio is averaged to one channel. Headerless ``.raw`` and ``.pcm``
    files are read as 16-bit little-endian mono PCM at ``raw_sample_rate``, which
    only they take (others have their rate in their header: ``ValueError``); so is a
    stream (:func:`is_stream`) given ``raw_sample_rate``, and without it a stream's
    header says what it is. What a
    decoder prints itself (libmpg123's warnings) is kept off the terminal and logged
    at debug level, so that our one line is all a bad file gives.

    Raises:
        AudioError: a file that soundfile cannot open (missing, not audio) or that was
            cut short (checked before decoding where the container shows it); from the
            blocks, a file that cannot be decoded to its end, or that decodes shorter
            than its header declares: reading it raises at its end, so a cut file is
            never translated in part.
    """
    if is_stream(path):
        return _open_stream(path, raw_sample_rate)
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    headerless = is_headerless(path)
    if raw_sample_rate is not None and not headerless:
        raise ValueError(
            f"{path}: a sample rate is given only for headerless audio ({', '.join(sorted(HEADERLESS_EXTENSIONS))}); "
            "this file's header holds its own"
        )
    if headerless and raw_sample_rate is None:
        raise AudioError(
            f"{path}: headerless audio: give its sample rate (--raw_sample_rate) to read it as 16-bit mono PCM"
        )
    with path.open("rb") as raw:
        cut = _container_cut(raw)  # before decoding, which fails on some cut files with vaguer messages
    if cut is not None:
        raise AudioError(f"{path}: truncated: {cut}")
    options = dict(samplerate=raw_sample_rate, **_HEADERLESS_FORMAT) if headerless else {}
    try:
        with decoder_output_logged(path):
            stream = sf.SoundFile(str(path), **options)
    except (sf.SoundFileError, RuntimeError, OSError) as err:  # libsndfile reports decode errors as RuntimeError
        raise AudioError(f"{path}: not readable as audio: {err}") from None
    return OpenedAudio(int(stream.samplerate), _blocks(path, stream, lambda: path.open("rb")))


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` is audio that can be read only once, front to back: ``-`` (stdin), or a
    pipe, FIFO or character device (``/dev/stdin``, bash's ``<(sox ...)``)."""
    if str(path) == STDIN:
        return True
    path = Path(path)
    return path.exists() and not path.is_file() and not path.is_dir()


def _open_stream(path: str | Path, raw_sample_rate: int | None) -> OpenedAudio:
    """A stream, read whole into memory (decoders seek in their input; a pipe cannot). It has
    no file name whose extension would say what it is: one that starts with a WAV, AIFF,
    Ogg, FLAC or ID3 header is read by it; any other is 16-bit little-endian mono PCM at
    ``raw_sample_rate`` when that is given, else whatever libsndfile recognises."""
    name = Path("stdin" if str(path) == STDIN else path)
    try:
        data = sys.stdin.buffer.read() if str(path) == STDIN else Path(path).read_bytes()
    except OSError as err:
        raise AudioError(f"{name}: cannot be read: {err.strerror or err}") from None
    if not data:
        raise AudioError(f"{name}: empty stream (0 bytes)")
    headerless = raw_sample_rate is not None and not data.startswith(_HEADERS)
    cut = _container_cut(io.BytesIO(data))
    if cut is not None:
        raise AudioError(f"{name}: truncated: {cut}")
    options = dict(samplerate=raw_sample_rate, **_HEADERLESS_FORMAT) if headerless else {}
    try:
        with decoder_output_logged(name):
            stream = sf.SoundFile(io.BytesIO(data), **options)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        hint = "" if raw_sample_rate is not None else " (headerless PCM: give its sample rate, --raw_sample_rate)"
        raise AudioError(f"{name}: not readable as audio: {err}{hint}") from None
    return OpenedAudio(int(stream.samplerate), _blocks(name, stream, lambda: io.BytesIO(data)))


def _blocks(path: Path, stream: sf.SoundFile, reopen: Callable[[], BinaryIO]) -> Iterator[np.ndarray]:
    """Mono blocks of an open file, then the checks that it was read to its declared end
    (``reopen``: its bytes from the start, for the header that declares it)."""
    declared, sample_rate, fmt, channels = stream.frames, stream.samplerate, stream.format, stream.channels
    done, error = 0, None
    with stream:
        while True:
            try:
                with decoder_output_logged(path):
                    block = stream.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as err:
                error = err
                break
            if len(block) == 0:
                break
            done += len(block)
            yield mix_to_mono(block if channels > 1 else block[:, 0]).astype(np.float32, copy=False)
            if len(block) < _READ_BLOCK_FRAMES:
                break
    if done < declared and _declares_exact_length(reopen, fmt):
        raise AudioError(
            f"{path}: truncated: its header declares {declared / sample_rate:.2f} s of audio, "
            f"only {done / sample_rate:.2f} s could be decoded"
        )
    if error is not None:
        raise AudioError(f"{path}: not readable as audio: {error}")


@contextmanager
def decoder_output_logged(path: Path) -> Iterator[None]:
    """What a decoder prints to stderr itself, logged at debug level instead of shown."""
    with captured_fd(2) as printed:
        yield
    if printed.text.strip():
        logging.debug("%s: the decoder printed: %s", path, " | ".join(printed.text.split("\n")).strip(" |"))


def _declares_exact_length(reopen: Callable[[], BinaryIO], fmt: str) -> bool:
    """Whether libsndfile's frame count is the encoder's, so that fewer frames decoded means a cut file."""
    if fmt == "FLAC":  # STREAMINFO's total samples (0: unknown)
        return True
    if fmt == "MP3":  # LAME's Xing/Info or Fraunhofer's VBRI header, in the first frame
        with reopen() as stream:
            id3 = stream.read(10)
            start = 0
            if len(id3) == 10 and id3[:3] == b"ID3":  # ID3v2 tag: 10-byte header, syncsafe size, optional footer
                start = 10 + sum((byte & 0x7F) << shift for byte, shift in zip(id3[6:10], (21, 14, 7, 0)))
                start += 10 if id3[5] & 0x10 else 0
            stream.seek(start)
            first = stream.read(64)
        return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))
    return False  # libsndfile counts what is there: see _container_cut


def _container_cut(stream: BinaryIO) -> str | None:
    """How a WAV, AIFF or Ogg file (open at its start) shows it was cut short, or None."""
    head = stream.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _chunk_cut(stream, b"data", "<")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _chunk_cut(stream, b"SSND", ">")
    if head[:4] == b"OggS":
        return _ogg_cut(stream)
    return None


def _size(stream: BinaryIO) -> int:
    return stream.seek(0, io.SEEK_END)


def _chunk_cut(stream: BinaryIO, audio_chunk: bytes, endian: str) -> str | None:
    """The audio chunk of a RIFF (little-endian) or AIFF (big-endian) file holds fewer bytes than its header says.

    Sizes 0 and 0xFFFFFFFF mean unknown (written by a program that could not seek back).
    """
    file_size = _size(stream)
    position = 12
    while True:
        stream.seek(position)
        header = stream.read(8)
        if len(header) < 8:  # no audio chunk: libsndfile says what is wrong
            return None
        (size,) = struct.unpack(endian + "I", header[4:])
        if header[:4] == audio_chunk:
            present = file_size - position - 8
            if size in (0, 0xFFFFFFFF) or size <= present:
                return None
            return f"its header declares {size} bytes of audio, the file holds {present} ({present / size:.0%})"
        position += 8 + size + (size & 1)  # chunks are padded to even sizes


def _ogg_cut(stream: BinaryIO) -> str | None:
    """Walk an Ogg file's pages: the last one must be whole and end the stream."""
    file_size = _size(stream)
    position, flags = 0, 0
    while position < file_size:
        stream.seek(position)
        header = stream.read(27)
        if len(header) < 27:
            return "its last Ogg page is incomplete"
        if header[:4] != b"OggS":  # no page where one should start: not plain Ogg, no verdict
            return None
        lacing = stream.read(header[26])
        position += 27 + header[26] + sum(lacing)
        if len(lacing) < header[26] or position > file_size:
            return "its last Ogg page is incomplete"
        flags = header[5]
    return None if flags & _OGG_END_OF_STREAM else "the Ogg stream stops before its last page"


def as_waveform(audio: Any, name: str) -> np.ndarray:
    """Mono float32 samples from an array-like: (samples,), (samples, channels) as
    soundfile gives, or (channels, samples) as torchaudio gives (the longer axis is time).

    Signed integer samples are scaled to [-1, 1); unsigned ones (8-bit WAV's convention)
    are centred on their midpoint first, so uint8 128 is silence. Encoded bytes are
    refused: they are a file's contents, not samples.
    """
    if isinstance(audio, (bytes, bytearray, memoryview)):
        raise AudioError(
            f"{name}: got {len(audio)} bytes, not samples: pass the file's path, or decode it first "
            "(samples, rate = soundfile.read(io.BytesIO(data)))"
        )
    if isinstance(audio, (str, Path)):
        raise AudioError(f"{name}: got a path where samples were expected")
    waveform = np.asarray(audio)
    if waveform.ndim == 2 and waveform.shape[0] < waveform.shape[1]:
        waveform = waveform.T
    if waveform.ndim not in (1, 2):
        raise AudioError(f"{name}: expected a waveform (samples,) or (samples, channels), got shape {waveform.shape}")
    if np.issubdtype(waveform.dtype, np.unsignedinteger):
        middle = float(np.iinfo(waveform.dtype).max // 2 + 1)
        waveform = (waveform.astype(np.float64) - middle) / middle
    elif np.issubdtype(waveform.dtype, np.signedinteger):
        waveform = waveform / float(np.iinfo(waveform.dtype).max + 1)
    elif not np.issubdtype(waveform.dtype, np.floating):
        raise AudioError(f"{name}: expected float or integer samples, got dtype {waveform.dtype}")
    return mix_to_mono(waveform).astype(np.float32, copy=False)


def check_sample_rate(sample_rate: Any, name: str) -> int:
    """The sample rate as an int, or :class:`AudioError`: not a whole number of Hz, or below 8 kHz."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise AudioError(f"{name}: the sample rate must be a number of Hz, got {sample_rate!r}")
    if not np.isfinite(float(sample_rate)) or float(sample_rate) != int(sample_rate):
        raise AudioError(f"{name}: the sample rate must be a whole number of Hz, got {sample_rate!r}")
    if int(sample_rate) < MIN_SAMPLE_RATE:
        raise AudioError(
            f"{name}: a sample rate of {int(sample_rate)} Hz is below {MIN_SAMPLE_RATE} Hz, "
            "too low for speech (is it in Hz?)"
        )
    return int(sample_rate)


def check_samples(samples: np.ndarray, name: str, sample_rate: int, offset: int = 0) -> None:
    """:class:`AudioError` for samples that are NaN or infinite, or float audio far outside [-1, 1].

    ``offset`` is where ``samples`` start in the input, so the message can say when.
    """
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(np.count_nonzero(~finite))
        first = (offset + int(np.argmin(finite))) / sample_rate
        raise AudioError(f"{name}: {bad} samples are NaN or infinite (the first at {first:.3f} s): not audio")
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise AudioError(
            f"{name}: samples reach {peak:g}, far outside [-1, 1]: float audio must be scaled to [-1, 1] "
            "(integer PCM stored as floats: divide by 32768)"
        )


def peak_dbfs(waveform: np.ndarray) -> float:
    """Peak level in dB relative to full scale; ``-inf`` for digital silence."""
    peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")
