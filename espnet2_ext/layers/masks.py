"""The one lengths-to-mask helper of the package.

ESPnet's ``make_pad_mask`` asserts on ``lengths.max()`` (a host round trip on a
GPU) and builds a (T + 1)^2 triangle per call; the encoder builds its masks in
every forward, so this is the plain comparison instead.
"""

from typing import NamedTuple

import torch


def make_valid_mask(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """(B, time) booleans, True on the first ``lengths[b]`` frames of row b."""
    return torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]


class ValidFrames(NamedTuple):
    """Which frames of a padded batch are real: a mask, and how many there are.

    Built once per sequence length of a forward and passed to every layer. Both
    stay on the device: nothing here waits for it (a list of the valid frames'
    positions would, its size depending on the data).
    """

    mask: torch.Tensor  # (B, T) booleans
    count: torch.Tensor  # () valid frames in the batch

    @classmethod
    def of(cls, lengths: torch.Tensor, time: int) -> "ValidFrames":
        return cls.from_mask(make_valid_mask(lengths, time))

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "ValidFrames":
        return cls(mask, mask.sum())
