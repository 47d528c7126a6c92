"""Features of a growing audio prefix, chunk by chunk, equal to the offline ones.

After every chunk of audio the encoder re-runs on the features of everything
received so far, so those must be the features the model was trained on:
:func:`~espnet2_ext.utils.fbank.compute_fbank` of that prefix. FBK's agents
(SIMULST_FBK.md §1.2) get them without recomputing the prefix. Kaldi's fbank
works frame by frame (25 ms windows every 10 ms; DC offset, pre-emphasis and
window applied within each frame), so the frames of a piece of audio are the
frames of the whole that lie in it. Each chunk is appended to the samples not
yet used by a complete frame (the residual), the frames now complete are
computed, and the samples from the next frame's start on are kept.

One change to FBK's rule: each fbank call covers at least ``min_call_frames``
frames, recomputing known frames as left context when a chunk completes fewer.
Kaldi's fbank ends with one matrix product (power spectra x mel filters), and
MKL rounds the rows of a short product differently from those of a long one
(by about 1e-6 in the log energies). On a 2-core AMD EPYC with MKL 2024.2, rows
differ in products of up to 3 rows at 1 thread, 11 at 2, 27 at 16, 51 at 32
and 171 at 64 threads. FBK's 1 s chunks (about 100 rows) are exact there; 10 ms
chunks would not be. The default, 128 frames, covers up to 32 threads; more
threads need more. While the stream has fewer than ``min_call_frames`` frames,
each call recomputes the whole prefix, whose short product may round its own
way: those first frames may change by that rounding; later frames are final.

The normalisations of the prefix are functions of its frames:
:func:`prefix_cmvn` (the model's utterance CMVN over the prefix) or a
:class:`GlobalCMVN` loaded by :func:`load_global_cmvn` (FBK's inference, §1.3).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from espnet2_ext.utils.fbank import (
    FRAME_LENGTH_MS,
    FRAME_SHIFT_MS,
    NUM_MEL_BINS,
    SAMPLE_RATE,
    compute_fbank,
    num_frames,
)

if TYPE_CHECKING:
    from espnet2_ext.layers.utterance_cmvn import UtteranceCMVN

__all__ = [
    "MIN_CALL_FRAMES",
    "CMVNStatsError",
    "GlobalCMVN",
    "IncrementalFbank",
    "call_start",
    "kept_from",
    "load_global_cmvn",
    "prefix_cmvn",
]

WINDOW = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)  # 400 samples
SHIFT = int(SAMPLE_RATE * FRAME_SHIFT_MS / 1000)  # 160 samples
# Above the 51 rows that still round differently at 32 threads (module docstring);
# about 1 ms per call on one thread.
MIN_CALL_FRAMES = 128


def call_start(known: int, total: int, min_call_frames: int) -> int:
    """First frame of the fbank call that completes frames ``known .. total - 1``.

    Frame 0 (the whole prefix) while fewer than ``min_call_frames`` frames are known;
    then the first new frame, or earlier so that the call covers ``min_call_frames``.
    With ``min_call_frames=1`` this is FBK's rule: the new frames only.
    """
    if known < min_call_frames:
        return 0
    return min(known, total - min_call_frames)


def kept_from(known: int, min_call_frames: int) -> int:
    """First frame whose samples a later call can need, once ``known`` frames are computed."""
    return max(0, known + 1 - min_call_frames)


def _as_samples(samples: np.ndarray) -> np.ndarray:
    """The chunk as float32, checked as :func:`compute_fbank` checks a waveform, even
    for a chunk that completes no frame."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(
            f"expected a mono chunk (samples,), got shape {samples.shape}; see espnet2_ext.utils.waveform.mix_to_mono"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got dtype {samples.dtype}")
    return samples.astype(np.float32, copy=False)


