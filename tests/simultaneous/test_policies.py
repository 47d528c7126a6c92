"""FBK's simultaneous policies: FBK's own unit-test cases, then the edges they leave out.

The golden cases are those of FBK-fairseq ``fbk_simul_uts/v1_1/test_alignatt.py``,
``test_edatt.py``, ``test_simulseamless_policies.py`` (``get_words``) and
``fbk_simul_uts/v1_0/test_waitk.py``, ``test_local_agreement.py``, with their
numbers and expected outputs. FBK's tests call the agent's ``_policy``, whose
WriteAction text is the word rule applied to what the policy accepts; here that
is ``complete_words(policy(...)).text``, and an empty text is FBK's ReadAction.
"""

import pytest
import torch

from espnet2_ext.simultaneous.policies import (
    alignatt,
    edatt,
    first_banned_position,
    local_agreement,
    source_words_ctc,
    source_words_fixed,
    waitk,
    waitk_words,
)
from espnet2_ext.simultaneous.words import all_words, complete_words, detokenize, first_words

# FBK's mocked dictionary: fairseq's four specials, then the test's symbols.
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581I", "\u2581am", "\u2581a", "\u2581quokka", "."]
EOS = 0  # the mocked agent's eos_idx; its hypotheses end with 0
I, AM, A, QUOKKA, DOT = 4, 5, 6, 7, 8
TAG = 1  # test_multilingual_emission's tag id


def attention(*rows: list[float]) -> torch.Tensor:
    """One row per token, as FBK's tests write it, turned into (positions, tokens)."""
    return torch.tensor(rows).transpose(0, 1)


def written(accepted: list[int]) -> str:
    """What FBK's v1_1 ``_policy`` writes for these accepted ids ("" = ReadAction)."""
    return complete_words(accepted, PIECES, EOS).text


# --------------------------------------------------------------------------- AlignAtt, FBK's cases (f=2)

ALIGNATT_TOKENS = [I, AM, A, QUOKKA, EOS]


