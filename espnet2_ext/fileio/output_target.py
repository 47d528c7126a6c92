"""A program's line output, written where the user says, whatever kind of file that is.

``--output`` may name a new or regular file, a symlink, a FIFO, a character device
(/dev/null, /dev/full), ``/dev/stdout`` or the ``/dev/fd/N`` that bash's ``>(cmd)``
passes. A regular file is replaced atomically (a temporary file beside it, renamed
over it), so a failed or interrupted run leaves the old one; renaming over the others
would replace a FIFO's or device's node by a plain file (whose reader never sees a
line), so they are written directly. A symlink is written through: its final target
is replaced, the link stays. Every line is flushed as it is written, so a reader of a
stream sees results as they come; a failed write is one :class:`OutputError`, never
a traceback nor a run that ends well with its output lost.
"""

import fcntl
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, NoReturn, TextIO

from espnet2_ext.fileio.atomic import atomic_path
from espnet2_ext.utils.cli import CommandError, output_file_problem

_MAX_LINKS = 40  # Linux's limit (ELOOP)
_FD_PATH = re.compile(r"/dev/fd/(?P<fd>\d+)|/proc/(?P<pid>self|thread-self|\d+)/fd/(?P<proc_fd>\d+)")
_STD_PATHS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


class OutputError(CommandError):
    """The output cannot be opened or a write to it failed (disk full, reader gone, ...)."""


class _Target(NamedTuple):
    """Where writing to a path lands. ``kind``: ``stdout``; ``fd`` (an open descriptor of
    ours); ``stream`` (FIFO, character device); ``file`` (regular or new, written
    atomically); ``refused`` (``problem`` says why)."""

    kind: str
    path: str  # the final target, symlinks followed; as given for stdout and fd
    fd: int | None = None
    problem: str | None = None


def _fd_number(path: str) -> int | None:
    """N for ``/dev/fd/N``, ``/proc/self/fd/N``, ``/dev/stdout`` ...: paths naming our own
    descriptors, which are reused (dup) rather than reopened: reopening a regular file
    there would truncate what the shell's ``>>`` opened, and a socket cannot be reopened."""
    name = os.path.normpath(os.path.abspath(path))
    if name in _STD_PATHS:
        return _STD_PATHS[name]
    match = _FD_PATH.fullmatch(name)
    if match is None or match["pid"] not in (None, "self", "thread-self", str(os.getpid())):
        return None  # another process's descriptors are reopened like any file
    return int(match["fd"] or match["proc_fd"])


def _resolve(path: str) -> _Target:
    """Follow ``path``'s symlinks, link by link (a relative link from its own directory),
    to a descriptor of ours or a final path, and tell what kind of file it is."""
    if not path:
        return _Target("refused", path, problem="'' (empty) is not a file name")
    current = path
    for _ in range(_MAX_LINKS):
        fd = _fd_number(current)
        if fd is not None:
            return _Target("stdout" if fd == 1 else "fd", path, fd)
        if not os.path.islink(current):
            break
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    else:
        return _Target("refused", path, problem=f"{path}: too many levels of symbolic links")
    try:
        mode = os.stat(current).st_mode
    except OSError:  # new, or its directory is missing: output_file_problem says which
        return _Target("file", current)
    if stat.S_ISREG(mode):
        return _Target("file", current)
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return _Target("stream", current)
    if stat.S_ISDIR(mode):
        return _Target("refused", current, problem=f"{current} is a directory; expected a file to write")
    what = "a block device" if stat.S_ISBLK(mode) else "a socket"
    return _Target("refused", current, problem=f"{current} is {what}; expected a file, a FIFO or a character device")


def _fd_problem(path: str, fd: int) -> str | None:
    """Why descriptor ``fd`` (named by ``path``) cannot take our output, or None."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        return f"{path}: file descriptor {fd} is not open"
    if flags & os.O_ACCMODE == os.O_RDONLY:
        return f"{path}: file descriptor {fd} is not open for writing"
    return None


def check_output_target(path: str, option: str) -> None:
    """Refuse, before any work, an output that :func:`open_output` could not write.

    Unlike other programs' outputs, a missing directory is refused, not created (a
    typo there should not grow a tree). A symlink is judged by its final target.

    Raises:
        CommandError: one line, ``"<option> <path>[ -> <final target>]<what is wrong>"``.
    """
    target = _resolve(path)
    if target.kind in ("stdout", "fd"):
        problem = _fd_problem(path, target.fd)
    elif target.kind == "refused":
        problem = target.problem
    elif target.kind == "stream":
        problem = None if os.access(target.path, os.W_OK) else f"{target.path} is not writable"
    else:
        problem = output_file_problem(Path(target.path), parents=False)
    if problem is not None:
        link = "" if target.path == path else f"{path} -> "
        raise CommandError(f"{option} {link}{problem}")


class LineWriter:
    """Writes one line at a time to an open stream, flushed at once; a failed write
    goes to ``fail``, which raises."""

    def __init__(self, stream: TextIO, fail: Callable[[OSError], NoReturn]) -> None:
        self._stream = stream
        self._fail = fail

    def write(self, line: str) -> None:
        """``line`` and a newline; a reader sees them before this returns."""
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except OSError as err:
            self._fail(err)

    def flush(self) -> None:
        """What the stream still holds (nothing, after :meth:`write`); at the block's end."""
        try:
            self._stream.flush()
        except OSError as err:
            self._fail(err)


