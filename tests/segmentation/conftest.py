"""Speech for the segmentation tests: sentences spoken by espeak-ng, joined with pauses."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.utils.fbank import resample

SENTENCES = [
    "the father writes our cheap books today",
    "i write the stories",
    "a man drinks the fresh milk at five o'clock",
    "we translate speech directly into text",
    "the small cat sits on the green mat",
    "today it does not rain in the valley",
]


def speak(text: str, tmp_path) -> np.ndarray:
    """``text`` spoken by espeak-ng, 16 kHz float32."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is needed for the speech in these tests (make test installs it)"
    path = tmp_path / "spoken.wav"
    subprocess.run([espeak, "-w", str(path), text], check=True)
    samples, rate = sf.read(path, dtype="float32")
    return resample(samples, rate)


@pytest.fixture(scope="session")
def sentences(tmp_path_factory) -> list[np.ndarray]:
    work = tmp_path_factory.mktemp("espeak")
    return [speak(text, work) for text in SENTENCES]


def talk(
    sentences: list[np.ndarray], pauses: list[float], noise: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, list]:
    """The sentences joined by pauses (seconds; one before each sentence too), with white noise
    of amplitude ``noise``; returns the audio and each sentence's audible (start, stop) sample
    range (espeak-ng ends each sentence with 0.3 s of silence of its own)."""
    rng = np.random.default_rng(seed)
    pieces, spans, position = [], [], 0
    for sentence, pause in zip(sentences, pauses):
        gap = np.zeros(int(pause * 16000), dtype=np.float32)
        pieces += [gap, sentence]
        audible = np.flatnonzero(np.abs(sentence) > 0.005)
        spans.append((position + len(gap) + audible[0], position + len(gap) + audible[-1] + 1))
        position += len(gap) + len(sentence)
    audio = np.concatenate(pieces)
    return (audio + noise * rng.standard_normal(len(audio)).astype(np.float32)), spans
