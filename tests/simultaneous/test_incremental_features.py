"""Features of a growing prefix: bit-identical to compute_fbank of the prefix, whatever the chunks; its normalisations.

The exactness tests compare with ``array_equal`` at many steps of each stream:
after the chunks that complete frames while the stream is short (where the
rounding of short matrix products shows, see the module docstring), then each
time the stream passes a multiple of 10 frames, and at its end.
"""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch
from espnet2.layers.global_mvn import GlobalMVN

from espnet2_ext.layers.utterance_cmvn import UtteranceCMVN
from espnet2_ext.simultaneous import incremental_features
from espnet2_ext.simultaneous.incremental_features import (
    MIN_CALL_FRAMES,
    CMVNStatsError,
    IncrementalFbank,
    call_start,
    kept_from,
    load_global_cmvn,
    prefix_cmvn,
)
from espnet2_ext.utils.fbank import compute_fbank, resample

RATE = 16000


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    """2.2 s on the int16 grid over a DC offset and a slow ramp, so that each frame's DC removal matters."""
    rng = np.random.default_rng(0)
    ints = rng.integers(-6000, 6000, int(2.2 * RATE)).astype(np.float32)
    return ints / 32768 + 0.1 + np.linspace(0.0, 0.2, len(ints), dtype=np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """A sentence spoken by espeak-ng (22.05 kHz, resampled to 16 kHz), about 2 s."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is needed for the speech in these tests (make test installs it)"
    path = tmp_path_factory.mktemp("espeak") / "spoken.wav"
    subprocess.run([espeak, "-w", str(path), "we translate speech directly into text"], check=True)
    samples, rate = sf.read(path, dtype="float32")
    return resample(samples, rate)


@pytest.fixture
def torch_threads(request):
    """torch's intra-op threads set to ``request.param`` for one test, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def chunk_sizes(scheme: int | str, total: int, seed: int = 0) -> list[int]:
    """Chunk lengths covering ``total`` samples: all ``scheme`` long, or random in [1, 5000)."""
    if scheme == "random":
        sizes = list(np.random.default_rng(seed).integers(1, 5000, total))
    else:
        sizes = [scheme] * (total // scheme + 1)
    return [int(s) for s in np.diff(np.minimum(np.cumsum([0, *sizes]), total)) if s > 0]


def stream_and_check(fbank: IncrementalFbank, samples: np.ndarray, sizes: list[int]) -> int:
    """Feed the chunks; check what feed returns at every step, the prefix features at many."""
    position, checks = 0, 0
    for size in sizes:
        before = len(fbank.features)
        new = fbank.feed(samples[position : position + size])
        position += size
        after = len(fbank.features)
        np.testing.assert_array_equal(new, fbank.features[before:])
        if after > before and (after <= 16 or after // 10 > before // 10):
            np.testing.assert_array_equal(fbank.features, compute_fbank(samples[:position], RATE))
            checks += 1
    assert position == len(samples) == fbank.num_samples
    np.testing.assert_array_equal(fbank.features, compute_fbank(samples, RATE))
    return checks


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("signal", ["noise", "speech"])
@pytest.mark.parametrize(("first", "frames"), [(0, MIN_CALL_FRAMES), (1, MIN_CALL_FRAMES), (57, 140), (13, 180)])
def test_fbank_of_a_piece_is_the_frames_of_the_whole_that_lie_in_it(signal, first, frames, request):
    """The property FBK's rule rests on: DC offset, pre-emphasis and window work within each frame."""
    samples = request.getfixturevalue(signal)
    start = first * 160
    piece = samples[start : start + (frames - 1) * 160 + 400]
    np.testing.assert_array_equal(compute_fbank(piece, RATE), compute_fbank(samples, RATE)[first : first + frames])


@pytest.mark.parametrize("scheme", [1, 160, 399, 400, 640, 16000, "random"])
@pytest.mark.parametrize("signal", ["noise", "speech"])
def test_prefix_features_equal_fbank_of_the_whole_prefix(scheme, signal, request):
    samples = request.getfixturevalue(signal)
    if scheme in (1, 160):  # one fbank call per frame: 1.5 s (148 frames, 20 past the first 128) is enough
        samples = samples[: int(1.5 * RATE)]
    assert stream_and_check(IncrementalFbank(), samples, chunk_sizes(scheme, len(samples))) >= 3


@pytest.mark.parametrize("chunk", [160, 2880])
@pytest.mark.parametrize("torch_threads", [1, 16], indirect=True)
def test_exact_at_other_thread_counts(torch_threads, chunk, noise):
    """Threads change which short products round differently. Here, at 1 thread, products of
    1 row (160-sample chunks) do; at 16 threads, also products of 18 rows (2880-sample chunks)."""
    samples = noise[: int(1.6 * RATE)]
    stream_and_check(IncrementalFbank(), samples, chunk_sizes(chunk, len(samples)))


def test_float64_chunks_give_the_features_of_the_float64_whole(noise):
    samples = noise.astype(np.float64) + 1e-9  # not float32 values: the cast is part of the features
    stream_and_check(IncrementalFbank(), samples, chunk_sizes("random", len(samples), seed=3))


def test_one_second_chunks_give_98_frames_then_100(noise):
    """FBK's numbers (SIMULST_FBK.md §1.2); a last chunk of 0.37 s: 1 + (len - 400) // 160 frames in all."""
    samples = np.concatenate([noise, noise])[: int(3.37 * RATE)]
    fbank = IncrementalFbank()
    counts = [len(fbank.feed(samples[i : i + RATE])) for i in range(0, len(samples), RATE)]
    assert counts == [98, 100, 100, 37]
    assert len(fbank.features) == 1 + (len(samples) - 400) // 160 == 335


@pytest.mark.parametrize(
    ("min_call_frames", "chunk", "expected"),
    [
        # FBK's rule: fbank on s[: n*160 + 240], s = residual + chunk (320 samples left each time)
        (1, RATE, [15920, 16240, 16240, 6160]),
        # ours: the whole prefix while under 128 frames are known, then calls of at least 128 frames
        (128, RATE, [15920, 31920, 20720, 20720]),
        (128, 8000, [7920, 15920, 23920, 20720, 20720, 20720, 20720]),
        (128, 24000, [23920, 24240, 20720]),
    ],
)
def test_pieces_given_to_fbank(monkeypatch, noise, min_call_frames, chunk, expected):
    samples = np.concatenate([noise, noise])[: int(3.37 * RATE)]
    lengths = []

    def recording(piece: np.ndarray, rate: int) -> np.ndarray:
        lengths.append(len(piece))
        return compute_fbank(piece, rate)

    monkeypatch.setattr(incremental_features, "compute_fbank", recording)
    fbank = IncrementalFbank(min_call_frames)
    for i in range(0, len(samples), chunk):
        fbank.feed(samples[i : i + chunk])
    assert lengths == expected
    np.testing.assert_array_equal(fbank.features, compute_fbank(samples, RATE))


@pytest.mark.parametrize(
    ("known", "total", "min_call_frames", "start"),
    [(0, 98, 1, 0), (98, 198, 1, 98), (0, 5, 128, 0), (127, 130, 128, 0), (128, 129, 128, 1), (200, 400, 128, 200)],
)
def test_call_start(known, total, min_call_frames, start):
    assert call_start(known, total, min_call_frames) == start


@pytest.mark.parametrize(("known", "min_call_frames", "first"), [(98, 1, 98), (0, 1, 0), (10, 128, 0), (300, 128, 173)])
def test_kept_from(known, min_call_frames, first):
    assert kept_from(known, min_call_frames) == first


def test_reset_starts_a_new_stream(noise, speech):
    fbank = IncrementalFbank()
    fbank.feed(noise[:12345])
    fbank.reset()
    assert fbank.features.shape == (0, 80) and fbank.num_samples == 0
    stream_and_check(fbank, speech[:20000], chunk_sizes(3000, 20000))


def test_short_chunks_give_no_frames_until_a_window_is_full(noise):
    fbank = IncrementalFbank()
    assert fbank.feed(noise[:399]).shape == (0, 80)
    assert fbank.feed(noise[399:400]).shape == (1, 80)
    assert fbank.feed(noise[400:559]).shape == (0, 80)
    assert fbank.feed(np.zeros(0, np.float32)).shape == (0, 80)


def test_features_are_read_only(noise):
    fbank = IncrementalFbank()
    fbank.feed(noise[:4000])
    with pytest.raises(ValueError, match="read-only"):
        fbank.features[0, 0] = 1.0


@pytest.mark.parametrize(
    ("chunk", "message"),
    [(np.zeros((160, 2), np.float32), "mono"), (np.zeros(160, np.int16), "float"), (np.zeros((), np.float32), "mono")],
)
def test_rejects_multichannel_and_integer_chunks(chunk, message):
    """Even a chunk that completes no frame."""
    with pytest.raises(ValueError, match=message):
        IncrementalFbank().feed(chunk)


def test_rejects_min_call_frames_below_one():
    with pytest.raises(ValueError, match="min_call_frames must be >= 1, got 0"):
        IncrementalFbank(0)


# --------------------------------------------------------------------------- prefix CMVN


def fairseq_utterance_cmvn(x: np.ndarray) -> np.ndarray:
    """fairseq's UtteranceCMVN, written out in float64."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    var = np.maximum((x**2).sum(axis=0) / len(x) - mean**2, 1e-10)
    return (x - mean) / np.sqrt(var)


def test_prefix_cmvn_is_the_models_utterance_cmvn_of_each_prefix(speech):
    fbank = IncrementalFbank()
    layer = UtteranceCMVN()
    for i in range(0, len(speech), 8000):
        fbank.feed(speech[i : i + 8000])
        normalised = prefix_cmvn(fbank.features)
        whole = torch.from_numpy(compute_fbank(speech[: i + 8000], RATE))[None]
        expected, _ = layer(whole, torch.tensor([whole.size(1)]))
        assert normalised.dtype == np.float32
        np.testing.assert_array_equal(normalised, expected[0].numpy())
        np.testing.assert_allclose(normalised, fairseq_utterance_cmvn(fbank.features), rtol=1e-4, atol=1e-4)


def test_prefix_cmvn_uses_the_given_layer(speech):
    features = compute_fbank(speech[:20000], RATE)
    means_only = prefix_cmvn(features, UtteranceCMVN(norm_vars=False))
    np.testing.assert_allclose(means_only, features - features.mean(axis=0), atol=1e-4)
    assert prefix_cmvn(np.zeros((0, 80), np.float32)).shape == (0, 80)


# --------------------------------------------------------------------------- global CMVN

MEAN = np.linspace(-3.0, 12.0, 80)
STD = np.linspace(0.5, 4.0, 80)


def write_espnet_stats(path, count=1000, **changes) -> None:
    """stage 4's feats_stats.npz for MEAN and STD."""
    arrays = dict(count=np.array(count), sum=count * MEAN, sum_square=count * (STD**2 + MEAN**2))
    np.savez(path, **{**arrays, **changes})


def test_global_cmvn_from_espnet_stats_is_the_models_global_mvn(tmp_path, speech):
    path = tmp_path / "feats_stats.npz"
    write_espnet_stats(path)
    cmvn = load_global_cmvn(path)
    np.testing.assert_allclose(cmvn.mean, MEAN, rtol=1e-6)
    np.testing.assert_allclose(cmvn.std, STD, rtol=1e-5)
    features = compute_fbank(speech, RATE)
    expected, _ = GlobalMVN(path)(torch.from_numpy(features.copy())[None])
    normalised = cmvn(features)
    assert normalised.dtype == np.float32
    np.testing.assert_array_equal(normalised, expected[0].numpy())


def test_global_cmvn_from_fbk_gcmvn_applies_to_each_chunk(tmp_path, speech):
    """FBK normalises each chunk's new frames; the same as normalising the prefix."""
    path = tmp_path / "gcmvn.npz"
    np.savez(path, mean=MEAN, std=STD)
    cmvn = load_global_cmvn(path)
    fbank = IncrementalFbank()
    chunks = [cmvn(fbank.feed(speech[i : i + 5000])) for i in range(0, len(speech), 5000)]
    np.testing.assert_array_equal(np.concatenate(chunks), cmvn(fbank.features))
    np.testing.assert_allclose(cmvn(fbank.features), (fbank.features - MEAN) / STD, rtol=1e-5, atol=1e-5)


def test_espnet_count_of_shape_one_is_accepted(tmp_path):
    path = tmp_path / "feats_stats.npz"
    write_espnet_stats(path, count=np.array([1000]))
    np.testing.assert_allclose(load_global_cmvn(path).std, STD, rtol=1e-5)


@pytest.mark.parametrize(
    ("arrays", "messages"),
    [
        (dict(mean=MEAN), ["expected the keys count, sum, sum_square", "or mean, std", "found mean"]),
        ({}, ["found none"]),
        (dict(count=np.array(1000), sum=np.zeros(40), sum_square=np.zeros(40)),
         ["sum has shape (40,), expected (80,); sum_square has shape (40,)"]),
        (dict(count=np.zeros(2), sum=1000 * MEAN, sum_square=1000 * MEAN**2),
         ["count has shape (2,), expected a single number"]),
        (dict(count=np.array(0), sum=MEAN, sum_square=MEAN), ["count must be > 0"]),
        (dict(count=np.array(10), sum=np.full(80, np.nan), sum_square=MEAN), ["sum is not finite everywhere"]),
        (dict(mean=MEAN[:79], std=STD[None]), ["mean has shape (79,), expected (80,); std has shape (1, 80)"]),
        (dict(mean=MEAN, std=np.where(np.arange(80) == 5, 0.0, STD)), ["std must be > 0 everywhere"]),
        (dict(mean=MEAN.astype(complex), std=STD), ["mean has dtype complex128, expected real numbers"]),
    ],
)
def test_bad_statistics_give_one_message_naming_the_file(tmp_path, arrays, messages):
    path = tmp_path / "stats.npz"
    np.savez(path, **arrays)
    message = error_message(path)
    for expected in messages:
        assert expected in message


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("stats.npy", lambda path: np.save(path, np.zeros((2, 81))), "a single array (.npy)"),
        ("stats.npz", lambda path: path.write_text("mean 0\n"), "not a readable .npz archive"),
        ("stats.npz", lambda path: path.write_bytes(b""), "not a readable .npz archive"),
        ("stats.npz", lambda path: np.savez(path, mean=np.array([object()] * 80), std=STD), "not a readable .npz"),
    ],
)
def test_unreadable_statistics_name_the_file(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    assert message in error_message(path)


def error_message(path) -> str:
    """The message of the CMVNStatsError that loading ``path`` raises; it must start with the path."""
    with pytest.raises(CMVNStatsError) as caught:
        load_global_cmvn(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message


def test_missing_statistics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_global_cmvn(tmp_path / "missing.npz")


@pytest.mark.parametrize("chunk", [160, 4000, 16000])
def test_discarding_the_front_keeps_the_rest_exact(noise, chunk):
    """A stream's history cut from the front (StreamAtt) keeps the later frames of compute_fbank
    of everything received, and the frames still to come are computed as before."""
    fbank = IncrementalFbank()
    dropped = 0
    for start in range(0, len(noise), chunk):
        fbank.feed(noise[start : start + chunk])
        if len(fbank.features) > 30:
            fbank.discard(7)
            dropped += 7
        whole = compute_fbank(noise[: start + chunk], RATE)
        if len(whole) >= MIN_CALL_FRAMES:
            assert np.array_equal(fbank.features, whole[dropped:])
    assert fbank.discarded_frames == dropped > 0
    with pytest.raises(ValueError, match="can discard 0 to"):
        fbank.discard(len(fbank.features) + 1)
