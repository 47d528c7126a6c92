"""StreamAtt's history selection on FBK's own unit-test cases, and its pure functions alone.

FBK-fairseq ``fbk_simul_uts/v1_1/test_streamatt.py`` drives its ``StreamingSTAgent``
with a mocked hypothesis: vocabulary ``<s> <pad> </s> <unk> ▁I ▁am ▁a ▁quokka .``
(ids 0-8; the mock uses 0 as ``</s>``), 6 encoder positions, f = 2, a 24-frame audio
history and no CTC compression. Each case here is one policy call: AlignAtt, the word
rule, the text selection and the audio cut, composed as
:class:`~espnet2_ext.streaming.translator.StreamingTranslator` composes them, and gives
FBK's expected write and audio length.

Two of FBK's punctuation cases set the text history on an object the agent does not
read (``self.agent.states`` where the policy reads ``self.agent.simulst_agent.states``),
so they run with the history the previous case left; the cases below give that
history, which is what FBK's assertions hold for.
"""

import pytest
import torch

from espnet2_ext.simultaneous.policies import alignatt
from espnet2_ext.simultaneous.words import complete_words
from espnet2_ext.streaming.history import (
    attended_frames_to_cut,
    fixed_audio_frames_to_cut,
    punctuation_history,
    select_text,
    words_history,
)

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581I", "\u2581am", "\u2581a", "\u2581quokka", "."]
EOS = 0  # the mock's
I, AM, A, QUOKKA, DOT = 4, 5, 6, 7, 8
FRAME_NUM = 2
SUBSAMPLING = 4

