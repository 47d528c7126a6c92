"""Reading fairseq checkpoints: data loads, and no code from the file ever runs."""

import argparse
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet2_ext.fileio.fairseq_checkpoint import FairseqCheckpointError, read_fairseq_checkpoint


def _unicode(text: str) -> bytes:
    """Pickle's SHORT_BINUNICODE opcode pushing ``text``."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def dotted_name_payload(code: str) -> bytes:
    """A protocol-4 pickle calling ``eval(code)``, ``eval`` reached by a dotted global name:
    ``numpy.dtypes._add_dtype_helper.__builtins__.get`` is the builtins' ``dict.get``."""
    return (
        b"\x80\x04" + _unicode("numpy.dtypes") + _unicode("_add_dtype_helper.__builtins__.get") + b"\x93"
        + _unicode("eval") + b"\x85R"  # get("eval")
        + _unicode(code) + b"\x85R"  # eval(code)
        + b"."
    )


class _System:
    """What a booby-trapped checkpoint holds: unpickling it calls ``os.system``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def touch(marker: Path) -> str:
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


@pytest.mark.parametrize("how", ["dotted global, legacy format", "dotted global, zip format", "os.system"])
def test_checkpoint_that_would_run_code_is_refused_and_runs_none(tmp_path, how):
    marker = tmp_path / "marker"
    path = tmp_path / "ckp.pt"
    if how == "dotted global, legacy format":  # torch's legacy reader unpickles the file's start first
        path.write_bytes(dotted_name_payload(touch(marker)))
    elif how == "dotted global, zip format":
        torch.save({"model": {}, "args": None}, path)
        _replace_zip_member(path, "data.pkl", dotted_name_payload(touch(marker)))
    else:
        torch.save({"model": {"w": torch.zeros(2)}, "args": _System(f"touch {marker}")}, path)
    with pytest.raises(FairseqCheckpointError, match=f"^{path}: refused to unpickle: it names "):
        read_fairseq_checkpoint(path)
    assert not marker.exists()


def _replace_zip_member(path: Path, suffix: str, data: bytes) -> None:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(name for name in members if name.endswith(suffix))
    members[name] = data
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_values_in_the_arguments_still_load(tmp_path, protocol):
    args = argparse.Namespace(lr=np.float64(0.1), steps=np.int64(3), sizes=np.arange(3), dtype=np.dtype("float32"))
    path = tmp_path / "ckp.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "args": args}, path, pickle_protocol=protocol)
    loaded = read_fairseq_checkpoint(path)["args"]
    assert loaded["lr"] == 0.1 and loaded["steps"] == 3 and loaded["dtype"] == np.float32
    assert loaded["sizes"].tolist() == [0, 1, 2]


def test_payloads_do_run_code_when_unrestricted(tmp_path):
    """The payloads above are real: plain pickle runs them."""
    marker = tmp_path / "marker"
    pickle.loads(dotted_name_payload(touch(marker)))
    assert marker.exists()
