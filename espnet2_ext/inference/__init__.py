"""Translating with a trained model: :class:`Speech2Translation` and its results.

The names are loaded on first use, so that importing a light module of this
package (input lists, output formats) does not import torch.
"""

import importlib
from typing import Any

_EXPORTS = ("SegmentTranslation", "Speech2Translation", "Translation", "TranslationResult")
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module("espnet2_ext.inference.speech2translation"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
