"""Subtitles of a translation: blocks within the common guidelines, timed by when their words were spoken.

- :mod:`.limits`: the guidelines' limits (lines, characters per line, reading speed, time on screen);
- :mod:`.timing`: each word's time from the decoder's cross-attention, as SBAAM does;
- :mod:`.blocks`: words into blocks and lines, and the blocks' times, as pure functions.

Files: :mod:`espnet2_ext.fileio.subtitle_files` writes blocks as SRT or WebVTT;
:meth:`~espnet2_ext.inference.speech2translation.TranslationResult.subtitles` gives the
blocks of a translation.
"""

from espnet2_ext.subtitles.blocks import TIMINGS, Block, TimedSegment, build_blocks
from espnet2_ext.subtitles.limits import SubtitleLimits

__all__ = ["DEFAULT_TIMING", "TIMINGS", "Block", "SubtitleLimits", "TimedSegment", "build_blocks"]

# Proportional: on the demo's talks its SubER is 0.15 to 0.5 better than the attention's, which halves
# the blocks' start errors instead (docs/translate.md, Subtitles; bench/subtitle_timing.py measures it).
DEFAULT_TIMING = "proportional"
