"""Subtitle blocks from hand-made segments: words into blocks and lines, and their times."""

import numpy as np
import pytest

from espnet2_ext.subtitles import SubtitleLimits, TimedSegment, build_blocks
from espnet2_ext.subtitles.blocks import break_lines, fit_times, group_words, proportional_spans, to_ms
from tests.helpers import check_subtitles

LIMITS = SubtitleLimits()


def spans_every(words, ms_per_word):
    return [(k * ms_per_word, (k + 1) * ms_per_word) for k in range(len(words))]


def test_a_line_too_long_is_broken_where_the_lines_are_most_even():
    words = "Der Vater schreibt heute unsere billigen Bücher.".split()  # 48 characters
    assert break_lines(words, 42, 2) == ["Der Vater schreibt heute", "unsere billigen Bücher."]


def test_a_comma_is_a_better_place_for_the_line_break():
    words = "Wenn es regnet, bleiben wir heute lieber zu Hause.".split()
    assert break_lines(words, 42, 2) == ["Wenn es regnet,", "bleiben wir heute lieber zu Hause."]


def test_what_fits_one_line_stays_on_one():
    assert break_lines("Ich schreibe die Geschichten.".split(), 42, 2) == ["Ich schreibe die Geschichten."]


def test_a_word_longer_than_a_line_gets_a_line_of_its_own():
    words = ["Das", "ist", "die", "Donaudampfschifffahrtsgesellschaftskapitänsmützenfabrik."]
    assert break_lines(words, 42, 2) == ["Das ist die", "Donaudampfschifffahrtsgesellschaftskapitänsmützenfabrik."]


def test_more_lines_than_allowed_is_refused():
    with pytest.raises(ValueError, match="need 3 lines"):
        break_lines(["wort"] * 20, 42, 2)


def test_each_sentence_gets_its_block_when_time_allows():
    words = "Ich schreibe die Geschichten. Der Vater schreibt heute.".split()
    assert group_words(words, spans_every(words, 400), LIMITS) == [(0, 4), (4, 8)]


def test_a_sentence_spoken_in_less_than_the_shortest_time_joins_its_neighbour():
    words = "Ja. Der Vater schreibt heute unsere Bücher.".split()
    assert group_words(words, spans_every(words, 300), LIMITS) == [(0, 7)]


def test_a_long_sentence_is_cut_after_a_comma_rather_than_between_other_words():
    words = ("Als wir gestern Abend nach Hause kamen, war die Tür offen "
             "und der Hund saß mitten in der Küche auf dem Tisch.").split()
    groups = group_words(words, spans_every(words, 250), LIMITS)
    assert groups[0] == (0, 7) and words[6] == "kamen,"


def test_a_block_spoken_over_more_than_the_longest_time_is_cut():
    words = "eins zwei drei vier fünf sechs".split()
    groups = group_words(words, spans_every(words, 2000), LIMITS)  # 12 s of speech, 29 characters
    assert all(spans_every(words, 2000)[j - 1][1] - spans_every(words, 2000)[i][0] <= 7000 for i, j in groups)
    assert len(groups) == 2


def test_proportional_spans_share_the_segment_by_characters():
    assert proportional_spans(["ab", "abcd", "a"], 1000, 2000) == [(1000, 1300), (1300, 1800), (1800, 2000)]


def test_a_short_block_is_lengthened_into_the_next_ones_time():
    assert fit_times([(0, 300), (300, 2000)], [1000, 1000], 0, 2500, 7000) == [(0, 1000), (1000, 2000)]


def test_a_block_pushed_past_the_segment_end_pulls_the_earlier_ones_back():
    assert fit_times([(0, 2000), (2000, 2400)], [1000, 1000], 0, 2500, 7000) == [(0, 1500), (1500, 2500)]


def test_needs_longer_than_the_segment_share_it():
    assert fit_times([(0, 500), (500, 3000)], [2000, 1000], 0, 2400, 7000) == [(0, 1600), (1600, 2400)]


