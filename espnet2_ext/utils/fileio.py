"""Writing files so that a killed or failed run never leaves half of one behind."""

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


@contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds.

    Readers see the old file or the complete new one. On error the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: Union[str, Path], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(path: Union[str, Path]) -> Iterator[Path]:
    """An empty directory ``.<name>.tmp`` beside ``path``, swapped in for ``path`` when the block succeeds.

    A directory cannot replace another in one rename, so the old one is first moved
    to ``.<name>.old``; between the two renames ``path`` is briefly absent, never
    half written. Leftovers of a killed run (both names are fixed) are removed first;
    on error the temporary directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
