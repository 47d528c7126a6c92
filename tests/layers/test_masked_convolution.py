"""The conv module's BatchNorm sees valid frames only, and survives a single one."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from espnet2_ext.layers.masked_convolution import MaskedConvolutionModule, share_batch_statistics
from espnet2_ext.layers.masks import ValidFrames

REPO = Path(__file__).resolve().parents[2]


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


# Rank ``argv[1]`` of ``argv[2]`` processes (gloo, file rendezvous ``argv[3]``): the module trains on its share of
# the batch with statistics summed over the processes, then saves its output, the input's gradient, the summed
# parameter gradients and the running statistics to ``argv[4]``.
RANK = """
import sys, torch, torch.distributed as dist
from espnet2_ext.layers.masked_convolution import MaskedConvolutionModule, share_batch_statistics
from espnet2_ext.layers.masks import ValidFrames
rank, world = int(sys.argv[1]), int(sys.argv[2])
dist.init_process_group("gloo", init_method=f"file://{sys.argv[3]}", rank=rank, world_size=world)
torch.manual_seed(0)
model, per_process = share_batch_statistics(torch.nn.Sequential(MaskedConvolutionModule(8, kernel_size=5)), cuda=False)
assert not per_process and model[0].sync_statistics
module = model[0].train()
x, lengths = torch.load(sys.argv[5])
share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
x = x[share].clone().requires_grad_()
frames = ValidFrames.of(lengths[share], x.size(1))
out = module(x, frames)
(out * torch.arange(4 * 9 * 8).view(4, 9, 8)[share].cos()).sum().backward()  # the whole batch's weights
grads = [p.grad.clone() for p in module.parameters()]
for g in grads:
    dist.all_reduce(g)
torch.save(dict(out=out.detach(), x_grad=x.grad, grads=grads, mean=module.norm.running_mean,
                var=module.norm.running_var), sys.argv[4])
dist.destroy_process_group()
"""


def test_statistics_summed_over_processes_are_those_of_the_whole_batch(tmp_path):
    """Two processes, each with half of a padded batch, normalise with the statistics of all its valid
    frames: their outputs, input gradients, summed parameter gradients and running statistics are
    those of one process with the whole batch. (Without the sum, each half's own statistics differ.)"""
    torch.manual_seed(1)
    x, lengths = torch.randn(4, 9, 8) * 3 + 1, torch.tensor([9, 4, 7, 2])
    torch.save((x, lengths), tmp_path / "batch.pt")
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(script), str(rank), "2", str(tmp_path / "rendezvous"),
                               str(tmp_path / f"rank{rank}.pt"), str(tmp_path / "batch.pt")],
                              env=env, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    errors = [process.communicate(timeout=120)[1] for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0], errors
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    torch.manual_seed(0)
    module = MaskedConvolutionModule(8, kernel_size=5).train()
    whole = x.clone().requires_grad_()
    out = module(whole, ValidFrames.of(lengths, x.size(1)))
    (out * torch.arange(out.numel()).view(out.shape).cos()).sum().backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in results]), out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in results]), whole.grad, rtol=1e-5, atol=1e-5)
    for summed, parameter in zip(results[0]["grads"], module.parameters()):
        torch.testing.assert_close(summed, parameter.grad, rtol=1e-5, atol=1e-5)
    for r in results:
        torch.testing.assert_close(r["mean"], module.norm.running_mean)
        torch.testing.assert_close(r["var"], module.norm.running_var)

    torch.manual_seed(0)
    alone = MaskedConvolutionModule(8, kernel_size=5).train()  # the first half on its own statistics
    assert not torch.allclose(alone(x[:2], ValidFrames.of(lengths[:2], 9)), results[0]["out"], atol=1e-3)


def test_other_batch_norms_become_sync_batchnorm_on_gpus_and_stay_per_process_otherwise():
    """ESPnet's conv modules (a plain BatchNorm1d) get CUDA's SyncBatchNorm with GPUs; on the CPU they
    keep their own statistics and the caller is told. Ours keep their BatchNorm1d and sum instead."""

    def model() -> torch.nn.Module:
        espnet_like = torch.nn.Sequential(torch.nn.BatchNorm1d(8))
        return torch.nn.Sequential(MaskedConvolutionModule(8, kernel_size=5), espnet_like)

    on_gpus, per_process = share_batch_statistics(model(), cuda=True)
    assert not per_process and on_gpus[0].sync_statistics
    assert type(on_gpus[0].norm) is torch.nn.BatchNorm1d and isinstance(on_gpus[1][0], torch.nn.SyncBatchNorm)
    on_cpu, per_process = share_batch_statistics(model(), cuda=False)
    assert per_process and on_cpu[0].sync_statistics and type(on_cpu[1][0]) is torch.nn.BatchNorm1d
    assert list(on_gpus.state_dict()) == list(model().state_dict())  # checkpoints keep their keys
