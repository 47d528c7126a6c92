"""Talks of real speech for the streaming tests."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.utils.fbank import resample

RATE = 16000

SENTENCES = [
    ["we translate speech directly into text", "the model reads the whole history again",
     "attention tells which audio is still needed", "old words leave the forced prefix"],
    ["a talk never really ends", "so the history must be cut as it goes",
     "silence between talks writes nothing", "the next sentence starts afresh"],
]


@pytest.fixture(scope="session")
def talks(tmp_path_factory) -> list[np.ndarray]:
    """Two talks of four sentences spoken by espeak-ng, short pauses between them: real speech,
    which the translator's voice-activity check hears as such (it skips a history without speech)."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is needed for the speech in these tests (make test installs it)"
    folder = tmp_path_factory.mktemp("espeak")
    spoken = []
    for number, sentences in enumerate(SENTENCES):
        pieces = []
        for n, sentence in enumerate(sentences):
            path = folder / f"{number}_{n}.wav"
            subprocess.run([espeak, "-w", str(path), sentence], check=True)
            samples, rate = sf.read(path, dtype="float32")
            pieces += [resample(samples, rate), np.zeros(int((0.15 + 0.1 * n) * RATE), dtype=np.float32)]
        spoken.append(np.concatenate(pieces))
    return spoken
