"""The one lengths-to-mask helper of the package.

ESPnet's ``make_pad_mask`` asserts on ``lengths.max()`` (a host round trip on a
GPU) and builds a (T + 1)^2 triangle per call; the encoder builds its masks in
every forward, so this is the plain comparison instead.
"""

import torch


def make_valid_mask(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """(B, time) booleans, True on the first ``lengths[b]`` frames of row b."""
    return torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]
