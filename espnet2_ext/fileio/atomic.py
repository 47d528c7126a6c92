"""Writing files so that a killed or failed run never leaves half of one behind.

Every program of the project writes its outputs through these helpers: a reader
sees the previous file (or directory) or the complete new one, never a mix.
"""

import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, *, parents: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds.

    Readers see the old file or the complete new one. On error (or Ctrl-C) the
    temporary file is removed and ``path`` is left as it was. A replaced file keeps
    its permission bits, as an in-place write would. ``parents=False``: a missing
    directory is an error (``FileNotFoundError`` when the block opens the path),
    not created.
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    """``path`` holds ``text`` (UTF-8, ``\\n`` line ends as given), or is left as it was."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")


def write_lines_atomically(path: str | Path, lines: Iterable[str]) -> None:
    """``path`` holds ``lines``, each ended by ``\\n``; written whole or not at all."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as stream:
        stream.writelines(f"{line}\n" for line in lines)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
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
