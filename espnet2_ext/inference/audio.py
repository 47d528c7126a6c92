"""Reading user audio for translation: any soundfile format, checked, mono, cut at pauses.

Features are not computed here: :func:`espnet2_ext.utils.fbank.compute_fbank` is the
one definition of them and resamples to the model's rate.

Audio cut short (an interrupted download or copy) is refused, never translated in
part. libsndfile reads such a file up to where it stops, and even trims the length
a WAV or AIFF header declares to the bytes present, so the checks are ours: a
RIFF/AIFF audio chunk shorter than its header says, an Ogg stream whose last page is
incomplete or does not end the stream, fewer frames decoded than a FLAC header or an
MP3's Xing/Info/VBRI header declares (libsndfile only estimates the length of an MP3
without one, from its size, so a short read proves nothing there).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from espnet2_ext.utils.fbank import mix_to_mono

__all__ = [
    "HEADERLESS_EXTENSIONS", "AudioError", "as_waveform", "is_headerless", "peak_dbfs", "read_audio", "split_at_pauses",
]

PAUSE_HOP_SECONDS = 0.01
# Extensions of headerless audio, read as 16-bit little-endian mono PCM at a rate given by the user.
HEADERLESS_EXTENSIONS = frozenset({"raw", "pcm"})
_HEADERLESS_FORMAT = dict(format="RAW", subtype="PCM_16", channels=1, endian="LITTLE")
_READ_BLOCK_FRAMES = 1 << 20
_OGG_END_OF_STREAM = 0x04


class AudioError(ValueError):
    """Audio that cannot be translated; the message names the input and the reason."""


def is_headerless(path: str | Path) -> bool:
    """Whether ``path`` names headerless audio (``.raw``, ``.pcm``), which has no sample rate of its own."""
    return Path(path).suffix.lower().lstrip(".") in HEADERLESS_EXTENSIONS


def read_audio(path: str | Path, raw_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a soundfile-readable file.

    Multi-channel audio is averaged to one channel. Headerless ``.raw`` and ``.pcm``
    files are read as 16-bit little-endian mono PCM at ``raw_sample_rate``, which
    only they take (others have their rate in their header: ``ValueError``).

    Raises:
        AudioError: a file that soundfile cannot open or decode to its end (missing,
            not audio, truncated), or headerless audio without its rate.
    """
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
    cut = _container_cut(path)  # before decoding, which fails on some cut files with vaguer messages
    if cut is not None:
        raise AudioError(f"{path}: truncated: {cut}")
    options = dict(samplerate=raw_sample_rate, **_HEADERLESS_FORMAT) if headerless else {}
    try:
        with sf.SoundFile(str(path), **options) as stream:
            declared, sample_rate, fmt = stream.frames, stream.samplerate, stream.format
            samples, error = _read_to_the_end(stream)
    except (sf.SoundFileError, RuntimeError, OSError) as err:  # libsndfile reports decode errors as RuntimeError
        raise AudioError(f"{path}: not readable as audio: {err}") from None
    if len(samples) < declared and _declares_exact_length(path, fmt):
        raise AudioError(
            f"{path}: truncated: its header declares {declared / sample_rate:.2f} s of audio, "
            f"only {len(samples) / sample_rate:.2f} s could be decoded"
        )
    if error is not None:
        raise AudioError(f"{path}: not readable as audio: {error}")
    return mix_to_mono(samples).astype(np.float32, copy=False), int(sample_rate)


def _read_to_the_end(stream: sf.SoundFile) -> tuple[np.ndarray, Exception | None]:
    """The frames (frames, channels) decoded until the end or the first decoding error, and that error.

    soundfile reads at most the frames the file declares, so they are the buffer's size.
    """
    samples = np.empty((stream.frames, stream.channels), dtype=np.float32)
    done = 0
    while done < len(samples):
        try:
            got = len(stream.read(out=samples[done : done + _READ_BLOCK_FRAMES]))
        except (sf.SoundFileError, RuntimeError) as err:
            return samples[:done], err
        if got == 0:
            break
        done += got
    return samples[:done], None


