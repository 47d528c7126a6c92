"""A model imported from FBK streams a talk as FBK's StreamAtt agent does: the same words at the same delays.

The reference is FBK's v1_1 ``StreamingSTAgent`` over its AlignAtt (and EDAtt) agent,
written out plainly over FBK's arithmetic (tests/fbk_reference.py, tests/fbk_agents.py;
STREAMATT_FBK.md §1): per chunk the new fbank frames, normalised with ``gcmvn.npz``,
are appended to the audio history; the encoder re-runs on it; one beam search forces
the tag and the text history; AlignAtt and ``get_words`` choose what to write, which
joins the text history; then the history selection (FixedWords, Punctuation or
FixedAudio) keeps part of the text, and the audio before the earliest position the
kept text and the unwritten tokens attend to (mapped through the CTC runs, times 4)
is cut. The last chunk writes everything after the forced text history.

Ours: the zip ``import_fbk --gcmvn`` makes, ``cmvn: global``, ``frame_unit: position``,
a cap on the audio history far above what these talks reach (FBK's has none). The talks
are real speech, and the random models' cuts never leave a history without it, where
ours would start afresh and FBK's go on (the translator's docstring): with FixedAudio on
the random model of seed 20, which cuts 280 ms per word down into the pauses, that
happens, and ours matches FBK's only with the voice-activity rule turned off.
"""

import math

import numpy as np
import pytest
import torch

from espnet2_ext.main_funcs.fbk_import import import_fbk
from espnet2_ext.simultaneous.evaluation import simulate_instance
from espnet2_ext.streaming.translator import StreamingTranslator
from tests.fbk_agents import RATE, fbk_alignatt, fbk_edatt, fbk_get_words, fbk_online_fbank, fbk_string
from tests.fbk_reference import EOS, LANG_TAG, FBKReference, make_fbk_checkpoint

SEGMENT_MS = 400
MAX_LEN = 24
BEAM = 5
LAYER = 1  # of the tiny decoder's 2
SUBSAMPLING_FACTOR = 4  # FBK's constant
STRONG_PUNCTUATION = [".", "!", "?", ":", ";"]
BOW = "\u2581"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fbk_fixed_words(text: list[int], symbols: list[str], words: int) -> list[int]:
    """FBK's ``FixedWordsHistorySelection.text_history``."""
    kept = []
    for idx in reversed(text):
        kept.append(idx)
        if BOW in symbols[idx]:
            words -= 1
            if words == 0:
                break
    kept.reverse()
    return kept


def fbk_punctuation(text: list[int], symbols: list[str], max_len: int) -> list[int]:
    """FBK's ``PunctuationHistorySelection.text_history``."""
    kept = []
    for idx in reversed(text):
        if any(p in symbols[idx] for p in STRONG_PUNCTUATION):
            break
        kept.append(idx)
    kept.reverse()
    return kept[-max_len:] if len(kept) > max_len else kept


def fbk_attended_cut(attention: torch.Tensor, tag: bool, discarded: int, runs: list) -> int:
    """FBK's ``AudioAttentionHistorySelectionBase.audio_history``: frames to cut."""
    attn = attention[:, 1:] if tag else attention
    attn = attn[:, discarded:]
    attn = attn[:-1, :-1].transpose(0, 1).float()
    earliest = int(torch.sort(torch.argmax(attn, dim=1))[0][0])
    if runs:  # ctc_batch_predicted: the CTC label runs
        earliest = sum(frames for _, frames in runs[:earliest])
    return earliest * SUBSAMPLING_FACTOR


def fbk_fixed_audio_cut(discarded_ids: list[int], symbols: list[str]) -> int:
    """FBK's ``FixedAudioHistorySelection.audio_history``: 280 ms per discarded word."""
    text = " ".join(symbols[i] for i in discarded_ids if i != EOS)
    return len(text.strip(BOW).split(BOW)) * 280 // 10


def fbk_streaming_agent(ref, audio, gcmvn, tag, frame_num, history, history_words, threshold=None):
    """(words, delays in ms, audio history in frames after each step but the last) of FBK's agent."""
    mean, std = gcmvn
    segment = math.ceil(SEGMENT_MS / 1000 * RATE)
    residual, source = np.zeros(0, dtype=np.float32), np.zeros((0, 80), dtype=np.float32)
    target_indices: list[int] = []
    words, delays, history_frames = [], [], []
    starts = list(range(0, len(audio), segment))
    for number, start in enumerate(starts):
        new, residual = fbk_online_fbank(residual, audio[start : start + segment])
        source = np.concatenate([source, (new - mean) / std])
        sent = min(start + segment, len(audio))
        encoded = ref.encode(torch.from_numpy(source))
        prefix = tag + target_indices
        best = ref.beam_search(encoded.states, BEAM, ref.max_len(len(source), 0.0, MAX_LEN), prefix)[0][0]
        if number == len(starts) - 1:  # source finished: everything after the forced text
            text = fbk_string(best[len(prefix) :], ref.tgt_symbols)
        else:
            kept: list = []
            ref.decoder_log_probs(encoded.states, [EOS] + best[:-1], attention=kept)
            attention = kept[LAYER].T
            if threshold is None:
                accepted = fbk_alignatt(best, attention, len(prefix), frame_num)
            else:
                accepted = fbk_edatt(best, attention, len(prefix), frame_num, threshold, bool(tag))
            ids = fbk_get_words(accepted, ref.tgt_symbols)
            target_indices = target_indices + ids
            text = fbk_string(ids, ref.tgt_symbols)
            if history == "punctuation":
                selected = fbk_punctuation(target_indices, ref.tgt_symbols, 100)
            else:
                selected = fbk_fixed_words(target_indices, ref.tgt_symbols, history_words)
            discarded = len(target_indices) - len(selected)
            if discarded:
                if history == "audio":
                    cut = fbk_fixed_audio_cut(target_indices[:discarded], ref.tgt_symbols)
                else:
                    cut = fbk_attended_cut(attention, bool(tag), discarded, encoded.runs)
                source = source[cut:]
            target_indices = selected
            history_frames.append(len(source))
        for word in text.split():
            words.append(word)
            delays.append(1000 * sent / RATE)
    return words, delays, history_frames


