"""Resampling a stream, block by block, to what resampling it whole gives.

torchaudio's ``resample`` is one strided convolution with a windowed-sinc kernel:
with the rates reduced by their gcd to ``orig`` and ``new``, every ``orig`` input
samples give ``new`` output samples, each block computed from the input around it
(``width`` samples either side). :class:`StreamResampler` keeps just that much input
between calls and runs the same kernel (torchaudio's own) over fixed groups of
blocks, so a recording read in chunks of any size gives the same samples as
:func:`torchaudio.functional.resample` over the whole (to float rounding, < 1e-6),
and exactly the same samples however it is chunked.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torchaudio.functional.functional import _get_sinc_resample_kernel

__all__ = ["StreamResampler"]

_GROUP_SECONDS = 1.0  # input per convolution call
# torchaudio.functional.resample's defaults
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99


class StreamResampler:
    """Resample a mono float stream from ``orig_rate`` to ``new_rate``.

    Example::

        resampler = StreamResampler(44100, 16000)
        out = np.concatenate([resampler.feed(chunk) for chunk in chunks] + [resampler.finish()])

    :meth:`feed` returns the output it can finish, :meth:`finish` the rest (the end of
    the input is zero-padded as torchaudio pads it), then resets for another stream.
    At equal rates both return their input unchanged.
    """

    def __init__(self, orig_rate: int, new_rate: int):
        if orig_rate <= 0 or new_rate <= 0:
            raise ValueError(f"sample rates must be > 0, got {orig_rate} and {new_rate}")
        self.orig_rate, self.new_rate = orig_rate, new_rate
        gcd = math.gcd(orig_rate, new_rate)
        self._orig, self._new = orig_rate // gcd, new_rate // gcd
        if orig_rate != new_rate:
            self._kernel, self._width = _get_sinc_resample_kernel(
                orig_rate, new_rate, gcd, _LOWPASS_FILTER_WIDTH, _ROLLOFF, "sinc_interp_hann", None,
                torch.device("cpu"), torch.float32,
            )
            self._group = max(1, int(_GROUP_SECONDS * orig_rate) // self._orig)  # blocks per call
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._buffer = np.zeros(self._width if self.orig_rate != self.new_rate else 0, dtype=np.float32)
        self._seen = 0  # input samples
        self._emitted = 0  # output samples

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Take the next input samples; return the output samples finished so far."""
        samples = np.asarray(samples, dtype=np.float32)
        if self.orig_rate == self.new_rate:
            return samples
        self._seen += len(samples)
        self._buffer = np.concatenate([self._buffer, samples])
        needed = self._group * self._orig + self._kernel.shape[-1] - self._orig  # input of one group of blocks
        outputs = []
        while len(self._buffer) >= needed:
            outputs.append(self._convolve(self._buffer[:needed]))
            self._buffer = self._buffer[self._group * self._orig :]
        return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)

    def finish(self) -> np.ndarray:
        """The rest of the output, the input zero-padded at its end; then :meth:`reset`."""
        if self.orig_rate == self.new_rate:
            return np.zeros(0, dtype=np.float32)
        padded = np.concatenate([self._buffer, np.zeros(self._width + self._orig, dtype=np.float32)])
        remaining = int(math.ceil(self._new * self._seen / self._orig)) - self._emitted  # torchaudio's length
        rest = self._convolve(padded)[: max(0, remaining)]
        self.reset()
        return rest

    def _convolve(self, padded: np.ndarray) -> np.ndarray:
        """The blocks that fit in ``padded`` (which starts at a block's first input sample, less the width)."""
        out = torch.nn.functional.conv1d(torch.from_numpy(padded)[None, None], self._kernel, stride=self._orig)
        out = out[0].transpose(0, 1).reshape(-1).numpy()
        self._emitted += len(out)
        return out
