"""``torch.compile`` for training: the model compiled in place, its checkpoint keys unchanged.

The config key ``compile`` (``st_train --compile``) takes ``true``, ``false`` or
``auto``: compiled on GPUs (``ngpu > 0``), eager on the CPU, where compiling costs
minutes and the step is not faster (``bench/compile_proxies.py``).

A compiler that fails does not end the training (:class:`EagerFallback`): a first GPU run
is the first time inductor writes kernels for this model on that GPU. Compiling happens
inside the model's call: dynamo and inductor compile the forward there, and with
:data:`FUNCTORCH_SETTINGS` the backward too (it would otherwise be compiled at the first
``backward()``, inside ESPnet's trainer, after gradients of other graphs had been
accumulated); a recompilation past dynamo's limit raises there too
(``fail_on_recompile_limit_hit``) instead of running that graph eagerly without a word. On
such an error the call is run again eagerly, from the random-number generators and buffers
(BatchNorm's statistics) it started with, and the model stays eager: nothing has touched
the gradients or the optimizer, so the step and the ones after it are eager's.
"""

import argparse
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch._dynamo.exc import FailOnRecompileLimitHit, TorchDynamoException

COMPILE_SETTINGS = ("auto", "true", "false")

# Dynamo settings the model is compiled with. Scalar reads stay in the graph instead of
# cutting it; the model's float settings (epsilons, dropout rates, loss weights) are
# constants of the graph, not inputs turned into tensors and checked at every call; and a
# model sees a few graph variants (training and evaluation, batches of one utterance and of
# more): they must never exhaust dynamo's budget, past which it would quietly run the model
# eagerly; it raises instead, and EagerFallback says so and goes on eagerly.
DYNAMO_SETTINGS = dict(
    capture_scalar_outputs=True, specialize_float=True, recompile_limit=32, fail_on_recompile_limit_hit=True
)
# The backward compiled with the forward, inside the model's call (see the module's docstring).
FUNCTORCH_SETTINGS = dict(force_non_lazy_backward_lowering=True)
# What compiling raises: dynamo's errors (inductor's derive from them) and the recompilation limit.
COMPILE_ERRORS = (TorchDynamoException, FailOnRecompileLimitHit)


def compile_setting(value: str | bool) -> str:
    """The ``compile`` option: ``true``, ``false`` or ``auto`` (a YAML boolean too)."""
    text = str(value).lower()
    if text not in COMPILE_SETTINGS:
        raise argparse.ArgumentTypeError(f"compile: expected one of {', '.join(COMPILE_SETTINGS)}, got {value!r}")
    return text


def should_compile(setting: str | bool, ngpu: int) -> bool:
    """Whether the ``compile`` option compiles a model trained on ``ngpu`` GPUs."""
    setting = compile_setting(setting)
    return ngpu > 0 if setting == "auto" else setting == "true"


def compiled(fn: Callable, backend: str = "inductor") -> Callable:
    """``torch.compile(fn)`` as the model is compiled: :data:`DYNAMO_SETTINGS`, shapes dynamic from
    the first call (every batch of two utterances or more runs one graph, whatever its lengths; a
    batch of one gets its own)."""
    _apply_settings()
    return torch.compile(fn, backend=backend, dynamic=True)


def compile_model(model: torch.nn.Module, backend: str | Callable = "inductor") -> torch.nn.Module:
    """Compile ``model``'s forward in place (``nn.Module.compile``), as :func:`compiled` does, and return it;
    if compiling fails, the model runs eagerly from then on (:class:`EagerFallback`).

    In place, the state dict keeps its keys (``torch.compile(model)`` would wrap
    it and prefix every key with ``_orig_mod.``): checkpoints load into eager and
    compiled models alike. Sets :data:`DYNAMO_SETTINGS` and :data:`FUNCTORCH_SETTINGS` for the process.
    """
    _apply_settings()
    model.compile(backend=backend, dynamic=True)
    # nn.Module.__call__ runs _compiled_call_impl when it is set, else the eager _call_impl.
    model._compiled_call_impl = EagerFallback(model, model._compiled_call_impl)
    return model


def is_compiled(model: torch.nn.Module) -> bool:
    """Whether ``model``'s calls run compiled (False once :class:`EagerFallback` has given up compiling)."""
    return model._compiled_call_impl is not None


class EagerFallback:
    """A module's compiled call that, when compiling fails, runs the call eagerly and keeps the module eager.

    Before each compiled call the random-number generators' states and the module's buffers
    are kept (a few small copies): a call that fails after a first graph ran (a graph break:
    ESPnet's SpecAugment makes one) is run again eagerly from the same state, so it draws the
    same random numbers and updates BatchNorm's statistics once, as an eager call would.
    """

    def __init__(self, module: torch.nn.Module, compiled_call: Callable):
        self.module = module
        self.compiled_call = compiled_call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        rng = _rng_states()
        buffers = [buffer.detach().clone() for buffer in self.module.buffers()]
        try:
            return self.compiled_call(*args, **kwargs)
        except COMPILE_ERRORS as err:
            reason = _RECOMPILE_LIMIT.reason if isinstance(err, FailOnRecompileLimitHit) else None
            logging.warning(
                f"compiling the model failed ({reason or _one_line(err)}): training goes on eagerly from this step, "
                "its losses and checkpoints eager's; --compile false (compile: false) trains eagerly from the start"
            )
        self.module._compiled_call_impl = None
        _set_rng_states(rng)
        with torch.no_grad():
            for buffer, kept in zip(self.module.buffers(), buffers):
                buffer.copy_(kept)
        return self.module._call_impl(*args, **kwargs)


def _one_line(err: BaseException) -> str:
    """The error's type and first line, with the next where it ends with a colon (``backend='inductor'
    raised:`` then the compiler's own error): dynamo's messages run to pages."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else "".join(lines[:1])
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _RecompileLimitNotice(logging.Filter):
    """Holds back dynamo's five-line warning on reaching a recompilation limit, keeping what it names:
    :class:`EagerFallback`'s one line says it (dynamo then raises ``FailOnRecompileLimitHit``)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith("torch._dynamo hit config.")):
            return True
        limit, value, function = record.args[:3]
        self.reason = f"FailOnRecompileLimitHit: torch._dynamo.config.{limit} ({value}) reached recompiling {function}"
        return False


_RECOMPILE_LIMIT = _RecompileLimitNotice()


def _rng_states() -> tuple[torch.Tensor, torch.Tensor | None]:
    """The CPU's generator and the current GPU's (the model's: one GPU per process), if CUDA is in use."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_states(states: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    cpu, cuda = states
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


def _apply_settings() -> None:
    for name, value in DYNAMO_SETTINGS.items():
        setattr(torch._dynamo.config, name, value)
    for name, value in FUNCTORCH_SETTINGS.items():
        setattr(torch._functorch.config, name, value)
    logger = logging.getLogger("torch._dynamo.convert_frame")
    if _RECOMPILE_LIMIT not in logger.filters:
        logger.addFilter(_RECOMPILE_LIMIT)
