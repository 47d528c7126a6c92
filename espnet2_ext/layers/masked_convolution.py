"""Conformer convolution module that never lets padded frames in."""

import torch
from torch import nn

from espnet2_ext.layers.masks import ValidFrames


class MaskedConvolutionModule(nn.Module):
    """Pointwise -> GLU -> depthwise -> BatchNorm -> SiLU -> pointwise, padding-clean.

    ESPnet's stock module convolves over padded frames (non-zero after the
    previous sub-layers) and lets them into BatchNorm's batch statistics, so an
    utterance's output depends on what it is batched with. Here padded frames
    are zeroed before the depthwise convolution, and BatchNorm, SiLU and the
    last pointwise layer see only the valid frames, packed as (N, C): the norm
    stays a plain ``nn.BatchNorm1d``, so ``convert_sync_batchnorm`` still works.

    Args:
        channels: model dimension C.
        kernel_size: depthwise kernel (odd, "same" padding).
    """

    def __init__(self, channels: int, kernel_size: int = 31):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"cnn_module_kernel must be odd, got {kernel_size}")
        self.pointwise_in = nn.Linear(channels, 2 * channels)
        self.depthwise = nn.Conv1d(  # no bias: BatchNorm follows (FBK's module has none either)
            channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False
        )
        self.norm = nn.BatchNorm1d(channels)
        self.activation = nn.SiLU()
        self.pointwise_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, frames: ValidFrames) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C); ``frames`` says which are real. Padded output frames are zero."""
        x = nn.functional.glu(self.pointwise_in(x), dim=-1)
        x = x.masked_fill(~frames.mask.unsqueeze(-1), 0.0)
        x = self.depthwise(x.transpose(1, 2)).transpose(1, 2)
        flat = x.reshape(-1, x.size(-1))
        packed = self.pointwise_out(self.activation(self._normalize(flat.index_select(0, frames.index))))
        return flat.new_zeros(flat.shape).index_copy(0, frames.index, packed.to(flat.dtype)).view(x.shape)

    def _normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """BatchNorm over the valid frames (N, C).

        One frame has no batch variance (early in training the CTC can squeeze a
        whole batch to a single vector), so it is normalised with the running
        statistics instead, leaving them untouched.
        """
        if self.training and frames.size(0) < 2:
            norm = self.norm
            return nn.functional.batch_norm(
                frames, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
            )
        return self.norm(frames)