class IncrementalFbank:
    """The fbank features of a 16 kHz mono stream received in chunks of any size.

    Example::

        fbank = IncrementalFbank()
        for chunk in chunks:  # float samples in [-1, 1] at 16 kHz
            new = fbank.feed(chunk)  # (frames completed by this chunk, 80)
            encoder_input = fbank.features  # == compute_fbank(all chunks so far, 16000)

    Other rates: resample first with :class:`~espnet2_ext.utils.resampling.StreamResampler`.

    Args:
        min_call_frames: fewest frames per fbank call (module docstring); 1 is
            FBK's rule exactly.
    """

    def __init__(self, min_call_frames: int = MIN_CALL_FRAMES):
        if min_call_frames < 1:
            raise ValueError(f"min_call_frames must be >= 1, got {min_call_frames}")
        self.min_call_frames = min_call_frames
        self.reset()

    def reset(self) -> None:
        """Forget the stream, to start another."""
        self._chunks: list[np.ndarray] = []  # received samples from frame _first_frame's start on
        self._first_frame = 0
        self._received = 0
        self._discarded = 0  # frames dropped from the front of _features
        self._features = np.zeros((0, NUM_MEL_BINS), dtype=np.float32)
        self._features.flags.writeable = False

    @property
    def num_samples(self) -> int:
        """Samples received since the last :meth:`reset`."""
        return self._received

    @property
    def features(self) -> np.ndarray:
        """(frames, 80) float32, read-only: ``compute_fbank`` of the received prefix, less
        the frames :meth:`discard` dropped from its front."""
        return self._features

    @property
    def discarded_frames(self) -> int:
        """Frames dropped from the front so far: ``features[0]`` is frame number this of the stream."""
        return self._discarded

    def discard(self, frames: int) -> None:
        """Drop the oldest ``frames`` of :attr:`features` (a stream's history that is no longer
        needed); the frames still to come are computed as before."""
        if not 0 <= frames <= len(self._features):
            raise ValueError(f"can discard 0 to {len(self._features)} frames, got {frames}")
        self._features = self._features[frames:]
        self._discarded += frames

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Take the next chunk ``(samples,)``; return the frames it completes, ``(new, 80)``.

        While the stream has fewer than ``min_call_frames`` frames, :attr:`features`
        may also revise earlier frames (by float rounding; module docstring).
        """
        samples = _as_samples(samples)
        dropped = self._discarded
        known = dropped + len(self._features)  # frames of the stream computed so far
        self._chunks.append(samples)
        self._received += len(samples)
        total = num_frames(self._received)
        if total == known:
            return self._features[len(self._features) :]
        buffer = np.concatenate(self._chunks)
        start = call_start(known, total, self.min_call_frames)
        offset = (start - self._first_frame) * SHIFT
        piece = buffer[offset : offset + (total - start - 1) * SHIFT + WINDOW]
        computed = compute_fbank(piece, SAMPLE_RATE)  # frames start .. total - 1
        features = np.concatenate([self._features[: max(0, start - dropped)], computed[max(0, dropped - start) :]])
        features.flags.writeable = False
        self._features = features
        keep = kept_from(total, self.min_call_frames)
        self._chunks = [buffer[(keep - self._first_frame) * SHIFT :]]
        self._first_frame = keep
        return features[known - dropped :]


def prefix_cmvn(features: np.ndarray, cmvn: UtteranceCMVN | None = None) -> np.ndarray:
    """Utterance CMVN over the received prefix ``(frames, 80)``, to recompute at every chunk.

    What the model does to a whole utterance in training (``normalize:
    utterance_cmvn``): ``cmvn`` is the model's own ``normalize`` layer, by default
    :class:`~espnet2_ext.layers.utterance_cmvn.UtteranceCMVN` with its defaults.
    """
    import torch

    from espnet2_ext.layers.utterance_cmvn import UtteranceCMVN

    layer = UtteranceCMVN() if cmvn is None else cmvn
    batch = torch.from_numpy(np.array(features, dtype=np.float32))[None]  # a copy: features may be read-only
    with torch.no_grad():
        normalised, _ = layer(batch, torch.tensor([batch.size(1)]))
    return normalised[0].numpy()


class CMVNStatsError(ValueError):
    """Statistics that cannot give a global CMVN; the message names the file."""


@dataclass(frozen=True)
class GlobalCMVN:
    """``(x - mean) / std`` per mel bin, float32, the same for every chunk.

    FBK's agents normalise online features this way (SIMULST_FBK.md §1.3), and so
    does ESPnet's ``global_mvn`` layer, in float32 as here.
    """

    mean: np.ndarray  # (80,) float32
    std: np.ndarray  # (80,) float32, > 0

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Normalise ``(frames, 80)`` features; a new float32 array."""
        return (np.asarray(features, dtype=np.float32) - self.mean) / self.std


