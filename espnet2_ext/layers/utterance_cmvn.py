"""fairseq's utterance CMVN (FBK's ``utterance_cmvn`` transform), on padded batches.

FBK normalises every utterance's features by their own means and variances
before SpecAugment (``config_st.yaml``: ``transforms: [utterance_cmvn,
specaugment]``). fairseq does it per utterance in the data loader; here it runs
on the padded batch with statistics over each utterance's valid frames only.
ESPnet 202511's ``utterance_mvn`` is not used because with ``norm_vars`` its
variance includes the zeroed padded frames (an utterance's features then change
with the batch) and it writes into its input.
"""


import torch
from espnet2.layers.abs_normalize import AbsNormalize

from espnet2_ext.layers.masks import make_valid_mask


class UtteranceCMVN(AbsNormalize):
    """Per utterance and channel: ``(x - mean) / sqrt(max(var, eps))``, padded frames 0.

    fairseq's formula: ``var = sum(x^2) / n - mean^2``, floored at ``eps``
    (1e-10) before the square root.

    Args:
        norm_means: subtract the mean.
        norm_vars: divide by the standard deviation.
        eps: floor of the variance.
    """

    def __init__(self, norm_means: bool = True, norm_vars: bool = True, eps: float = 1e-10):
        super().__init__()
        self.norm_means = norm_means
        self.norm_vars = norm_vars
        self.eps = eps

    def extra_repr(self) -> str:
        return f"norm_means={self.norm_means}, norm_vars={self.norm_vars}, eps={self.eps}"

    def forward(self, x: torch.Tensor, ilens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise features (B, T, F) of lengths (B,); a new tensor, padded frames zero."""
        valid = make_valid_mask(ilens, x.size(1)).unsqueeze(-1)
        x = x.masked_fill(~valid, 0.0)
        count = ilens.to(x.dtype).clamp(min=1).view(-1, 1, 1)
        mean = x.sum(dim=1, keepdim=True) / count
        square_sums = x.pow(2).sum(dim=1, keepdim=True)
        if self.norm_means:
            x = x - mean
        if self.norm_vars:
            var = square_sums / count - mean.pow(2)
            x = x / var.clamp(min=self.eps).sqrt()
        return x.masked_fill(~valid, 0.0), ilens
