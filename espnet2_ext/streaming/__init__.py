"""Whole, unsegmented talks translated as one stream (FBK's StreamAtt) with the offline model.

Above :mod:`espnet2_ext.simultaneous`: the same step (features, encoder, forced
search, AlignAtt or EDAtt), with the forced text and the encoder's audio cut to a
bounded history as the talk goes on. ``from espnet2_ext.streaming import
StreamingTranslator`` loads torch; the options and the history selection do not.
"""

from typing import Any

__all__ = ["StreamingTranslator"]


def __getattr__(name: str) -> Any:
    if name == "StreamingTranslator":
        from espnet2_ext.streaming.translator import StreamingTranslator

        return StreamingTranslator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
