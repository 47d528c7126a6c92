"""Cutting long recordings into sentence-like segments, as SHAS does for FBK's IWSLT submissions.

A model trained on sentences writes about one sentence per segment it is given,
so a whole talk must be cut before it is translated. Small parts:

- :mod:`.voice_activity`: Silero VAD's speech probability per 32 ms frame, computed
  for whole blocks at once and carried across a stream;
- :mod:`.divide_and_conquer`: SHAS's probabilistic divide-and-conquer (pDAC) over
  those probabilities, a pure function;
- :mod:`.segmenter`: the state that runs both over a stream of 16 kHz samples and
  hands out finished segments, so memory stays bounded on recordings of any length;
- :mod:`.options`: pDAC's settings (numpy only).

The names are loaded on first use, so that checking options does not import torch.
"""

import importlib
from typing import Any

_EXPORTS = {
    "FRAME_SAMPLES": "options",
    "FRAME_SECONDS": "options",
    "SHAS_MUSTC": "options",
    "SegmentationOptions": "options",
    "Segment": "segmenter",
    "StreamSegmenter": "segmenter",
    "SpeechProbability": "voice_activity",
    "divide_and_conquer": "divide_and_conquer",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"espnet2_ext.segmentation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