# One row per token (FBK writes them so and transposes): attention over the 6 positions.
ATT_NO_PREFIX = [
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.6, 0.0, 0.05, 0.03, 0.02, 0.3],
    [0.2, 0.05, 0.05, 0.05, 0.35, 0.3],
    [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
    [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
]
ATT_SECOND_FRAME = [
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.0, 0.6, 0.05, 0.03, 0.02, 0.3],
    [0.05, 0.5, 0.05, 0.05, 0.05, 0.3],
    [0.0, 0.6, 0.05, 0.03, 0.02, 0.3],
    [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
]
ATT_THIRD_FRAME = [
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.0, 0.6, 0.05, 0.03, 0.02, 0.3],
    [0.0, 0.05, 0.6, 0.03, 0.02, 0.3],
    [0.05, 0.05, 0.05, 0.05, 0.5, 0.3],
    [0.05, 0.05, 0.05, 0.05, 0.5, 0.3],
]
ATT_LAST_FRAME = [
    [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
    [0.03, 0.0, 0.05, 0.6, 0.02, 0.3],
    [0.2, 0.05, 0.05, 0.05, 0.35, 0.3],
    [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
    [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
]
ATT_FIRST_FRAME = [
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.0, 0.6, 0.05, 0.03, 0.02, 0.3],
    [0.4, 0.05, 0.05, 0.05, 0.15, 0.3],
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
]


def streamatt_call(history, words, tokens, rows, prefix_len, text_history, frames):
    """One policy call and the selection after it: (text written, text history, audio frames left)."""
    attention = torch.tensor(rows).T  # (positions, tokens)
    accepted = alignatt(tokens, attention, prefix_len, FRAME_NUM)
    written = complete_words(accepted, PIECES, EOS)
    text = text_history + written.ids
    kept = select_text(history, text, PIECES, words, max_tokens=100)
    discarded = len(text) - len(kept)
    if history == "audio":
        cut = fixed_audio_frames_to_cut(text[:discarded], PIECES)
    else:
        cut = attended_frames_to_cut(attention, 0, discarded, None, SUBSAMPLING)
    return written.text, kept, frames - min(cut, frames)


FBK_CASES = {  # name: (history, words, tokens, attention, prefix_len, text history, frames) -> (write, frames)
    "no_prefix": ("words", 2, [I, AM, A, QUOKKA, EOS], ATT_NO_PREFIX, 0, [], 24, "I", 24),
    "no_prefix, prefix 1": ("words", 2, [I, AM, A, QUOKKA, EOS], ATT_NO_PREFIX, 1, [I], 24, "", 24),
    "fixed_words 1": ("words", 2, [I, AM, A, QUOKKA, EOS], ATT_SECOND_FRAME, 0, [], 24, "I am a", 20),
    "fixed_words 2": ("words", 2, [I, AM, A, QUOKKA, EOS], ATT_SECOND_FRAME, 2, [I, AM], 24, "a", 20),
    "fixed_words 3": ("words", 2, [I, AM, A, QUOKKA, EOS], ATT_THIRD_FRAME, 1, [I], 24, "am", 24),
    "punctuation 1": ("punctuation", 2, [I, DOT, AM, QUOKKA, EOS], ATT_SECOND_FRAME, 1, [I], 24, ". am", 20),
    "punctuation 2": ("punctuation", 2, [I, DOT, AM, QUOKKA, EOS], ATT_SECOND_FRAME, 2, [AM], 20, "am", 20),
    "punctuation 3": ("punctuation", 2, [I, AM, A, QUOKKA, EOS], ATT_SECOND_FRAME, 2, [AM, AM], 24, "a", 24),
    "fixed_audio 1": ("audio", 1, [I, AM, QUOKKA, DOT, EOS], ATT_SECOND_FRAME, 0, [], 112, "I am", 84),
    "fixed_audio 2": ("audio", 1, [I, AM, QUOKKA, DOT, EOS], ATT_SECOND_FRAME, 1, [I], 112, "am", 84),
    "fixed_audio 3": ("audio", 1, [I, AM, QUOKKA, DOT, EOS], ATT_SECOND_FRAME, 2, [AM], 112, "", 112),
    "no_token_emitted": ("words", 2, [I, AM, A, QUOKKA, EOS], ATT_LAST_FRAME, 0, [], 24, "", 24),
}


@pytest.mark.parametrize("name", FBK_CASES)
def test_fbk_streamatt_cases(name):
    history, words, tokens, rows, prefix_len, text_history, frames, write, left = FBK_CASES[name]
    written, _, frames_left = streamatt_call(history, words, tokens, rows, prefix_len, text_history, frames)
    assert (written, frames_left) == (write, left)


def test_fbk_all_tokens_emitted():
    """FBK's ``test_all_tokens_emitted``: with f = 2 nothing is too recent, so each call writes
    all but the last word after its prefix; with everything forced it reads."""
    text_history: list[int] = []
    for prefix_len, expected in enumerate(["I am a", "am a", "a"]):
        written, text_history, _ = streamatt_call(
            "words", 2, [I, AM, A, QUOKKA, EOS], ATT_FIRST_FRAME, prefix_len, text_history, 24
        )
        assert written == expected
    assert streamatt_call("words", 2, [I, AM, A, QUOKKA, EOS], ATT_FIRST_FRAME, 4, text_history, 24)[0] == ""


# --------------------------------------------------------------------------- the functions alone

SP = ["<blank>", "<unk>", "\u2581Ich", "\u2581bin", "\u2581ein", "\u2581Qu", "okka", ".", "\u2581Er", "!", "<sos/eos>"]


def test_words_history_keeps_whole_words_from_their_first_piece():
    ids = [2, 3, 4, 5, 6, 7, 8]  # ▁Ich ▁bin ▁ein ▁Qu okka . ▁Er
    assert words_history(ids, SP, 1) == [8]
    assert words_history(ids, SP, 2) == [5, 6, 7, 8]  # "Quokka." is one word, its pieces all kept
    assert words_history(ids, SP, 10) == ids
    assert words_history([6, 7], SP, 1) == [6, 7]  # no word start: all kept
    with pytest.raises(ValueError, match="words must be >= 1"):
        words_history(ids, SP, 0)


def test_punctuation_history_keeps_what_follows_the_last_mark_up_to_a_cap():
    assert punctuation_history([2, 7, 3, 4], SP, 100) == [3, 4]
    assert punctuation_history([2, 7, 3, 9], SP, 100) == []  # ends with "!"
    assert punctuation_history([2, 3, 4], SP, 100) == [2, 3, 4]
    assert punctuation_history([2, 3, 4, 5, 6], SP, 2) == [5, 6]


def test_attended_cut_skips_the_tag_and_the_discarded_columns_and_maps_runs_to_frames():
    # 5 positions (the last dropped), tokens: tag, 2 discarded, 2 kept, 1 not written, </s>
    aligned = [0, 0, 0, 3, 1, 2, 4]  # each column's most attended position
    attention = torch.zeros(5, len(aligned))
    attention[aligned, range(len(aligned))] = 1.0
    assert attended_frames_to_cut(attention, 1, 2, None, 4) == 1 * 4  # kept + unwritten: 3, 1, 2 -> 1
    assert attended_frames_to_cut(attention, 1, 2, [3, 2, 1, 1, 1], 8) == 3 * 8  # one run of 3 before position 1
    assert attended_frames_to_cut(attention, 1, 0, [3, 2, 1, 1, 1], 8) == 0  # nothing discarded, nothing cut
    assert attended_frames_to_cut(attention, 0, 4, None, 4) == 1 * 4  # no tag: 4 discarded, rows 1, 2 left


def test_past_discarded_cuts_at_least_past_what_the_discarded_text_attended_to():
    """A token still to come that looks back at the old sentence keeps FBK's cut early;
    ours cuts past the discarded text's last position."""
    aligned = [0, 2, 3, 1, 4, 4]  # tag; discarded: 2, 3; kept: 1; unwritten: 4; </s>
    attention = torch.zeros(6, len(aligned))
    attention[aligned, range(len(aligned))] = 1.0
    assert attended_frames_to_cut(attention, 1, 2, None, 4) == 1 * 4
    assert attended_frames_to_cut(attention, 1, 2, None, 4, "past_discarded") == 4 * 4
    assert attended_frames_to_cut(attention, 1, 2, [1, 2, 1, 3, 1, 1], 4, "past_discarded") == (1 + 2 + 1 + 3) * 4
    aligned[3] = 5  # a kept token past them all: the earliest kept one decides, as FBK's
    attention = torch.zeros(7, len(aligned))
    attention[aligned, range(len(aligned))] = 1.0
    assert attended_frames_to_cut(attention, 1, 2, None, 4, "past_discarded") == 4 * 4
    with pytest.raises(ValueError, match="rule must be one of fbk, past_discarded"):
        attended_frames_to_cut(attention, 1, 2, None, 4, "latest")


def test_fixed_audio_counts_words_as_fbk_does():
    assert fixed_audio_frames_to_cut([2, 3], SP) == 2 * 28
    assert fixed_audio_frames_to_cut([5, 6, 7], SP) == 28  # ▁Qu okka . : one word
    assert fixed_audio_frames_to_cut([6, 7, 8], SP) == 2 * 28  # the end of a word, then ▁Er
    assert fixed_audio_frames_to_cut([], SP) == 0
