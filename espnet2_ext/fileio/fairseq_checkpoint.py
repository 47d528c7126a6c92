"""Reading fairseq checkpoints and dictionaries without fairseq, omegaconf or arbitrary code.

A fairseq checkpoint is a pickle: ``{"model": state dict, "args": argparse.Namespace
or None, "cfg": omegaconf DictConfig or None, ...}``. Unpickling it normally needs
fairseq and omegaconf installed and would run whatever callables the file names.
:func:`read_fairseq_checkpoint` unpickles with a restricted class lookup instead:
tensors, plain containers and numbers load as usual; objects of fairseq's,
omegaconf's and argparse's classes become inert stand-ins holding their pickled
state, turned into plain dicts afterwards; any other callable the file names
stops the load.
"""

import _compat_pickle
import codecs
import collections
import copyreg
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from espnet2_ext.fileio.input_file import not_a_file
from espnet2_ext.fileio.text_position import not_utf8_file

# Modules whose objects are only data to us: never imported, never called.
_INERT_MODULES = ("omegaconf", "fairseq", "examples", "typing", "argparse", "enum", "pathlib", "hydra")
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 stores bytes
    **{("builtins", t.__name__): t for t in (object, dict, list, tuple, set, frozenset, int, float, complex, bool, str, bytes, bytearray, slice)},
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    ("torch", "Size"): torch.Size,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
}
# numpy's classes and rebuild functions an array or scalar pickles with, and their modules.
_NUMPY_GLOBALS = {"scalar", "_reconstruct", "dtype", "ndarray"}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.dtypes")


class FairseqCheckpointError(Exception):
    """A file that is not a fairseq checkpoint or dictionary we can read."""


class _Refused(pickle.UnpicklingError):
    """The pickle names a callable outside the allowed data types."""


class _Inert:
    """Stand-in for an object of a class we must not import: keeps what the pickle gives it."""

    qualname = ""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _inert_class(module: str, name: str) -> type:
    return type(name, (_Inert,), {"qualname": f"{module}.{name}"})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 writes Python 2 names
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[module, name]
        if module.split(".")[0] in _INERT_MODULES:
            return _inert_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        # Protocol 4 resolves a dotted name attribute by attribute (``_add_dtype_helper.__builtins__.get``
        # is ``eval``): only plain names, each one a numpy data type or rebuild function.
        if module in _NUMPY_MODULES and name.isidentifier() and (
            name in _NUMPY_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType"))
        ):
            return super().find_class(module, name)
        raise _Refused(f"it names {module}.{name}, which a checkpoint has no reason to")


class _RestrictedPickle:
    """The ``pickle_module`` torch.load is given."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load())
    __name__ = "restricted_pickle"


def plain(value: Any) -> Any:
    """Stand-ins of Namespaces and omegaconf nodes as plain dicts, lists and values."""
    if isinstance(value, _Inert):
        state = value.state
        if isinstance(state, dict) and "_content" in state:  # omegaconf DictConfig / ListConfig
            return plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:  # omegaconf value node
            return plain(state["_val"])
        if isinstance(state, dict):  # argparse.Namespace and other plain objects
            return {key: plain(item) for key, item in state.items()}
        if state is None and value.args:  # enums and other values rebuilt from arguments
            return plain(value.args[0]) if len(value.args) == 1 else [plain(a) for a in value.args]
        return value.qualname
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def read_fairseq_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's ``model`` (state dict) and ``args`` (a dict, from ``args`` or ``cfg.model``).

    Raises:
        FairseqCheckpointError: missing or unreadable file, a pickle naming code
            outside the allowed data types, or no model and arguments in it.
    """
    path = Path(path)
    problem = not_a_file(path, "checkpoint", "an FBK-fairseq checkpoint file (ckp.pt)")
    if problem:
        raise FairseqCheckpointError(problem)
    try:
        with path.open("rb") as stream:
            checkpoint = torch.load(stream, map_location="cpu", pickle_module=_RestrictedPickle, weights_only=False)
    except _Refused as err:
        raise FairseqCheckpointError(f"{path}: refused to unpickle: {err}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, io.UnsupportedOperation,
            AttributeError, TypeError) as err:
        raise FairseqCheckpointError(f"{path} is not a readable PyTorch checkpoint: {err}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise FairseqCheckpointError(f"{path} is not a fairseq checkpoint: no 'model' state dict in it")
    args = plain(checkpoint.get("args"))
    if not isinstance(args, dict):
        cfg = plain(checkpoint.get("cfg"))
        args = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(args, dict):
        raise FairseqCheckpointError(f"{path} is not a fairseq checkpoint: neither 'args' nor 'cfg.model' in it")
    state = checkpoint["model"]
    not_tensors = sorted(name for name, value in state.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise FairseqCheckpointError(f"{path}: model entries that are not tensors: {', '.join(not_tensors[:3])}")
    return {"model": state, "args": args}


FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def read_fairseq_dictionary(path: str | Path) -> list[str]:
    """A fairseq ``dict.txt``'s symbols, in file order (fairseq puts ``<s> <pad> </s> <unk>`` before them).

    Each line is ``<symbol> <count>``, optionally followed by ``#fairseq:overwrite``
    (fairseq's ``Dictionary.add_from_file``).
    """
    path = Path(path)
    problem = not_a_file(path, "dictionary", "a fairseq dictionary file (dict.txt)")
    if problem:
        raise FairseqCheckpointError(problem)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FairseqCheckpointError(not_utf8_file(path)) from None
    symbols: list[str] = []
    seen = set(FAIRSEQ_SPECIALS)
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip().rsplit(" ", 1)
        overwrite = len(fields) == 2 and fields[1] == "#fairseq:overwrite"
        if overwrite:
            fields = fields[0].rsplit(" ", 1)
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit() or not fields[0]:
            raise FairseqCheckpointError(f"{path}:{number}: expected '<symbol> <count>', got {line!r}")
        if fields[0] in seen and not overwrite:
            raise FairseqCheckpointError(f"{path}:{number}: duplicate symbol {fields[0]!r}")
        seen.add(fields[0])
        symbols.append(fields[0])
    return symbols