def _declares_exact_length(path: Path, fmt: str) -> bool:
    """Whether libsndfile's frame count is the encoder's, so that fewer frames decoded means a cut file."""
    if fmt == "FLAC":  # STREAMINFO's total samples (0: unknown)
        return True
    if fmt == "MP3":  # LAME's Xing/Info or Fraunhofer's VBRI header, in the first frame
        with path.open("rb") as stream:
            id3 = stream.read(10)
            start = 0
            if len(id3) == 10 and id3[:3] == b"ID3":  # ID3v2 tag: 10-byte header, syncsafe size, optional footer
                start = 10 + sum((byte & 0x7F) << shift for byte, shift in zip(id3[6:10], (21, 14, 7, 0)))
                start += 10 if id3[5] & 0x10 else 0
            stream.seek(start)
            first = stream.read(64)
        return any(tag in first for tag in (b"Xing", b"Info", b"VBRI"))
    return False  # libsndfile counts what is there: see _container_cut


def _container_cut(path: Path) -> str | None:
    """How a WAV, AIFF or Ogg file shows it was cut short, or None."""
    with path.open("rb") as stream:
        head = stream.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _chunk_cut(stream, b"data", "<")
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _chunk_cut(stream, b"SSND", ">")
        if head[:4] == b"OggS":
            return _ogg_cut(stream)
    return None


def _chunk_cut(stream: BinaryIO, audio_chunk: bytes, endian: str) -> str | None:
    """The audio chunk of a RIFF (little-endian) or AIFF (big-endian) file holds fewer bytes than its header says.

    Sizes 0 and 0xFFFFFFFF mean unknown (written by a program that could not seek back).
    """
    file_size = os.fstat(stream.fileno()).st_size
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
    file_size = os.fstat(stream.fileno()).st_size
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
    Integer samples are scaled to [-1, 1)."""
    waveform = np.asarray(audio)
    if waveform.ndim == 2 and waveform.shape[0] < waveform.shape[1]:
        waveform = waveform.T
    if waveform.ndim not in (1, 2):
        raise AudioError(f"{name}: expected a waveform (samples,) or (samples, channels), got shape {waveform.shape}")
    if np.issubdtype(waveform.dtype, np.integer):
        waveform = waveform / float(np.iinfo(waveform.dtype).max + 1)
    elif not np.issubdtype(waveform.dtype, np.floating):
        raise AudioError(f"{name}: expected float or integer samples, got dtype {waveform.dtype}")
    return mix_to_mono(waveform).astype(np.float32, copy=False)


def peak_dbfs(waveform: np.ndarray) -> float:
    """Peak level in dB relative to full scale; ``-inf`` for digital silence."""
    peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def split_at_pauses(waveform: np.ndarray, sample_rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """Cut audio longer than ``max_seconds`` into ``[start, stop)`` sample ranges.

    Each cut falls on the quietest 10 ms (lowest RMS) in the second half of the
    window that is still allowed, so segments are between ``max_seconds / 2`` and
    ``max_seconds`` long (the last one may be shorter) and words are rarely split.
    Audio within the limit is one range.
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    hop = max(1, int(round(sample_rate * PAUSE_HOP_SECONDS)))
    max_hops = max(2, int(max_seconds * sample_rate) // hop)
    total = len(waveform)
    n_hops = total // hop
    energy = np.square(waveform[: n_hops * hop].astype(np.float64)).reshape(n_hops, hop).mean(axis=1)
    ranges = []
    start_hop = 0
    while (total - start_hop * hop) > max_hops * hop:
        low, high = start_hop + max_hops // 2, start_hop + max_hops
        cut_hop = low + int(np.argmin(energy[low:high]))
        ranges.append((start_hop * hop, cut_hop * hop))
        start_hop = cut_hop
    ranges.append((start_hop * hop, total))
    return ranges
