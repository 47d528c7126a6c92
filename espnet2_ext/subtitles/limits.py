"""What a subtitle block may be: the common guidelines' limits (TED's, Netflix's).

At most 2 lines of at most 42 characters, read at no more than 21 characters per
second, on screen for at least 1 s and at most 7 s. Characters are counted as FBK's
compliance script and Netflix count them: every character of a line, its spaces
included, the line break not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MIN_LINE_CHARS", "SubtitleLimits"]

MIN_LINE_CHARS = 16  # Netflix's shortest line limit (Chinese, Japanese): fewer would break most words


@dataclass(frozen=True)
class SubtitleLimits:
    """The limits blocks are built within (see :func:`~espnet2_ext.subtitles.blocks.build_blocks`).

    Lines, characters per line and the longest time on screen always hold, but for a
    word longer than ``max_chars``, which gets a line of its own (lines break between
    words only). The reading speed and the shortest time hold wherever the speech
    leaves the time: a block stays within its segment, so a segment whose translation
    is faster than ``max_cps`` over its whole length, or shorter than ``min_seconds``,
    cannot meet them; its blocks then share its time by their characters.

    Args:
        max_chars: characters per line (>= :data:`MIN_LINE_CHARS`).
        max_lines: lines per block (>= 1).
        max_cps: characters per second a block is read at, at most (> 0).
        min_seconds: shortest time a block is on screen (>= 0).
        max_seconds: longest time a block is on screen (>= ``min_seconds``, and long
            enough to read a full line at ``max_cps``).
    """

    max_chars: int = 42
    max_lines: int = 2
    max_cps: float = 21.0
    min_seconds: float = 1.0
    max_seconds: float = 7.0

    def __post_init__(self) -> None:
        for name in ("max_chars", "max_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        for name in ("max_cps", "min_seconds", "max_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.max_chars < MIN_LINE_CHARS:
            raise ValueError(
                f"max_chars {self.max_chars}: a line must hold at least {MIN_LINE_CHARS} characters "
                "(lines break between words only, and most words would not fit)"
            )
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {self.max_lines}")
        if self.max_cps <= 0:
            raise ValueError(f"max_cps must be > 0, got {self.max_cps:g}")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds:g}")
        if self.max_seconds < self.min_seconds:
            raise ValueError(f"max_seconds ({self.max_seconds:g}) must be >= min_seconds ({self.min_seconds:g})")
        if self.max_block_chars < self.max_chars:
            raise ValueError(
                f"max_cps {self.max_cps:g} with max_seconds {self.max_seconds:g} leaves {self.max_block_chars} "
                f"characters per block, fewer than one line of max_chars {self.max_chars}"
            )

    @property
    def min_ms(self) -> int:
        return math.ceil(self.min_seconds * 1000)

    @property
    def max_ms(self) -> int:
        return math.floor(self.max_seconds * 1000)

    @property
    def max_block_chars(self) -> int:
        """The most characters a block can show at ``max_cps`` in ``max_seconds``."""
        return math.floor(self.max_cps * self.max_ms / 1000)

    def reading_ms(self, chars: int) -> int:
        """The time ``chars`` characters need on screen: ``min_seconds``, or more at ``max_cps``."""
        return max(self.min_ms, math.ceil(chars * 1000 / self.max_cps))