def stream(translator: StreamingTranslator, audio: np.ndarray):
    """The same from ours, pushed as SimulEval sends it (the last segment with the end)."""
    segment = math.ceil(SEGMENT_MS / 1000 * RATE)
    translator.reset()
    starts = list(range(0, len(audio), segment))
    history_frames = []
    for start in starts[:-1]:
        translator.push(audio[start : start + segment])
        history_frames.append(round(translator.history_seconds * 100))
    translator.finish(audio[starts[-1] :])
    return [w.text for w in translator.words], [1000 * w.time for w in translator.words], history_frames




# (compression, tag, history, history words, f, EDAtt's alpha or None, the random model's seed). A random
# tiny model writes little; these seeds make it write early and cut audio on these talks.
CASES = [
    ("avg", True, "words", 2, 1, None, 17),
    ("none", False, "words", 3, 2, None, 11),
    ("weighted", False, "words", 2, 1, None, 11),
    ("none", False, "punctuation", 2, 0, None, 21),
    ("none", True, "audio", 2, 1, None, 18),
    ("avg", False, "words", 2, 2, 0.7, 11),
]


@pytest.mark.parametrize("strategy, lang_tag, history, history_words, frame_num, threshold, seed", CASES, ids=str)
def test_imported_model_streams_fbk_words_at_fbk_delays(
    tmp_path, talks, strategy, lang_tag, history, history_words, frame_num, threshold, seed
):
    files = make_fbk_checkpoint(
        tmp_path / "fbk", strategy=strategy, lang_tag=lang_tag, seed=seed, eos_scale=0.5, input_size=80
    )
    mean = np.linspace(8.0, 12.0, 80, dtype=np.float32)
    std = np.linspace(2.0, 4.0, 80, dtype=np.float32)
    np.savez(tmp_path / "gcmvn.npz", mean=mean, std=std)
    zip_path = import_fbk(*files[:6], tmp_path / "model.zip", gcmvn=tmp_path / "gcmvn.npz")
    policy = dict(policy="alignatt") if threshold is None else dict(policy="edatt", attn_threshold=threshold)
    ours = StreamingTranslator.from_pretrained(
        zip_path, tmp_path / "cache", **policy, frame_num=frame_num, frame_unit="position",
        attention_layer=LAYER, segment_ms=SEGMENT_MS, cmvn="global", beam_size=BEAM, maxlen_b=MAX_LEN,
        history=history, history_words=history_words, max_history_seconds=600.0,
    )
    ref = FBKReference.from_files(files.checkpoint, files.tgt_dict, files.src_dict)
    tag = [ref.tgt_symbols.index(LANG_TAG)] if lang_tag else []
    cuts = early = 0
    for number, audio in enumerate(talks):
        expected = fbk_streaming_agent(ref, audio, (mean, std), tag, frame_num, history, history_words, threshold)
        assert stream(ours, audio) == expected, f"talk {number}"
        frames = expected[2]
        cuts += sum(after < before + 40 for before, after in zip(frames, frames[1:]))  # a chunk adds 40 frames
        early += sum(delay < 1000 * len(audio) / RATE for delay in expected[1])
    assert cuts > 0, "some audio must have been cut, or the history selection is not tested"
    assert early > 0, "some words must be written before the end, or the policy is not tested"


def test_simulate_instance_records_the_stream(tmp_path, talks):
    """simulate's record of a talk is what the translator wrote, at its delays."""
    files = make_fbk_checkpoint(tmp_path / "fbk", strategy="avg", seed=3, eos_scale=0.5, input_size=80)
    np.savez(tmp_path / "gcmvn.npz", mean=np.zeros(80, np.float32), std=np.full(80, 5.0, np.float32))
    zip_path = import_fbk(*files[:6], tmp_path / "model.zip", gcmvn=tmp_path / "gcmvn.npz")
    ours = StreamingTranslator.from_pretrained(
        zip_path, tmp_path / "cache", frame_num=1, attention_layer=LAYER, segment_ms=SEGMENT_MS,
        maxlen_b=MAX_LEN, history="words", history_words=2,
    )
    audio = talks[1]
    words, delays, _ = stream(ours, audio)
    record = simulate_instance(ours, audio, 0, "talk", "")
    assert (record.prediction.split(), list(record.delays)) == (words, delays)
