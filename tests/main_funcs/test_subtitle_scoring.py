"""Subtitles of talks scored against their reference sentences: SubER and block start errors."""

from pathlib import Path

import pytest

from espnet2_ext.fileio.subtitle_files import subtitle_text
from espnet2_ext.main_funcs.subtitle_scoring import start_errors, suber_score
from espnet2_ext.main_funcs.talk_scoring import score_talks
from espnet2_ext.subtitles import Block
from tests.helpers import TALK_REFERENCES, write_jsonl, write_talk_data_dir

REFERENCE = subtitle_text([Block(0, 2000, ("Ich schreibe die Geschichten.",))], "srt")


@pytest.mark.parametrize("blocks, expected", [
    ([Block(0, 2000, ("Ich schreibe die Geschichten.",))], 0.0),
    ([Block(0, 2000, ("Ich schreibe die Geschichte.",))], 20.0),  # 1 of 4 words and 1 block end
    ([Block(0, 2000, ("Ich schreibe", "die Geschichten."))], 20.0),  # a line break inserted
    ([Block(1000, 3000, ("Ich schreibe die Geschichten.",))], 0.0),  # still overlapping in time
    ([Block(5000, 7000, ("Ich schreibe die Geschichten.",))], 200.0),  # not: all deleted, all inserted
])
def test_suber_counts_word_and_break_edits_of_overlapping_blocks(blocks, expected):
    assert suber_score([subtitle_text(blocks, "srt")], [REFERENCE]) == pytest.approx(expected)


def test_start_errors_compare_the_blocks_that_start_a_sentence():
    blocks = [Block(100, 900, ("a b",)), Block(900, 2000, ("c",)), Block(2500, 3000, ("d e",))]
    lines = ["a b c", "", "d e"]  # the second sentence got no words
    assert start_errors(blocks, lines, [0.0, 1.0, 2.0]) == pytest.approx({0: 0.1, 2: 0.5})


def record(recording: str, segments: list[tuple[float, float, str, list | None]]) -> dict:
    """A jsonl record with segments' words and their times as translate writes them."""
    return {
        "id": recording, "translation": " ".join(text for _, _, text, _ in segments), "source": "", "nbest": None,
        "segments": [
            {"start": start, "end": end, "translation": text, "source": "", "nbest": [],
             "words": None if times is None else [
                 {"word": w, "start": a, "end": b} for w, (a, b) in zip(text.split(), times)]}
            for start, end, text, times in segments
        ],
        "warnings": [], "error": None,
    }


def test_the_references_themselves_score_zero_and_attention_beats_a_bad_proportional_guess(tmp_path: Path):
    """talk_a is translated as its sentences, at their times; talk_b in one segment whose words
    the attention timed right and whose characters do not say when they were spoken."""
    data_dir = write_talk_data_dir(tmp_path / "data")
    talk_a = [(start, end, text, None) for start, end, text in TALK_REFERENCES["talk_a"]]
    sentences = TALK_REFERENCES["talk_b"]
    words = [(w, start, end) for start, end, text in sentences for w in text.split()]
    times = []
    for start, end, text in sentences:  # each sentence's words spread over its own time
        n = len(text.split())
        times += [(round(start + (end - start) * k / n, 3), round(start + (end - start) * (k + 1) / n, 3))
                  for k in range(n)]
    talk_b = [(1.0, 12.0, " ".join(w for w, _, _ in words), times)]  # 3 s of silence after the talk
    hyp = write_jsonl(tmp_path / "talks.jsonl", [record("talk_a", talk_a), record("talk_b", talk_b)])
    scores = score_talks(hyp, data_dir, "de", subtitles=True)
    proportional, attention = scores.result.subtitles  # the default first
    assert (attention.timing, proportional.timing) == ("attention", "proportional")
    assert attention.blocks == 7  # one per sentence: each fits one block
    # the references' one-line sentences: 41 words and 7 block ends; ours break 2 lines too long for one
    assert attention.suber == pytest.approx(100 * 2 / 48, abs=1e-3)
    assert attention.start_error == pytest.approx(0.0, abs=1e-9)
    assert attention.starts_compared == 7 and attention.within_cps == 100.0
    assert proportional.start_error > 0.3 and proportional.suber > attention.suber
    assert "subtitles/reference/talk_b.srt" in scores.subtitle_files
    assert scores.subtitle_files["subtitles/attention/talk_b.srt"].startswith(
        scores.subtitle_files["subtitles/reference/talk_b.srt"][:80])
