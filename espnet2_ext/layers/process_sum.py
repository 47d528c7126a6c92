"""A sum over every training process that gradients flow through, for statistics shared by all of them."""

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol


def _all_reduce(x: torch.Tensor) -> torch.Tensor:
    """The sum over the processes, waited for (eagerly a collective returns a handle that waits when
    asked; traced, the graph holds the wait)."""
    summed = funcol.all_reduce(x, "sum", dist.group.WORLD)
    return summed.wait() if isinstance(summed, funcol.AsyncCollectiveTensor) else summed


class _SumOverProcesses(torch.autograd.Function):
    """``all_reduce(sum)`` both ways: each process's output is the sum of every process's input,
    so a gradient reaching that sum on any process flows back to every process's input."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _all_reduce(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _all_reduce(grad.contiguous())


def sum_over_processes(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the default process group's processes (``x`` itself outside one).

    The traceable collectives of ``torch.distributed._functional_collectives``: a
    compiled graph keeps them, where ``dist.all_reduce`` would cut it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _SumOverProcesses.apply(x)
