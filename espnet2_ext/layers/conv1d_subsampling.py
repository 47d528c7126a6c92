"""FBK's convolutional subsampler, with padding kept out of every convolution."""


import torch
from torch import nn

from espnet2_ext.layers.conv1d_op import conv1d
from espnet2_ext.layers.masks import make_valid_mask


class Conv1dSubsampling(nn.Module):
    """Stack of Conv1d (stride 2) + GLU layers over time, as in FBK's speech models.

    Each layer doubles its channels and halves them again with a GLU, so a stack
    of ``num_layers`` shortens the input by ``2 ** num_layers``. Padded frames
    are zeroed before every convolution: without this, the bias and GLU of the
    first layer turn padding into non-zero values that the second layer's kernel
    reads at the utterance's end, and results change with the batch.

    Args:
        input_size: feature dimension F of the input (80 for fbank).
        output_size: output dimension D.
        channels: hidden channels between layers (before GLU halves them).
        kernel_size: kernel of every layer (odd).
        num_layers: number of stride-2 layers.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        channels: int = 1024,
        kernel_size: int = 5,
        num_layers: int = 2,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"subsampling_kernel_size must be odd, got {kernel_size}")
        if channels % 2 != 0:
            raise ValueError(f"subsampling_channels must be even, got {channels}")
        in_channels = [input_size] + [channels // 2] * (num_layers - 1)
        out_channels = [channels] * (num_layers - 1) + [output_size * 2]
        self.convs = nn.ModuleList(
            nn.Conv1d(i, o, kernel_size, stride=2, padding=kernel_size // 2)
            for i, o in zip(in_channels, out_channels)
        )
        self.kernel_size = kernel_size

    @property
    def factor(self) -> int:
        """Input frames per output frame: ``2 ** num_layers``."""
        return 2 ** len(self.convs)

    @property
    def min_input_length(self) -> int:
        return self.min_input_length_of(self.kernel_size)

    @staticmethod
    def min_input_length_of(kernel_size: int) -> int:
        """Fewest input frames: below one kernel, every output frame is mostly padding."""
        return kernel_size

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in self.convs:
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        return lengths

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Subsample (B, T, F) features to (B, T', D); padded output frames are zero."""
        x = xs.transpose(1, 2)
        for conv in self.convs:
            x = x.masked_fill(~make_valid_mask(lengths, x.size(2))[:, None, :], 0.0)
            x = nn.functional.glu(conv1d(x, conv.weight, conv.bias, 2, conv.padding[0]), dim=1)
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        x = x.masked_fill(~make_valid_mask(lengths, x.size(2))[:, None, :], 0.0)
        return x.transpose(1, 2), lengths

