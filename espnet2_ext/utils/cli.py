"""How our programs fail: bad input or options end as one ``ERROR:`` line and exit status 1.

A program raises :class:`CommandError` (or a subclass naming its domain) with a
message that names the file, line or utterance at fault; its ``main`` is wrapped
in :func:`command`, and its parser mixes in :class:`ErrorsRaise` so that argument
errors take the same path instead of argparse's usage dump and status 2.
"""

import functools
import sys
from typing import Callable, NoReturn, Optional, Sequence, Type

Main = Callable[[Optional[Sequence[str]]], Optional[int]]


class CommandError(Exception):
    """Bad input or options; :func:`command` prints the message as one ``ERROR:`` line."""


class ErrorsRaise:
    """Mix into an ``argparse.ArgumentParser`` (before it): argument errors raise :class:`CommandError`."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


def command(*also: Type[Exception]) -> Callable[[Main], Callable[[Optional[Sequence[str]]], int]]:
    """Wrap ``main(argv)``: :class:`CommandError` and the ``also`` exceptions become
    ``ERROR: <message>`` on stderr and exit status 1; otherwise main's status (None: 0)."""

    def wrap(main: Main) -> Callable[[Optional[Sequence[str]]], int]:
        @functools.wraps(main)
        def run(argv: Optional[Sequence[str]] = None) -> int:
            try:
                status = main(argv)
            except (CommandError, *also) as err:
                print(f"ERROR: {err}", file=sys.stderr)
                return 1
            return 0 if status is None else status

        return run

    return wrap
