"""Deferring a module's import until it is used, for ESPnet's imports our model never needs.

ESPnet's task modules import its tokenizer registry, whose phoneme tokenizer imports
``g2p_en`` at module level, and importing ``g2p_en`` makes NLTK try to download its
data: a network access from every training process, and a screen of
``[nltk_data] Error loading ...`` lines where there is no network. ESPnet's MT
helpers import ``nltk`` itself for a BLEU they compute only when asked. Our model tokenises with SentencePiece and scores with sacreBLEU; a config
that does build a phoneme tokenizer still gets the real module, imported at the
first use of one of its names.

Not ``importlib.util.LazyLoader``: its module loads on *any* attribute access, and
``inspect.getmodule`` (which torch calls while registering operators) reads
``__file__`` of every module in ``sys.modules``.
"""

import importlib
import importlib.util
import sys
import types
from typing import Any


class DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module not yet run; its dunder names (``__file__``,
    ``__spec__``, ``__path__``) are the real ones, any other name imports the real module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real_module(), name)

    def _real_module(self) -> types.ModuleType:
        real = self.__dict__.get("_real")
        if real is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
            self.__dict__["_real"] = real
        return real


def defer_import(name: str) -> None:
    """Make ``import name`` succeed now and run the module only when one of its names is used.

    Does nothing if the module is already imported or not installed (its users then
    fail at import as before).
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    module = DeferredModule(name)
    module.__spec__ = spec
    module.__file__ = spec.origin
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = module
