"""Conformer convolution module that never lets padded frames in."""

import torch
from torch import nn

from espnet2_ext.layers.conv1d_op import conv1d
from espnet2_ext.layers.masks import ValidFrames
from espnet2_ext.layers.process_sum import sum_over_processes


class MaskedConvolutionModule(nn.Module):
    """Pointwise -> GLU -> depthwise -> BatchNorm -> SiLU -> pointwise, padding-clean.

    ESPnet's stock module convolves over padded frames (non-zero after the
    previous sub-layers) and lets them into BatchNorm's batch statistics, so an
    utterance's output depends on what it is batched with. Here padded frames
    are zeroed before the depthwise convolution, BatchNorm's batch statistics
    are those of the valid frames only, and padded output frames are zero.

    The statistics are masked sums over the padded batch (:meth:`_masked_batch_norm`),
    so that nothing waits for the device to say how many frames are valid; the
    parameters and running statistics stay those of a plain ``nn.BatchNorm1d``
    (``norm``). With ``sync_statistics`` (distributed training, ``sync_batchnorm``)
    the sums are added over every process before they normalise, as
    ``SyncBatchNorm`` gathers statistics: the batch is the union of the
    processes' valid frames, on GPUs and on CPUs alike.

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
        self.sync_statistics = False  # BatchNorm's batch statistics over every process (set by the task)

    def forward(self, x: torch.Tensor, frames: ValidFrames) -> torch.Tensor:
        """Map (B, T, C) to (B, T, C); ``frames`` says which are real. Padded output frames are zero."""
        padded = ~frames.mask.unsqueeze(-1)
        x = nn.functional.glu(self.pointwise_in(x), dim=-1)
        x = x.masked_fill(padded, 0.0)
        depthwise = self.depthwise
        x = conv1d(x.transpose(1, 2), depthwise.weight, None, 1, depthwise.padding[0], depthwise.groups).transpose(1, 2)
        x = self.pointwise_out(self.activation(self._masked_batch_norm(x, frames)))
        return x.masked_fill(padded, 0.0)

    def _masked_batch_norm(self, x: torch.Tensor, frames: ValidFrames) -> torch.Tensor:
        """``self.norm`` over the valid frames of (B, T, C), statistics in float32.

        In training: the valid frames' mean and (biased) variance normalise, and
        the running statistics move towards them (unbiased variance) by the
        norm's momentum, as ``nn.BatchNorm1d`` does. One frame has no batch
        variance (early in training the CTC can squeeze a whole batch to a single
        vector), so it is normalised with the running statistics instead, leaving
        them untouched. In evaluation: the running statistics.
        """
        norm = self.norm
        if not self.training or not norm.track_running_stats:
            return nn.functional.batch_norm(
                x.transpose(1, 2), norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
            ).transpose(1, 2)
        valid = frames.mask.unsqueeze(-1)
        values = x.float()
        sums = torch.cat([values.masked_fill(~valid, 0.0).sum((0, 1)), frames.count.float().reshape(1)])
        if self.sync_statistics:
            sums = sum_over_processes(sums)
        count = sums[-1]
        mean = sums[:-1] / count
        square_sum = (values - mean).masked_fill(~valid, 0.0).square().sum((0, 1))
        if self.sync_statistics:
            square_sum = sum_over_processes(square_sum)
        var = square_sum / count
        use_batch = count >= 2
        with torch.no_grad():
            norm.num_batches_tracked.add_(use_batch.long())
            if norm.momentum is None:  # cumulative average
                factor = torch.where(use_batch, 1.0 / norm.num_batches_tracked.clamp(min=1).float(), 0.0)
            else:
                factor = torch.where(use_batch, norm.momentum, 0.0)
            unbiased = square_sum / (count - 1).clamp(min=1.0)
            norm.running_mean.mul_(1 - factor).add_(factor * mean.detach())
            norm.running_var.mul_(1 - factor).add_(factor * unbiased)
        mean = torch.where(use_batch, mean, norm.running_mean)
        var = torch.where(use_batch, var, norm.running_var)
        normalised = (values - mean) * torch.rsqrt(var + norm.eps)
        if norm.affine:
            normalised = normalised * norm.weight + norm.bias
        return normalised.to(x.dtype)


def share_batch_statistics(model: nn.Module, cuda: bool) -> tuple[nn.Module, bool]:
    """``model`` with BatchNorm's batch statistics taken over every process of the default group.

    Our convolution modules add their masked sums over the processes
    (``sync_statistics``), on any device; any other BatchNorm (ESPnet's encoders)
    becomes ``SyncBatchNorm`` when ``cuda`` (it is CUDA-only) and stays per process
    otherwise. Returns the model and whether some BatchNorm stays per process.
    """
    kept = False

    def visit(module: nn.Module) -> None:
        nonlocal kept
        for name, child in module.named_children():
            if isinstance(child, MaskedConvolutionModule):
                child.sync_statistics = True
            elif isinstance(child, nn.modules.batchnorm._BatchNorm):
                if cuda:
                    setattr(module, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
                else:
                    kept = True
            else:
                visit(child)

    visit(model)
    return model, kept
