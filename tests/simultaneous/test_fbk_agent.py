"""A model imported from FBK commits FBK's words at FBK's delays.

The reference here is FBK's v1_1 AlignAtt (and EDAtt) agent written out plainly over FBK's
own arithmetic (tests/fbk_reference.py: FBK's encoder, decoder and generator from
the checkpoint's weights): SimulEval 1.1.4 sends ``segment_ms`` of samples at a
time; the agent appends the new fbank frames (the residual samples carried between
chunks, torchaudio's Kaldi fbank on samples x 2^15), normalises them with
``gcmvn.npz``, re-encodes the whole prefix, searches with the committed ids forced,
reads layer L's attention along the best hypothesis, applies AlignAtt's slicing and
``get_words``; the last segment is encoded and everything left written at |X|.
Ours runs on the zip ``import_fbk --gcmvn`` makes, with ``cmvn: global`` and
``frame_unit: position``.
"""

import math

import numpy as np
import pytest
import torch

from espnet2_ext.main_funcs.fbk_import import import_fbk
from espnet2_ext.simultaneous.evaluation import simulate_instance
from espnet2_ext.simultaneous.translator import SimultaneousTranslator
from tests.fbk_agents import fbk_alignatt, fbk_edatt, fbk_get_words, fbk_online_fbank, fbk_string, speechlike
from tests.fbk_reference import EOS, LANG_TAG, FBKReference, make_fbk_checkpoint

RATE = 16000
SEGMENT_MS = 400
MAX_LEN = 12
BEAM = 5
LAYER = 1  # of the tiny decoder's 2 (FBK's READMEs: 3 of 6)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fbk_agent(
    ref: FBKReference, audio: np.ndarray, gcmvn: tuple, tag: list[int], frame_num: int, threshold: float | None = None
):
    """(words, delays in ms) as SimulEval 1.1.4 records FBK's agent on ``audio``."""
    mean, std = gcmvn
    segment = math.ceil(SEGMENT_MS / 1000 * RATE)
    residual, frames = np.zeros(0, dtype=np.float32), np.zeros((0, 80), dtype=np.float32)
    committed: list[int] = []
    words, delays = [], []
    starts = list(range(0, len(audio), segment))
    for number, start in enumerate(starts):
        new, residual = fbk_online_fbank(residual, audio[start : start + segment])
        frames = np.concatenate([frames, new])
        sent = min(start + segment, len(audio))
        normalised = torch.from_numpy((frames - mean) / std)
        states = ref.encode(normalised).states
        prefix = tag + committed
        best_tokens = ref.beam_search(states, BEAM, ref.max_len(len(frames), 0.0, MAX_LEN), prefix)[0][0]
        if number == len(starts) - 1:  # source finished: everything left
            text = fbk_string(best_tokens[len(prefix) :], ref.tgt_symbols)
        else:
            kept: list = []
            ref.decoder_log_probs(states, [EOS] + best_tokens[:-1], attention=kept)
            if threshold is None:
                accepted = fbk_alignatt(best_tokens, kept[LAYER].T, len(prefix), frame_num)
            else:
                accepted = fbk_edatt(best_tokens, kept[LAYER].T, len(prefix), frame_num, threshold, bool(tag))
            ids = fbk_get_words(accepted, ref.tgt_symbols)
            committed += ids
            text = fbk_string(ids, ref.tgt_symbols)
        for word in text.split():
            words.append(word)
            delays.append(1000 * sent / RATE)
    return words, delays


# --------------------------------------------------------------------------- ours against it


CASES = [  # (compression, tag, f or lambda, EDAtt's alpha or None for AlignAtt)
    ("avg", True, 2, None), ("none", False, 1, None), ("none", False, 4, None), ("weighted", True, 0, None),
    ("none", False, 2, 0.6), ("none", True, 2, 0.7),
]


@pytest.mark.parametrize("strategy, lang_tag, frame_num, threshold", CASES, ids=lambda v: str(v))
def test_imported_model_commits_fbk_words_at_fbk_delays(tmp_path, strategy, lang_tag, frame_num, threshold):
    files = make_fbk_checkpoint(
        tmp_path / "fbk", strategy=strategy, lang_tag=lang_tag, seed=11, eos_scale=0.5, input_size=80
    )
    mean = np.linspace(8.0, 12.0, 80, dtype=np.float32)
    std = np.linspace(2.0, 4.0, 80, dtype=np.float32)
    np.savez(tmp_path / "gcmvn.npz", mean=mean, std=std)
    zip_path = import_fbk(*files[:6], tmp_path / "model.zip", gcmvn=tmp_path / "gcmvn.npz")
    policy = dict(policy="alignatt") if threshold is None else dict(policy="edatt", attn_threshold=threshold)
    ours = SimultaneousTranslator.from_pretrained(
        zip_path, tmp_path / "cache", **policy, frame_num=frame_num, frame_unit="position",
        attention_layer=LAYER, segment_ms=SEGMENT_MS, cmvn="global", beam_size=BEAM, maxlen_b=MAX_LEN,
    )
    ref = FBKReference.from_files(files.checkpoint, files.tgt_dict, files.src_dict)
    tag = [ref.tgt_symbols.index(LANG_TAG)] if lang_tag else []
    written = 0
    for seed, seconds in enumerate((2.3, 3.0, 1.7)):
        audio = speechlike(seconds, seed)
        words, delays = fbk_agent(ref, audio, (mean, std), tag, frame_num, threshold)
        record = simulate_instance(ours, audio, seed, "speech", "")
        assert record.prediction.split() == words, f"audio {seed}"
        assert list(record.delays) == delays, f"audio {seed}"
        written += sum(delay < record.source_length for delay in delays)
    if frame_num <= 2:
        assert written > 0, "some words must be written before the end, or the policy is not tested"


def test_reference_fbank_is_compute_fbank_of_the_prefix():
    """The plain FBK extractor above gives the offline features, so the comparison is fair."""
    from espnet2_ext.utils.fbank import compute_fbank

    audio = speechlike(2.3, 0)
    residual, frames = np.zeros(0, dtype=np.float32), np.zeros((0, 80), dtype=np.float32)
    for start in range(0, len(audio), 6400):
        new, residual = fbk_online_fbank(residual, audio[start : start + 6400])
        frames = np.concatenate([frames, new])
    np.testing.assert_allclose(frames, compute_fbank(audio, RATE), atol=1e-4)