def test_a_block_is_never_longer_than_the_longest_time():
    assert fit_times([(0, 9000)], [1000], 0, 9000, 7000) == [(0, 7000)]


def test_times_are_the_milliseconds_jsonl_writes():
    for seconds in np.arange(0, 3, 1 / 16000):  # every sample time: jsonl rounds them to 3 decimals
        assert to_ms(seconds) == to_ms(round(seconds, 3))


def test_attention_times_place_the_blocks_and_proportional_ignores_them():
    text = "Ich schreibe die Geschichten. Der Vater schreibt heute."
    times = [(0.0, 0.4), (0.4, 0.8), (0.8, 1.1), (1.1, 1.5), (1.5, 3.0), (3.0, 3.5), (3.5, 3.8), (3.8, 5.0)]
    segment = TimedSegment(10.0, 15.0, text, [(10 + a, 10 + b) for a, b in times])
    attention = build_blocks([segment], LIMITS, "attention")
    assert [(b.start_ms, b.end_ms) for b in attention] == [(10000, 11500), (11500, 15000)]
    assert [b.text for b in attention] == ["Ich schreibe die Geschichten.", "Der Vater schreibt heute."]
    assert [(b.start_ms, b.end_ms) for b in build_blocks([segment], LIMITS, "proportional")] == [
        (10000, 12679), (12679, 15000)]  # 30 of 56 characters


def test_a_block_never_leaves_its_segment_nor_crosses_into_the_next():
    segments = [TimedSegment(0.0, 2.0, "Eins zwei drei vier fünf sechs sieben acht neun zehn elf."),
                TimedSegment(2.0, 2.6, "Ja."), TimedSegment(5.0, 5.0, ""), TimedSegment(6.0, 9.5, "Gut, danke.")]
    blocks = build_blocks(segments, LIMITS)
    check_subtitles(blocks, segments, LIMITS)
    assert [b.text for b in blocks] == ["Eins zwei drei vier fünf sechs sieben acht neun zehn elf.", "Ja.", "Gut, danke."]
    assert (blocks[1].start_ms, blocks[1].end_ms) == (2000, 2600)  # shorter than 1 s: its segment is


def test_unknown_timing_is_refused():
    with pytest.raises(ValueError, match="timing must be one of attention, proportional"):
        build_blocks([], LIMITS, "dtw")


@pytest.mark.parametrize("limits", [LIMITS, SubtitleLimits(max_chars=32, max_lines=1, max_cps=17)])
def test_a_ten_minute_talk_keeps_every_limit(limits):
    """600 s of segments of 0.5 to 20 s, slow and fast speech, random word times (as attention gives);
    a fast segment cannot give its blocks their reading time, but most can."""
    rng = np.random.default_rng(0)
    vocabulary = [w + p for w in ("und", "die", "Geschichte", "schreibt", "Bücher", "Verantwortungsbewusstsein",
                                  "heute", "ein", "Mann", "trinkt", "Milch") for p in ("", "", "", ",", ".", "?")]
    segments, now = [], 0.0
    while now < 600:
        length = float(rng.uniform(0.5, 20))
        words = list(rng.choice(vocabulary, size=max(1, int(length * rng.uniform(0.5, 2.5)))))  # words/s
        cuts = np.sort(rng.uniform(now, now + length, size=len(words) - 1))
        bounds = [now, *cuts, now + length]
        times = list(zip(bounds[:-1], bounds[1:])) if rng.random() < 0.8 else None
        segments.append(TimedSegment(now, now + length, " ".join(words), times))
        now += length + float(rng.uniform(0, 2))
    for timing in ("attention", "proportional"):
        blocks = build_blocks(segments, limits, timing)
        timed = check_subtitles(blocks, segments, limits)
        assert len(blocks) > 100 and timed > 0.8 * len(blocks)
