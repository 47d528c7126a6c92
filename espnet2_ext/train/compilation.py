"""``torch.compile`` for training: the model compiled in place, its checkpoint keys unchanged.

The config key ``compile`` (``st_train --compile``) takes ``true``, ``false`` or
``auto``: compiled on GPUs (``ngpu > 0``), eager on the CPU, where compiling costs
minutes and the step is not faster (``bench/compile_proxies.py``).
"""

import argparse
from collections.abc import Callable

import torch

COMPILE_SETTINGS = ("auto", "true", "false")

# Dynamo settings the model is compiled with. Scalar reads stay in the graph instead of
# cutting it; the model's float settings (epsilons, dropout rates, loss weights) are
# constants of the graph, not inputs turned into tensors and checked at every call; and a
# model sees a few graph variants (training and evaluation, batches of one utterance and of
# more): they must never exhaust dynamo's budget, after which it would quietly run the
# model eagerly.
DYNAMO_SETTINGS = dict(capture_scalar_outputs=True, specialize_float=True, recompile_limit=32)


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


def compile_model(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """Compile ``model``'s forward in place (``nn.Module.compile``), as :func:`compiled` does, and return it.

    In place, the state dict keeps its keys (``torch.compile(model)`` would wrap
    it and prefix every key with ``_orig_mod.``): checkpoints load into eager and
    compiled models alike. Sets :data:`DYNAMO_SETTINGS` for the process.
    """
    _apply_settings()
    model.compile(backend=backend, dynamic=True)
    return model


def _apply_settings() -> None:
    for name, value in DYNAMO_SETTINGS.items():
        setattr(torch._dynamo.config, name, value)
