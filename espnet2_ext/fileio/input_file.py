"""Saying why an input path cannot be read as a file: missing, a directory, or no regular file.

"not found" for a directory that is there sends the user looking for a file that
exists; naming what the path is, and what was expected, points at the mix-up.
"""

from pathlib import Path


def not_a_file(path: Path, what: str, expected: str) -> str | None:
    """Why ``path`` (given as ``what``, e.g. "checkpoint") is not ``expected``; None when it is a file.

    Example: ``not_a_file(Path("ckpts"), "checkpoint", "a fairseq checkpoint file")`` is
    ``"checkpoint ckpts is a directory; expected a fairseq checkpoint file"`` when ``ckpts/`` exists.
    """
    if path.is_file():
        return None
    if path.is_dir():
        return f"{what} {path} is a directory; expected {expected}"
    if path.exists():  # a FIFO, a device: read once or never, not what an input file must be
        return f"{what} {path} is not a regular file; expected {expected}"
    return f"{what} {path} not found"
