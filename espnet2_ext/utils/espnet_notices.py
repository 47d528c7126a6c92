"""ESPnet's import-time flash-attention notice, kept off our programs' output.

``espnet/nets/pytorch_backend/transformer/attention.py`` prints ``Failed to import
Flash Attention, using ESPnet default: ...`` on stdout whenever ``flash_attn`` is not
installed. Our models never use flash-attention (a CUDA-only extra of ESPnet's
attention, off by default), yet every program that builds one said so, on the
stdout where ``translate`` writes its translations.

That module is first imported by whichever comes first of ESPnet's task registry,
its decoders, or our encoder, decoder and attention; rather than guard each of
them, :func:`silence_flash_attention_notice` (run by ``espnet2_ext/__init__.py``,
before any of our modules) registers an import hook for that one module: it runs as
usual with its stdout filtered, the notice's lines dropped and every other line
passed on; stderr (warnings, logging, errors) is left alone.
"""

import contextlib
import importlib.abc
import importlib.machinery
import io
import sys
import types
from collections.abc import Sequence
from typing import Any

ATTENTION_MODULE = "espnet.nets.pytorch_backend.transformer.attention"
NOTICE = "Failed to import Flash Attention, using ESPnet default: "


def without_notice(text: str) -> str:
    """``text`` without the lines that are the notice."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(NOTICE))


class _FilteredLoader(importlib.abc.Loader):
    """Runs the module with the real loader, stdout captured, then passes on all but the notice."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                self.loader.exec_module(module)
        finally:  # also when the import fails: what it printed may explain why
            sys.stdout.write(without_notice(captured.getvalue()))

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... (tracebacks, inspect)
        return getattr(self.loader, name)


class _AttentionFinder(importlib.abc.MetaPathFinder):
    """Finds the attention module with the other finders and hands it the filtering loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ATTENTION_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _FilteredLoader(spec.loader)
                return spec
        return None


def silence_flash_attention_notice() -> None:
    """Drop the notice from the attention module's import in this process (once is enough)."""
    if not any(isinstance(finder, _AttentionFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AttentionFinder())
