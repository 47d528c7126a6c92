"""Subtitle blocks as SRT or WebVTT text, written by the field's own libraries (``srt``, ``webvtt-py``).

SRT numbers its blocks from 1 and writes ``HH:MM:SS,mmm``; WebVTT starts with its
``WEBVTT`` header and writes ``HH:MM:SS.mmm``. No blocks (a recording without speech)
give an empty SRT and a WebVTT of its header alone, both valid files.
"""

import datetime
from collections.abc import Sequence

import srt
import webvtt
from webvtt.models import Timestamp

from espnet2_ext.subtitles.blocks import Block

__all__ = ["SUBTITLE_FORMATS", "subtitle_text"]

SUBTITLE_FORMATS = ("srt", "vtt")


def subtitle_text(blocks: Sequence[Block], fmt: str) -> str:
    """The whole file of ``blocks`` in ``fmt`` (``srt`` or ``vtt``)."""
    if fmt == "srt":
        return srt.compose(
            [
                srt.Subtitle(
                    index=number,
                    start=datetime.timedelta(milliseconds=b.start_ms),
                    end=datetime.timedelta(milliseconds=b.end_ms),
                    content="\n".join(b.lines),
                )
                for number, b in enumerate(blocks, 1)
            ],
            reindex=False,
        )
    if fmt == "vtt":
        captions = webvtt.WebVTT()
        for b in blocks:
            caption = webvtt.Caption(text=list(b.lines))
            caption.start_time, caption.end_time = _timestamp(b.start_ms), _timestamp(b.end_ms)
            captions.captions.append(caption)
        return captions.content
    raise ValueError(f"subtitle format must be one of {', '.join(SUBTITLE_FORMATS)}, got {fmt!r}")


def _timestamp(ms: int) -> Timestamp:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return Timestamp(hours, minutes, seconds, millis)
