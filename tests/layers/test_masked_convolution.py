"""The conv module's BatchNorm sees valid frames only, and survives a single one."""

import torch

from espnet2_ext.layers.masked_convolution import MaskedConvolutionModule
from espnet2_ext.layers.masks import ValidFrames


def test_padded_frames_do_not_change_valid_outputs_or_statistics():
    torch.manual_seed(0)
    module = MaskedConvolutionModule(8, kernel_size=5).train()
    x = torch.randn(1, 10, 8)
    valid = torch.ones(1, 10, dtype=torch.bool)
    alone = module(x, ValidFrames.from_mask(valid))
    stats = module.norm.running_mean.clone()
    module.norm.reset_running_stats()
    padded = torch.cat([x, torch.randn(1, 6, 8) * 100], dim=1)
    out = module(padded, ValidFrames.from_mask(torch.arange(16)[None] < 10))
    assert torch.allclose(out[:, :10], alone, atol=1e-6)
    assert torch.count_nonzero(out[:, 10:]) == 0
    assert torch.allclose(module.norm.running_mean, stats, atol=1e-7)


def test_a_single_valid_frame_in_training_uses_running_statistics():
    torch.manual_seed(0)
    module = MaskedConvolutionModule(8, kernel_size=5).train()
    x = torch.randn(2, 3, 8)
    valid = ValidFrames.from_mask(torch.tensor([[True, False, False], [False, False, False]]))
    before = module.norm.running_mean.clone()
    out = module(x, valid)
    expected = module.eval()(x, valid)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, expected)
    assert torch.equal(module.norm.running_mean, before)
