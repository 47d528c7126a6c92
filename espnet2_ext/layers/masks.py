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
    """Which frames of a padded batch are real, as a mask and as flat indices.

    Built once per sequence length of a forward: the indices cost the only host
    round trip (their count is data-dependent); every layer then gathers and
    scatters valid frames with them without another one.
    """

    mask: torch.Tensor  # (B, T) booleans
    index: torch.Tensor  # (N,) positions of the valid frames in the (B * T) flattening

    @classmethod
    def of(cls, lengths: torch.Tensor, time: int) -> "ValidFrames":
        return cls.from_mask(make_valid_mask(lengths, time))

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "ValidFrames":
        return cls(mask, mask.flatten().nonzero().squeeze(1))
