"""Progress bars that are drawn only for a person watching a terminal.

tqdm redraws its bar with carriage returns; written into a log file (``make demo >
log``, a job scheduler's output) each redraw becomes text, and the log fills with
bars. Every progress bar of ours goes through :func:`progress_bar`, which draws on
stderr only when stderr is a terminal.
"""

import sys
from typing import Any

from tqdm import tqdm


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (False when it is closed or replaced by a non-file)."""
    return sys.stderr is not None and sys.stderr.isatty()


def progress_bar(*, disable: bool = False, bar_class: type[tqdm] = tqdm, **tqdm_kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled unless stderr is a terminal; ``disable`` is the
    caller's own reason not to draw (e.g. too few items to be worth a bar).

    A disabled bar takes ``update`` and ``close`` as usual and does nothing (not even
    count: read progress from the caller's own state, not ``bar.n``).
    """
    return bar_class(disable=disable or not stderr_is_terminal(), file=sys.stderr, **tqdm_kwargs)


class _SecondsBar(tqdm):
    """Shows its count to the tenth: a sum of float seconds drifts, and tqdm would show
    ``327.70000000000005/813.3`` (its bar format is ignored on a terminal of unknown width)."""

    @property
    def format_dict(self) -> dict[str, Any]:
        return {**super().format_dict, "n": round(self.n, 1)}


def seconds_bar(total: float, *, disable: bool = False) -> tqdm:
    """:func:`progress_bar` counting seconds of audio, shown to the tenth."""
    return progress_bar(total=round(total, 1), unit="s", disable=disable, bar_class=_SecondsBar)
