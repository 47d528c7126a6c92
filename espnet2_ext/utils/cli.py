"""How our programs fail: bad input or options end as one ``ERROR:`` line and exit status 1.

A program raises :class:`CommandError` (or a subclass naming its domain) with a
message that names the file, line or utterance at fault; its ``main`` is wrapped
in :func:`command`, and its parser mixes in :class:`ErrorsRaise` so that argument
errors take the same path instead of argparse's usage dump and status 2.

A long-running program also says how to resume when it is stopped: with
``command(on_interrupt=...)``, Ctrl-C and SIGTERM unwind it like an exception (its
``finally`` blocks stop workers and remove temp files) and end as one
``INTERRUPTED`` line instead of a ``KeyboardInterrupt`` traceback.
"""

import functools
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, NoReturn, Optional, Sequence, Type

Main = Callable[[Optional[Sequence[str]]], Optional[int]]


class CommandError(Exception):
    """Bad input or options; :func:`command` prints the message as one ``ERROR:`` line."""


class ErrorsRaise:
    """Mix into an ``argparse.ArgumentParser`` (before it): argument errors raise :class:`CommandError`."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


class Interrupted(KeyboardInterrupt):
    """A termination signal raised as an exception, so the program cleans up as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> NoReturn:
    raise Interrupted(signum)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Interrupted` instead of killing the process outright.

    Killed outright, a program leaves its workers' temp files and its semaphores
    (``resource_tracker: There appear to be N leaked semaphore objects``) behind.
    Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted_status(err: KeyboardInterrupt, how_to_resume: str) -> int:
    """Print the one ``INTERRUPTED`` line; the status is the shell's 128 + signal number."""
    signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
    print(f"INTERRUPTED by {name}: {how_to_resume}", file=sys.stderr)
    return 128 + signum


def command(
    *also: Type[Exception], on_interrupt: Optional[str] = None
) -> Callable[[Main], Callable[[Optional[Sequence[str]]], int]]:
    """Wrap ``main(argv)``: :class:`CommandError` and the ``also`` exceptions become
    ``ERROR: <message>`` on stderr and exit status 1; otherwise main's status (None: 0).

    With ``on_interrupt`` (what a re-run does, e.g. "run the same command again to
    resume"), Ctrl-C and SIGTERM print ``INTERRUPTED by <signal>: <on_interrupt>``
    and give status 130 / 143, after main's own cleanup has run.
    """

    def wrap(main: Main) -> Callable[[Optional[Sequence[str]]], int]:
        @functools.wraps(main)
        def run(argv: Optional[Sequence[str]] = None) -> int:
            try:
                with sigterm_interrupts() if on_interrupt else nullcontext():
                    status = main(argv)
            except (CommandError, *also) as err:
                print(f"ERROR: {err}", file=sys.stderr)
                return 1
            except KeyboardInterrupt as err:
                if on_interrupt is None:
                    raise
                return _interrupted_status(err, on_interrupt)
            return 0 if status is None else status

        return run

    return wrap
