"""Samples as numbers, before any feature: channels mixed down, the lowest usable rate.

Numpy only, so that programs can check their inputs and options before torch loads.
"""

import numpy as np

__all__ = ["MIN_SAMPLE_RATE", "mix_to_mono"]

# Below 8 kHz (telephone speech) too little of the speech band is left for the features.
MIN_SAMPLE_RATE = 8000


def mix_to_mono(waveform: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(samples, channels)`` array, as ``sox ... channels 1`` does.

    A 1-D array is returned unchanged, so callers can pass whatever soundfile gave them.
    """
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2:
        raise ValueError(f"expected (samples,) or (samples, channels), got shape {waveform.shape}")
    return waveform.mean(axis=1)
