"""Words timed by the cross-attention (SBAAM's measure), on hand-made attention."""

import numpy as np
import pytest

from espnet2_ext.subtitles.limits import SubtitleLimits
from espnet2_ext.subtitles.timing import align_words, attention_word_times, piece_words, span_seconds


def test_pieces_spell_words_with_their_pieces():
    assert piece_words(["▁Ha", "us", "▁", ",", "▁ja"]) == [("Haus", 0, 2), (",", 3, 4), ("ja", 4, 5)]
    assert piece_words(["▁Der", "▁Va", "ter", "."]) == [("Der", 0, 1), ("Vater.", 1, 4)]


def one_hot(positions, width):
    attention = np.full((len(positions), width), 0.01)
    for row, p in enumerate(positions):
        attention[row, p] = 1.0
    return attention


def test_each_word_gets_the_positions_its_tokens_attend_to():
    attention = one_hot([1, 2, 5, 6, 8], 10)  # tokens of 3 words: (0, 2), (2, 4), (4, 5)
    bounds = align_words(attention, [(0, 2), (2, 4), (4, 5)])
    assert bounds[0] == 0 and bounds[-1] == 10
    assert bounds[1] in (3, 4, 5) and bounds[2] in (7, 8)  # between the words' attended positions


def test_the_alignment_is_the_best_cut_of_sbaam_sum():
    """Against every cut of 6 positions among 3 words: none has a larger sum of standardised attention."""
    rng = np.random.default_rng(1)
    attention = rng.dirichlet(np.ones(6), size=4)
    words = [(0, 1), (1, 3), (3, 4)]
    scores = (attention - attention.mean(0)) / attention.std(0)
    scores[scores < 0] = -0.01
    per_word = np.stack([scores[a:b].sum(0) for a, b in words])

    def total(bounds):
        return sum(per_word[w, bounds[w]:bounds[w + 1]].sum() for w in range(3))

    best = max(total([0, a, b, 6]) for a in range(7) for b in range(a, 7))
    assert total(align_words(attention, words)) == pytest.approx(best)


def test_positions_become_seconds_through_the_compression_runs():
    # 3 positions of 2, 1 and 3 CTC frames of 80 ms
    assert span_seconds([0, 1, 2, 3], [2, 1, 3], 0.08) == pytest.approx([0.0, 0.16, 0.24, 0.48])


def test_word_times_cover_the_segment_in_order():
    pieces = ["▁Ich", "▁schreib", "e", "▁Geschichten", "."]
    attention = one_hot([0, 2, 2, 4, 5], 6)
    times = attention_word_times(attention, pieces, "Ich schreibe Geschichten.", [1, 1, 2, 1, 1, 2], 0.04, 0.35)
    # positions [0, 1), [1, 3), [3, 6) (ties go to the earliest cut), the last word ending with the segment
    assert times == pytest.approx([(0.0, 0.04), (0.04, 0.16), (0.16, 0.35)])


def test_pieces_that_do_not_spell_the_text_give_no_times():
    attention = one_hot([0, 1], 3)
    assert attention_word_times(attention, ["▁<unk>", "▁ja"], "⁇ ja", [1, 1, 1], 0.04, 0.12) is None


def test_limits_that_cannot_be_met_are_refused():
    with pytest.raises(ValueError, match="max_chars 3: a line must hold at least 16 characters"):
        SubtitleLimits(max_chars=3)
    with pytest.raises(ValueError, match="max_lines must be >= 1"):
        SubtitleLimits(max_lines=0)
    with pytest.raises(ValueError, match="max_cps must be > 0"):
        SubtitleLimits(max_cps=0)
    with pytest.raises(ValueError, match=r"max_seconds \(0.5\) must be >= min_seconds \(1\)"):
        SubtitleLimits(max_seconds=0.5)
    with pytest.raises(ValueError, match="leaves 14 characters per block, fewer than one line of max_chars 42"):
        SubtitleLimits(max_cps=2)
