"""``F.conv1d`` as one opaque operator, so that compiled graphs do not depend on the convolution's sizes.

Compiling ``F.conv1d`` over a length known only at run time makes
``torch.compile`` ask the convolution backend which kernel it would pick
(oneDNN on the CPU, cuDNN on a GPU), and the backends' size thresholds become
guards: a batch crossing one is compiled again (on the CPU, 16 utterances or
20480 input values). This operator's output has a fixed layout whatever the
sizes, so the graph keeps none of them. The kernels, forward and backward, are
the ones ``nn.Conv1d`` runs; ``torch.compile`` calls them as it would anyway
(it fuses nothing into a convolution).
"""

import torch

__all__ = ["conv1d"]


@torch.library.custom_op("espnet2_ext::conv1d", mutates_args=())
def _conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int, groups: int
) -> torch.Tensor:
    return torch.nn.functional.conv1d(x, weight, bias, stride, padding, 1, groups).contiguous()


@_conv1d.register_fake
def _(x, weight, bias, stride, padding, groups):
    length = (x.size(2) + 2 * padding - weight.size(2)) // stride + 1
    return x.new_empty(x.size(0), weight.size(0), length)


@torch.library.custom_op("espnet2_ext::conv1d_backward", mutates_args=())
def _conv1d_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int,
    padding: int,
    groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [stride], [padding], [1], False, [0], groups, output_mask
    )
    empty = grad.new_empty(0)  # an operator returns tensors: an empty one stands for a gradient not asked for
    return tuple(g.contiguous() if g is not None else empty for g in grads)


@_conv1d_backward.register_fake
def _(grad, x, weight, stride, padding, groups, output_mask):
    return (
        x.new_empty(x.shape) if output_mask[0] else grad.new_empty(0),
        weight.new_empty(weight.shape) if output_mask[1] else grad.new_empty(0),
        grad.new_empty(weight.size(0)) if output_mask[2] else grad.new_empty(0),
    )


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, stride, padding, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.stride, ctx.padding, ctx.groups = stride, padding, groups
    ctx.has_bias = bias is not None


def _backward(ctx, grad: torch.Tensor):
    x, weight = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    grad_x, grad_weight, grad_bias = _conv1d_backward(
        grad.contiguous(), x, weight, ctx.stride, ctx.padding, ctx.groups, mask
    )
    return (grad_x if mask[0] else None, grad_weight if mask[1] else None, grad_bias if mask[2] else None,
            None, None, None)


_conv1d.register_autograd(_backward, setup_context=_setup_context)


def conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, stride, padding, groups=groups)`` of (B, C_in, T) by (C_out, C_in / groups, K):
    (B, C_out, T'), contiguous."""
    return _conv1d(x.contiguous(), weight, bias, stride, padding, groups)
