"""FBK's v1_1 agents' pieces written out plainly, for the tests that compare ours with them.

SimulEval 1.1.4 sends ``segment_ms`` of samples at a time; FBK's agents append the
new fbank frames (the residual samples carried between chunks, torchaudio's Kaldi
fbank on samples x 2^15), normalise them with ``gcmvn.npz``, re-encode, search with
the forced prefix, and read one decoder layer's attention along the best hypothesis
(SIMULST_FBK.md, STREAMATT_FBK.md). Used by tests/simultaneous/test_fbk_agent.py and
tests/streaming/test_fbk_streaming_agent.py.
"""

import numpy as np
import torch
from torchaudio.compliance import kaldi

from tests.fbk_reference import EOS

RATE = 16000


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Voiced-looking audio: harmonics of a wandering pitch under a syllable-rate envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)), 0, None)
    return (0.3 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def fbk_online_fbank(residual: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FBK v1_1 ``speech_utils``: frames completed by ``new`` after ``residual``, and the next residual."""
    samples = np.concatenate([residual, new])
    if len(samples) < 400:
        return np.zeros((0, 80), dtype=np.float32), samples
    n = (len(samples) - 240) // 160
    piece = torch.from_numpy(samples[: n * 160 + 240] * 32768.0)[None]
    frames = kaldi.fbank(piece, num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0)
    return frames.numpy(), samples[n * 160 :]


def fbk_alignatt(tokens: list[int], attention: torch.Tensor, prefix_len: int, frame_num: int) -> list[int]:
    """FBK v1_1 ``simul_offline_alignatt.py``'s policy."""
    candidates = tokens[prefix_len:-1]
    scores = attention[:-1, prefix_len:-1].T.float()
    if scores.numel() == 0:
        return []
    aligned = scores.argmax(dim=1).tolist()
    first_invalid = attention.size(0) - 1 - frame_num
    for i, position in enumerate(aligned):
        if position >= first_invalid:
            return candidates[:i]
    return candidates


def fbk_edatt(
    tokens: list[int], attention: torch.Tensor, prefix_len: int, frame_num: int, threshold: float, tag: bool
) -> list[int]:
    """FBK v1_1 ``simul_offline_edatt.py``'s policy (SIMULST_FBK.md section 2.2)."""
    candidates = tokens[prefix_len:]  # the final </s> included
    columns = attention[:, 1:] if tag else attention  # the tag's column dropped, rows still from P
    normalised = torch.nn.functional.normalize(columns[:-1, :].T.float(), p=2, dim=1)
    for i in range(len(candidates)):
        if prefix_len + i >= normalised.size(0):
            break
        if float(normalised[prefix_len + i, -frame_num:].sum()) >= threshold:
            return candidates[:i]
    return candidates


def fbk_get_words(ids: list[int], symbols: list[str]) -> list[int]:
    """FBK v1_1 ``get_words``: drop the last (maybe unfinished) word."""
    starts = [i for i, t in enumerate(ids) if symbols[t].startswith("\u2581")]
    return ids[: starts[-1]] if starts else []


def fbk_string(ids: list[int], symbols: list[str]) -> str:
    """fairseq's ``Dictionary.string(ids, "sentencepiece")``."""
    return "".join(symbols[t] for t in ids if t != EOS).replace("\u2581", " ").strip()
