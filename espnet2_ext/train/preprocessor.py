"""Preprocessing that rejects unusable utterances by name before they reach the model."""

from collections.abc import Callable

import numpy as np

Preprocessor = Callable[[str, dict[str, str | np.ndarray]], dict[str, np.ndarray]]


class TooShortUtteranceError(ValueError):
    """An utterance has fewer feature frames than the encoder's subsampler needs."""


class SpeechLengthCheck:
    """Wrap ESPnet's preprocessor; fail with the utterance id on too-short features.

    The model only sees padded tensors, so this is the last place where the
    utterance's name is known. Only precomputed features (T, F) are checked:
    raw waveforms are turned into frames inside the model.
    """

    def __init__(self, inner: Preprocessor | None, min_frames: int):
        self.inner = inner
        self.min_frames = min_frames

    def __call__(self, uid: str, data: dict[str, str | np.ndarray]) -> dict[str, np.ndarray]:
        speech = data.get("speech")
        if isinstance(speech, np.ndarray) and speech.ndim == 2 and len(speech) < self.min_frames:
            raise TooShortUtteranceError(
                f"utterance {uid!r} has {len(speech)} feature frames; "
                f"the encoder's subsampler needs at least {self.min_frames}"
            )
        return data if self.inner is None else self.inner(uid, data)
