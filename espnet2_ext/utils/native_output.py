"""Capturing what C libraries print straight to a file descriptor.

libmpg123 (inside libsndfile) and mweralign's C++ core write to the process's
stdout or stderr themselves, below Python's ``sys.stdout``/``sys.stderr``, so
``contextlib.redirect_stderr`` cannot hold them back: their lines would come
before or among our own one-line messages. :func:`captured_fd` points the
descriptor at a temporary file for the duration of a call and hands back the text.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Captured", "captured_fd"]


class Captured:
    """What was written to the descriptor inside the block (set when the block ends)."""

    text: str = ""


@contextmanager
def captured_fd(fd: int) -> Iterator[Captured]:
    """Point file descriptor ``fd`` (1: stdout, 2: stderr) at a temporary file inside the block.

    Python's own buffered stream for that descriptor is flushed first, so nothing of
    ours written before the block is held back and captured by mistake.
    """
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    if stream is not None:
        stream.flush()
    captured = Captured()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            if stream is not None:
                stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")