def test_fbk_alignatt_first_two_tokens_not_aligned_to_banned_frames():
    att = attention(
        [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
        [0.6, 0.0, 0.05, 0.03, 0.02, 0.3],
        [0.2, 0.05, 0.05, 0.05, 0.35, 0.3],
        [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
        [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
    )
    assert alignatt(ALIGNATT_TOKENS, att, 0, 2) == [I, AM]
    assert written(alignatt(ALIGNATT_TOKENS, att, 0, 2)) == "I"
    assert written(alignatt(ALIGNATT_TOKENS, att, 1, 2)) == ""


def test_fbk_alignatt_no_token_emitted():
    att = attention(
        [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
        [0.03, 0.0, 0.05, 0.6, 0.02, 0.3],
        [0.2, 0.05, 0.05, 0.05, 0.35, 0.3],
        [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
        [0.05, 0.05, 0.05, 0.5, 0.05, 0.3],
    )
    assert alignatt(ALIGNATT_TOKENS, att, 0, 2) == []


ALL_EMITTED = [
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.0, 0.6, 0.05, 0.03, 0.02, 0.3],
    [0.4, 0.05, 0.05, 0.05, 0.15, 0.3],
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
]


@pytest.mark.parametrize("prefix_len, text", [(0, "I am a"), (1, "am a"), (2, "a"), (4, "")])
def test_fbk_alignatt_all_tokens_emitted(prefix_len, text):
    assert written(alignatt(ALIGNATT_TOKENS, attention(*ALL_EMITTED), prefix_len, 2)) == text


@pytest.mark.parametrize("prefix_len, text", [(1, "I am a"), (2, "am a"), (3, "a"), (4, "")])
def test_fbk_alignatt_multilingual_emission(prefix_len, text):
    att = attention([0.2, 0.2, 0.2, 0.2, 0.2, 0.0], *ALL_EMITTED)
    assert written(alignatt([TAG, *ALIGNATT_TOKENS], att, prefix_len, 2)) == text


# --------------------------------------------------------------------------- AlignAtt, edges


def test_alignatt_empty_attention_reads():
    assert alignatt([EOS], torch.zeros(0, 1), 0, 2) == []  # no encoder position
    assert alignatt([I, EOS], torch.ones(1, 2), 0, 0) == []  # only the dropped last position


def test_alignatt_eos_only_hypothesis_reads():
    assert alignatt([TAG, I, EOS], torch.rand(8, 3), 2, 0) == []


@pytest.mark.parametrize("positions, frame_num", [(3, 2), (3, 5), (2, 1)])
def test_alignatt_bans_everything_when_f_covers_the_input(positions, frame_num):
    att = torch.zeros(positions, 3)
    att[0] = 1.0  # every token looks at the oldest position
    assert alignatt([I, AM, EOS], att, 0, frame_num) == []


def test_alignatt_first_allowed_position_just_before_the_window():
    att = torch.zeros(4, 3)  # S=4, f=2: position 0 allowed, 1 and 2 banned, 3 dropped
    att[0, 0] = att[1, 1] = 1.0
    assert alignatt([I, AM, EOS], att, 0, 2) == [I]
    assert alignatt([I, AM, EOS], att, 0, 1) == [I, AM]


def test_alignatt_frame_num_zero_bans_nothing():
    att = torch.zeros(5, 4)
    att[4, :] = 1.0  # most on the dropped last position
    att[3, :] = 0.5  # then on the last position kept, which f=0 allows
    assert alignatt([I, AM, A, EOS], att, 0, 0) == [I, AM, A]


def test_alignatt_argmax_ties_go_to_the_first_position():
    att = torch.tensor([[0.4, 0.1], [0.1, 0.1], [0.4, 0.1], [0.1, 0.7]])  # S=4, f=1: position 2 banned
    assert alignatt([I, EOS], att, 0, 1) == [I]


def test_alignatt_argmax_is_taken_in_float32():
    att = torch.zeros(4, 2, dtype=torch.float64)
    att[0, 0], att[2, 0] = 0.3, 0.3 + 1e-12  # equal in float32: the first (allowed) one wins
    assert alignatt([I, EOS], att, 0, 1) == [I]
    assert alignatt([I, EOS], att.to(torch.bfloat16), 0, 1) == [I]


def test_alignatt_ignores_the_eos_column():
    att = torch.zeros(6, 3)
    att[0, :2] = 1.0
    att[4, 2] = 1.0  # <eos> aligned to a banned position does not matter
    assert alignatt([I, AM, EOS], att, 0, 2) == [I, AM]


# --------------------------------------------------------------------------- AlignAtt, time variant

RUNS = [3, 1, 4, 2, 5]  # ends 3 4 8 10 (15): time stops at 10 once the last position is dropped


@pytest.mark.parametrize(
    "frame_num, banned", [(0, 4), (1, 3), (2, 3), (3, 2), (6, 2), (7, 1), (9, 0), (10, 0), (30, 0)]
)
def test_time_bans_the_positions_reaching_into_the_last_f_frames(frame_num, banned):
    assert first_banned_position(5, frame_num, "time", RUNS) == banned


@pytest.mark.parametrize("positions", [1, 2, 5, 9])
@pytest.mark.parametrize("frame_num", [0, 1, 2, 4, 8, 12])
def test_time_with_one_frame_runs_is_fbks_position_rule(positions, frame_num):
    ones = [1] * positions
    assert first_banned_position(positions, frame_num, "time", ones) == first_banned_position(positions, frame_num)
    assert first_banned_position(positions, frame_num) == max(positions - 1 - frame_num, 0)


def test_time_variant_changes_what_alignatt_accepts():
    att = torch.zeros(5, 3)
    att[1, 0] = att[2, 1] = 1.0  # tokens aligned to positions 1 and 2 (frames [3, 4) and [4, 8))
    tokens = [I, AM, EOS]
    assert alignatt(tokens, att, 0, 2) == [I]  # positions 2, 3 banned
    assert alignatt(tokens, att, 0, 2, "time", RUNS) == [I, AM]  # frames 8..10 banned: position 3
    assert alignatt(tokens, att, 0, 7, "time", RUNS) == []  # frames 3..10 banned: from position 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frame_unit": "time"}, "needs run_frames"),
        ({"frame_unit": "time", "run_frames": [1, 1]}, "needs run_frames"),
        ({"frame_unit": "time", "run_frames": [1, 0, 1, 1, 1, 1]}, ">= 1"),
        ({"run_frames": [1] * 6}, "only read"),
        ({"frame_unit": "frames"}, "frame_unit"),
        ({"frame_num": -1}, "frame_num"),
    ],
)
def test_alignatt_rejects_bad_options(kwargs, message):
    kwargs = {"frame_num": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        alignatt(ALIGNATT_TOKENS, attention(*ALL_EMITTED), 0, **kwargs)


def test_policies_reject_attention_of_another_hypothesis():
    with pytest.raises(ValueError, match="5 tokens"):
        alignatt(ALIGNATT_TOKENS, torch.rand(6, 4), 0, 2)
    with pytest.raises(ValueError, match="prefix_len"):
        edatt(ALIGNATT_TOKENS, torch.rand(6, 5), 6, 2, 0.2)


# --------------------------------------------------------------------------- EDAtt, FBK's cases (lambda=2, alpha=0.2)

EDATT_TOKENS = [I, AM, A, QUOKKA]  # FBK's EDAtt tests give no <eos>


def test_fbk_edatt_first_token_below_threshold():
    att = attention(
        [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
        [0.6, 0.0, 0.05, 0.03, 0.02, 0.3],
        [0.2, 0.35, 0.05, 0.05, 0.05, 0.3],
        [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
    )
    assert edatt(EDATT_TOKENS, att, 0, 2, 0.2) == [I, AM]  # the third's L2 score 0.1/0.412 >= 0.2
    assert written(edatt(EDATT_TOKENS, att, 0, 2, 0.2)) == "I"
    assert written(edatt(EDATT_TOKENS, att, 1, 2, 0.2)) == ""


def test_fbk_edatt_no_tokens_below_threshold():
    att = attention(
        [0.05, 0.05, 0.05, 0.05, 0.5, 0.3],
        [0.02, 0.0, 0.05, 0.03, 0.6, 0.3],
        [0.05, 0.35, 0.05, 0.05, 0.2, 0.3],
        [0.05, 0.05, 0.05, 0.05, 0.5, 0.3],
    )
    assert edatt(EDATT_TOKENS, att, 0, 2, 0.2) == []


@pytest.mark.parametrize("prefix_len, text", [(0, "I am a"), (1, "am a"), (2, "a"), (4, "")])
def test_fbk_edatt_all_tokens_below_threshold(prefix_len, text):
    att = attention(
        [0.5, 0.05, 0.05, 0.05, 0.05, 0.3],
        [0.6, 0.0, 0.05, 0.03, 0.02, 0.3],
        [0.24, 0.35, 0.05, 0.05, 0.01, 0.3],
        [0.58, 0.05, 0.05, 0.01, 0.01, 0.3],
    )
    assert written(edatt(EDATT_TOKENS, att, prefix_len, 2, 0.2)) == text


# --------------------------------------------------------------------------- EDAtt, edges

EARLY = [1.0, 0.0, 0.0, 0.0, 0.0]  # all on the first of 5 positions: score 0
LATE = [0.0, 0.0, 0.0, 1.0, 0.0]  # on the last position kept: score 1


def test_edatt_proposes_eos_and_the_word_rule_drops_it():
    att = attention(EARLY, EARLY, EARLY)
    assert edatt([I, AM, EOS], att, 0, 2, 0.2) == [I, AM, EOS]
    assert complete_words([I, AM, EOS], PIECES, EOS).ids == [I]


def test_edatt_eos_only_hypothesis():
    att = attention(EARLY, EARLY)
    assert edatt([I, EOS], att, 1, 2, 0.2) == [EOS]
    assert complete_words([EOS], PIECES, EOS) == ([], "")
    assert edatt([I, EOS], attention(EARLY, LATE), 1, 2, 0.2) == []


def test_edatt_empty_attention_reads():
    assert edatt([I, EOS], torch.zeros(1, 2), 0, 2, 0.2) == []
    assert edatt([EOS], torch.zeros(0, 1), 0, 2, 0.2) == []


def test_edatt_a_score_equal_to_the_threshold_stops():
    att = attention(EARLY, LATE, EARLY)  # the second token's score is exactly 1
    assert edatt([I, AM, EOS], att, 0, 2, 1.0) == [I]
    assert edatt([I, AM, EOS], att, 0, 2, 1.5) == [I, AM, EOS]


def test_edatt_frame_num_zero_sums_every_position():
    att = attention(EARLY, EARLY, EARLY)  # a non-zero row sums to >= 1 once L2-normalised
    assert edatt([I, AM, EOS], att, 0, 0, 0.99) == []
    assert edatt([I, AM, EOS], att, 0, 1, 0.99) == [I, AM, EOS]


def test_edatt_with_a_language_tag_scores_each_token_with_the_next_ones_attention():
    tokens = [TAG, I, AM, EOS]
    late_am = attention(EARLY, EARLY, LATE, EARLY)
    assert edatt(tokens, late_am, 1, 2, 0.5) == [I]  # the tag column kept: what FBK does without a tag
    assert edatt(tokens, late_am, 1, 2, 0.5, has_lang_tag=True) == []  # "am" looks late: "I" waits
    late_eos = attention(EARLY, EARLY, EARLY, LATE)
    assert edatt(tokens, late_eos, 1, 2, 0.5) == [I, AM]
    assert edatt(tokens, late_eos, 1, 2, 0.5, has_lang_tag=True) == [I]  # <eos>'s score stops "am"
    late_i = attention(EARLY, LATE, EARLY, EARLY)
    assert edatt(tokens, late_i, 1, 2, 0.5) == []
    assert edatt(tokens, late_i, 1, 2, 0.5, has_lang_tag=True) == [I, AM, EOS]  # "I"'s own row unread


@pytest.mark.parametrize("frame_num", [1, 2, 4, 9])
def test_edatt_scores_reach_sqrt_lambda_only_for_a_row_uniform_over_the_last_lambda(frame_num):
    """Cauchy-Schwarz: lambda values of a unit-L2 row sum to at most sqrt(lambda), reached by a
    row uniform over them and 0 elsewhere; no softmax row goes past it (float32 rounding of a
    nearly one-hot row reaches it for lambda 1), so options.py refuses attn_threshold > sqrt(lambda)."""
    bound = frame_num**0.5
    positions = frame_num + 6  # the last one is dropped
    uniform = torch.zeros(positions, 2)
    uniform[positions - 1 - frame_num : positions - 1, 0] = 0.3
    assert edatt([I, EOS], uniform, 0, frame_num, bound - 1e-5) == []  # reached: READ
    assert edatt([I, EOS], uniform, 0, frame_num, bound + 1e-5) == [I, EOS]
    generator = torch.Generator().manual_seed(0)
    for scale in (1.0, 10.0, 100.0):  # softmax of ever sharper logits
        logits = scale * torch.randn(2000, positions, generator=generator)
        logits[:, positions - 1 - frame_num : positions - 1] += scale  # attention drawn to the end
        for row in torch.softmax(logits, dim=1):
            assert edatt([I, EOS], torch.stack([row, row], dim=1), 0, frame_num, bound + 1e-5) == [I, EOS]


def test_edatt_language_tag_must_be_in_the_prefix():
    with pytest.raises(ValueError, match="has_lang_tag"):
        edatt([TAG, I, EOS], torch.rand(5, 3), 0, 2, 0.2, has_lang_tag=True)


# --------------------------------------------------------------------------- local agreement

WORD_IDS = {w: n for n, w in enumerate(["<eos>", "<langtag>", "I", "am", "a", "an", "quokka.", "elephant.", "Hello"])}


def ids(*words: str) -> list[int]:
    return [WORD_IDS[w] for w in words]


@pytest.mark.parametrize(
    "previous, current, prefix_len, agreed",
    [  # FBK v1_0 test_local_agreement.py; with three chunks only the last two count
        (["I", "am", "a", "quokka."], ["I", "am", "an", "elephant."], 0, ["I", "am"]),
        (["I", "am", "a", "quokka."], ["I", "am", "a", "quokka."], 0, ["I", "am", "a", "quokka."]),
        (["I", "am", "a", "quokka."], ["Hello", "I", "am", "a", "quokka."], 0, []),
        (["I", "am", "a", "quokka."], ["I", "am", "an", "elephant."], 1, ["am"]),
        (["<langtag>", "I", "am", "a", "quokka."], ["<langtag>", "I", "am", "an", "elephant."], 0,
         ["<langtag>", "I", "am"]),
    ],
)
def test_fbk_local_agreement(previous, current, prefix_len, agreed):
    assert local_agreement(ids(*previous), ids(*current), prefix_len, WORD_IDS["<eos>"]) == ids(*agreed)


def test_local_agreement_first_hypothesis_reads():
    assert local_agreement(None, ids("I", "am"), 0, 0) == []


def test_local_agreement_stops_before_eos():
    eos = WORD_IDS["<eos>"]
    assert local_agreement(ids("I", "am", "<eos>"), ids("I", "am", "<eos>"), 0, eos) == ids("I", "am")
    assert local_agreement(ids("I", "<eos>"), ids("I", "<eos>", "am"), 0, eos) == ids("I")
    assert local_agreement(ids("I", "<eos>"), ids("I", "<eos>"), 1, eos) == []


# --------------------------------------------------------------------------- wait-k

WAITK_HYPO = [I, AM, A, QUOKKA, DOT, 2]  # FBK's test_waitk.py: encode_line appends fairseq's </s> (2)


@pytest.mark.parametrize(
    "k, written_words, expected",
    [(0, 0, [I, AM, A, QUOKKA, DOT, 2]), (2, 0, [I, AM]), (2, 1, [I]), (4, 0, [])],
)
def test_fbk_waitk(k, written_words, expected):
    assert waitk(WAITK_HYPO, 0, PIECES, 4, written_words, k) == expected  # n_audio_words = 4


def test_waitk_words_counts_source_words_beyond_the_lag():
    assert waitk_words(7, 2, 3) == 2
    assert waitk_words(5, 2, 3) == 0
    assert waitk_words(4, 2, 3) == 0
    with pytest.raises(ValueError, match="k must"):
        waitk_words(4, 0, -1)


def test_waitk_fixed_mode_counts_one_word_per_segment_factor_frames():
    assert source_words_fixed(31, 8) == 3  # 31 uncompressed frames = 1.24 s: 3 words of 320 ms
    assert source_words_fixed(32, 8) == 4
    assert waitk(WAITK_HYPO, 0, PIECES, source_words_fixed(32, 8), 0, 3) == [I]
    with pytest.raises(ValueError, match="segment_factor"):
        source_words_fixed(32, 0)


def test_waitk_adaptive_mode_counts_the_ctc_transcript_words():
    assert source_words_ctc("") == 0
    assert source_words_ctc("so we went there") == 4
    assert waitk(WAITK_HYPO, 0, PIECES, source_words_ctc("so we went there"), 1, 1) == [I, AM]


def test_waitk_after_a_prefix_takes_the_end_of_a_word_with_the_first_word():
    pieces = [*PIECES, "\u2581qu", "okka"]
    qu, okka = 9, 10
    tokens = [I, qu, okka, AM, EOS]  # "I qu" committed, "okka" finishes the word
    assert waitk(tokens, 2, pieces, 5, 0, 4) == [okka, AM, EOS]  # as many words as allowed: <eos> too
    assert waitk(tokens, 2, pieces, 5, 0, 5) == []
    assert first_words(tokens[2:], pieces, 0) == [okka]


# --------------------------------------------------------------------------- the v1_1 word rule

SEAMLESS = ["<eos>", "Hi", ",", "\u2581I", "\u2581am", "\u2581S", "ara", "\u2581and"]


@pytest.mark.parametrize(
    "candidates, text",
    [  # FBK v1_1 test_simulseamless_policies.py test_get_words (None there is "" here)
        ([1, 2, 3, 4, 5, 6, 7], "Hi, I am Sara"),
        ([1, 2, 3, 4, 5, 6], "Hi, I am"),
        ([1, 2], ""),
        ([], ""),
    ],
)
def test_fbk_get_words(candidates, text):
    assert complete_words(candidates, SEAMLESS, 0).text == text


def test_complete_words_commits_the_kept_ids_only():
    assert complete_words([1, 2, 3, 4, 5, 6, 7], SEAMLESS, 0).ids == [1, 2, 3, 4, 5, 6]
    assert complete_words([1, 2, 3, 4, 5, 6], SEAMLESS, 0).ids == [1, 2, 3, 4]
    assert complete_words([3], SEAMLESS, 0) == ([], "")  # a lone "▁I" may still continue
    assert complete_words([6, 3, 0], SEAMLESS, 0) == ([6], "ara")  # a word begun in the prefix ends


def test_all_words_writes_everything_but_eos():
    assert all_words([3, 4, 5, 6, 0], SEAMLESS, 0) == ([3, 4, 5, 6], "I am Sara")
    assert all_words([0], SEAMLESS, 0) == ([], "")
    assert all_words([3, 4, 5], SEAMLESS, 0) == ([3, 4, 5], "I am S")


def test_detokenize_is_fairseqs_sentencepiece_string():
    assert detokenize([3, 4, 0, 5, 6], SEAMLESS, 0) == "I am Sara"
    assert detokenize([2, 3, 3], [*SEAMLESS[:3], "\u2581x"], 0) == ", x x"
    assert detokenize([], SEAMLESS, 0) == ""
