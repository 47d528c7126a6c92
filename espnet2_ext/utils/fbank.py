"""The one definition of our acoustic features: 80-dim Kaldi log-mel filterbanks.

The recipe's feature stage and inference both call :func:`compute_fbank`, so a model
always sees features computed exactly as during training. The settings follow
FBK-fairseq's ``get_fbank`` (torchaudio's Kaldi-compatible ``fbank`` on 16 kHz audio
scaled to the int16 range, 25 ms windows every 10 ms, no dither).
"""

import numpy as np

__all__ = [
    "FRAME_LENGTH_MS",
    "FRAME_SHIFT_MS",
    "NUM_MEL_BINS",
    "SAMPLE_RATE",
    "compute_fbank",
    "num_frames",
    "resample",
]

SAMPLE_RATE = 16000
NUM_MEL_BINS = 80
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
_INT16_SCALE = 32768.0


def resample(waveform: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float waveform ``(samples,)``; a no-op at the target rate.

    The samples a stream of the same audio gives (:class:`~espnet2_ext.utils.resampling.StreamResampler`).
    """
    if sample_rate == target_rate:
        return waveform
    from espnet2_ext.utils.resampling import StreamResampler  # torch: not for the constants

    resampler = StreamResampler(sample_rate, target_rate)
    return np.concatenate([resampler.feed(waveform), resampler.finish()])


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Frames Kaldi produces for ``num_samples`` (``snip_edges=True``: whole windows only)."""
    window = int(sample_rate * FRAME_LENGTH_MS / 1000)
    shift = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return 0 if num_samples < window else 1 + (num_samples - window) // shift


def compute_fbank(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    """Kaldi log-mel filterbank features of one utterance.

    Args:
        waveform: mono float samples in [-1, 1], shape ``(samples,)`` (what soundfile
            returns for ``dtype="float32"``); any sample rate, resampled to 16 kHz.
        sample_rate: sample rate of ``waveform`` in Hz.

    Returns:
        float32 array ``(frames, 80)`` with ``frames = num_frames(samples at 16 kHz)``;
        ``(0, 80)`` for audio shorter than one 25 ms window.

    Raises:
        ValueError: for a multi-channel or integer waveform (integer samples would be
            scaled a second time and give silently wrong features).
    """
    if waveform.ndim != 1:
        raise ValueError(
            f"expected a mono waveform (samples,), got shape {waveform.shape}; see espnet2_ext.utils.waveform.mix_to_mono"
        )
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got dtype {waveform.dtype}")
    import torch  # here, so that the constants above can be read without loading torch
    from torchaudio.compliance import kaldi

    samples = resample(waveform, sample_rate)
    if num_frames(len(samples)) == 0:
        return np.zeros((0, NUM_MEL_BINS), dtype=np.float32)
    tensor = torch.from_numpy(np.asarray(samples, dtype=np.float32) * _INT16_SCALE).unsqueeze(0)
    features = kaldi.fbank(
        tensor,
        num_mel_bins=NUM_MEL_BINS,
        frame_length=FRAME_LENGTH_MS,
        frame_shift=FRAME_SHIFT_MS,
        dither=0.0,
        sample_frequency=SAMPLE_RATE,
    )
    return features.numpy().astype(np.float32, copy=False)