@contextmanager
def open_output(path: str | None) -> Iterator[LineWriter]:
    """A :class:`LineWriter` to ``path`` (None: stdout), written as the kind of file there
    requires (see the module's docstring); ``/dev/stdout`` is stdout.

    A regular file (also a new one, and a symlink's final target) appears, with the
    old file's permission bits, only when the block ends without an exception; until
    then readers see the old file, and on any exception or Ctrl-C the temporary file
    is removed. Its directory must exist (:func:`check_output_target` says so first).
    A FIFO is opened as the shell's ``>`` does: waiting for its reader.

    Raises:
        OutputError: the output cannot be opened, or a write, flush or rename failed
            (disk full, EIO, a FIFO's reader gone); one line, e.g. ``writing to stdout
            failed: No space left on device``. For stdout, fd 1 then points to
            /dev/null, so Python's own flush at exit cannot fail a second time.
        BrokenPipeError: stdout's reader has gone (``| head -1``); fd 1 then points to
            /dev/null too, and the caller only picks its status (141, as for SIGPIPE).
    """
    target = _resolve(path) if path is not None else _Target("stdout", "stdout", 1)
    if target.kind == "refused":
        raise OutputError(f"cannot write {target.problem}")
    if target.kind == "stdout":
        yield from _stdout_lines()
    elif target.kind == "file":
        yield from _atomic_lines(target.path, path)
    else:
        yield from _direct_lines(target, path)


def _stdout_lines() -> Iterator[LineWriter]:
    if sys.stdout is None:  # started with fd 1 closed
        raise OutputError("writing to stdout failed: stdout is closed")
    writer = LineWriter(sys.stdout, _stdout_failed)
    yield writer
    writer.flush()


def _stdout_failed(err: OSError) -> NoReturn:
    """fd 1 to /dev/null, so the data still buffered cannot fail again at exit; then raise."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # a Python stream in sys.stdout's place: no descriptor of ours
        fd = None
    if fd is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    if isinstance(err, BrokenPipeError):
        raise err
    raise OutputError(f"writing to stdout failed: {err.strerror}") from None


def _write_failed(shown: str) -> Callable[[OSError], NoReturn]:
    def fail(err: OSError) -> NoReturn:
        raise OutputError(f"writing to {shown} failed: {err.strerror}") from None

    return fail


def _open(opener: Callable[[], TextIO], shown: str) -> TextIO:
    try:
        return opener()
    except OSError as err:
        raise OutputError(f"cannot write {shown}: {err.strerror}") from None


def _direct_lines(target: _Target, shown: str) -> Iterator[LineWriter]:
    """Straight into a FIFO, a device or a descriptor of ours (a duplicate, closed after)."""
    if target.fd is not None:
        problem = _fd_problem(shown, target.fd)
        if problem is not None:
            raise OutputError(f"cannot write {problem}")
        stream = _open(lambda: os.fdopen(os.dup(target.fd), "w", encoding="utf-8", newline="\n"), shown)
    else:
        stream = _open(lambda: open(target.path, "w", encoding="utf-8", newline="\n"), shown)
    with _closing(stream, _write_failed(shown)) as writer:
        yield writer


def _atomic_lines(final: str, shown: str) -> Iterator[LineWriter]:
    """Into a temporary file beside ``final``, renamed over it at the end."""
    fail = _write_failed(shown)
    written = False
    try:
        with atomic_path(final, parents=False) as tmp:
            stream = _open(lambda: open(tmp, "w", encoding="utf-8", newline="\n"), shown)
            with _closing(stream, fail) as writer:
                yield writer
            written = True
    except OSError as err:  # the rename: the block's own errors pass untouched
        if not written:
            raise
        fail(err)


@contextmanager
def _closing(stream: TextIO, fail: Callable[[OSError], NoReturn]) -> Iterator[LineWriter]:
    """A writer to ``stream``, closed after the block; a failed last flush is ``fail``,
    unless the block already failed (then the close only releases the descriptor)."""
    try:
        yield LineWriter(stream, fail)
    except BaseException:
        try:
            stream.close()
        except OSError:
            pass
        raise
    try:
        stream.close()
    except OSError as err:
        fail(err)
