"""Per-utterance CTC loss as one opaque operator that ``torch.compile`` keeps in its graph.

``F.ctc_loss`` computes, besides the losses, a (B, T, 2S + 1) table whose S is
the longest target: a size that depends on the data, where ``torch.compile``
has to cut its graph. Wrapped as a custom operator whose outputs have the
shapes of its inputs, the loss stays inside one graph. Its backward recomputes
the table (T steps over 2S + 1 labels per utterance: little beside the encoder)
instead of keeping it.

The values and gradients are ``F.ctc_loss``'s with ``reduction="none"``: the
same kernels. Both directions read the lengths on the host; lengths already
there (``.cpu()``) spare a GPU a wait for the device in each.
"""

import torch

__all__ = ["ctc_loss"]


@torch.library.custom_op("espnet2_ext::ctc_loss", mutates_args=())
def _ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    zero_infinity: bool,
) -> torch.Tensor:
    losses, _ = torch.ops.aten._ctc_loss.Tensor(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity)
    if zero_infinity:  # as F.ctc_loss: an impossible alignment counts 0
        losses = torch.where(losses == float("inf"), 0.0, losses)
    return losses


@_ctc_loss.register_fake
def _(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    return log_probs.new_empty(log_probs.size(1))


@torch.library.custom_op("espnet2_ext::ctc_loss_backward", mutates_args=())
def _ctc_loss_backward(
    grad: torch.Tensor,
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    zero_infinity: bool,
) -> torch.Tensor:
    losses, alphas = torch.ops.aten._ctc_loss.Tensor(
        log_probs, targets, input_lengths, target_lengths, blank, zero_infinity
    )
    return torch.ops.aten._ctc_loss_backward.Tensor(
        grad, log_probs, targets, input_lengths, target_lengths, losses, alphas, blank, zero_infinity
    ).contiguous()


@_ctc_loss_backward.register_fake
def _(grad, log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    return log_probs.new_empty(log_probs.shape)


def _setup_context(ctx, inputs, output) -> None:
    log_probs, targets, input_lengths, target_lengths, blank, zero_infinity = inputs
    ctx.save_for_backward(log_probs, targets, input_lengths, target_lengths)
    ctx.blank, ctx.zero_infinity = blank, zero_infinity


def _backward(ctx, grad: torch.Tensor):
    log_probs, targets, input_lengths, target_lengths = ctx.saved_tensors
    grad_log_probs = _ctc_loss_backward(
        grad.contiguous(), log_probs, targets, input_lengths, target_lengths, ctx.blank, ctx.zero_infinity
    )
    return grad_log_probs, None, None, None, None, None


_ctc_loss.register_autograd(_backward, setup_context=_setup_context)


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    zero_infinity: bool = False,
) -> torch.Tensor:
    """``F.ctc_loss(..., reduction="none")``: the loss of each utterance (B,).

    Args:
        log_probs: log-probabilities (T, B, V).
        targets: padded target labels (B, S), blank never among them.
        input_lengths: frames of each utterance (B,), integers (on the host: no wait).
        target_lengths: labels of each utterance (B,), integers (likewise).
        blank: the blank label.
        zero_infinity: an utterance whose target cannot fit its frames counts 0
            (and gets no gradient) instead of infinity.
    """
    return _ctc_loss(log_probs, targets.long(), input_lengths.long(), target_lengths.long(), blank, zero_infinity)
