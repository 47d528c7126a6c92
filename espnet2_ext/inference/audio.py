"""Reading user audio for translation: any soundfile format, checked, mono, cut at pauses.

Features are not computed here: :func:`espnet2_ext.utils.fbank.compute_fbank` is the
one definition of them and resamples to the model's rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple, Union

import numpy as np
import soundfile as sf

from espnet2_ext.utils.fbank import mix_to_mono

__all__ = ["AudioError", "as_waveform", "peak_dbfs", "read_audio", "split_at_pauses"]

PAUSE_HOP_SECONDS = 0.01


class AudioError(ValueError):
    """Audio that cannot be translated; the message names the input and the reason."""


def read_audio(path: Union[str, Path]) -> Tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a soundfile-readable file.

    Multi-channel audio is averaged to one channel. A file that soundfile cannot
    open or decode to its end (missing, not audio, truncated) raises :class:`AudioError`.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError) as err:  # libsndfile reports decode errors as RuntimeError
        raise AudioError(f"{path}: not readable as audio: {err}") from None
    return mix_to_mono(samples).astype(np.float32, copy=False), int(sample_rate)


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


def split_at_pauses(waveform: np.ndarray, sample_rate: int, max_seconds: float) -> List[Tuple[int, int]]:
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