ESPNET_KEYS = ("count", "sum", "sum_square")  # stage 4's feats_stats.npz
FBK_KEYS = ("mean", "std")  # FBK's gcmvn.npz


def load_global_cmvn(path: str | Path) -> GlobalCMVN:
    """Mean and std from ESPnet's ``feats_stats.npz`` (count, sum, sum_square) or FBK's ``gcmvn.npz`` (mean, std).

    ESPnet's statistics give the mean and std of
    :class:`espnet2.layers.global_mvn.GlobalMVN` (it reads them; variance floored
    at 1e-20); FBK's are used as stored, as FBK's agents use them.

    Raises:
        FileNotFoundError: no such file.
        CMVNStatsError: not an npz, neither set of keys, a wrong shape, a value
            that is not finite, a count or std that is not positive; one message
            naming the file and every problem found.
    """
    path = Path(path)
    arrays = _read_npz(path)
    if set(ESPNET_KEYS) <= arrays.keys():
        _check(path, arrays, {"count": (), "sum": (NUM_MEL_BINS,), "sum_square": (NUM_MEL_BINS,)}, positive=("count",))
        from espnet2.layers.global_mvn import GlobalMVN  # torch: only when loading

        layer = GlobalMVN(path)
        mean, std = layer.mean.numpy(), layer.std.numpy()
    elif set(FBK_KEYS) <= arrays.keys():
        _check(path, arrays, {"mean": (NUM_MEL_BINS,), "std": (NUM_MEL_BINS,)}, positive=("std",))
        mean, std = arrays["mean"], arrays["std"]
    else:
        raise CMVNStatsError(
            f"{path}: expected the keys {', '.join(ESPNET_KEYS)} (ESPnet's feats_stats.npz) "
            f"or {', '.join(FBK_KEYS)} (FBK's gcmvn.npz), found {', '.join(sorted(arrays)) or 'none'}"
        )
    return GlobalCMVN(mean=mean.astype(np.float32), std=std.astype(np.float32))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz archive; no pickled objects (``allow_pickle=False``)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {key: loaded[key] for key in loaded.files}
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise CMVNStatsError(f"{path}: not a readable .npz archive of numeric arrays ({error})") from error
    raise CMVNStatsError(f"{path}: a single array (.npy), expected an .npz archive of named arrays")


def _check(path: Path, arrays: dict[str, np.ndarray], shapes: dict[str, tuple], positive: tuple[str, ...]) -> None:
    """Raise one :class:`CMVNStatsError` listing every key of ``shapes`` with a wrong shape or value."""
    problems = []
    for key, shape in shapes.items():
        value = arrays[key]
        if value.shape != shape and not (shape == () and value.shape == (1,)):
            problems.append(f"{key} has shape {value.shape}, expected {shape or 'a single number'}")
        elif not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            problems.append(f"{key} has dtype {value.dtype}, expected real numbers")
        elif not np.all(np.isfinite(value)):
            problems.append(f"{key} is not finite everywhere")
        elif key in positive and not np.all(value > 0):
            problems.append(f"{key} must be > 0 everywhere")
    if problems:
        raise CMVNStatsError(f"{path}: {'; '.join(problems)}")
