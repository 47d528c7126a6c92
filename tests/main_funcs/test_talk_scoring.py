"""Tests for espnet2_ext/main_funcs/talk_scoring.py (whole talks re-segmented onto the
reference sentences with mweralign, then scored as gold segmentation is)."""

import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from espnet2_ext.main_funcs.talk_alignment import align_talk, read_references
from espnet2_ext.main_funcs.talk_scoring import score_talks
from tests.helpers import TALK_REFERENCES, talk_record, talk_utt_id, write_jsonl, write_talk_data_dir

REFS = [text for sentences in TALK_REFERENCES.values() for _, _, text in sentences]
REF_WORDS = sum(len(text.split()) for text in REFS)
UTT_IDS = [talk_utt_id(rec, start, end) for rec, sentences in TALK_REFERENCES.items() for start, end, _ in sentences]

# Our segmentation cut the talks elsewhere than the sentences: mid-sentence, two in one.
MOVED_BOUNDARIES = {
    "talk_a": ["Der Vater schreibt heute", "unsere billigen Bücher. Ich schreibe die Geschichten. Ein Mann",
               "trinkt um fünf Uhr die frische Milch."],
    "talk_b": ["Wir übersetzen Sprache direkt in Text. Die Katze sitzt auf der Matte. Heute regnet es nicht. "
               "Das ist ein kleiner Test."],
}
# Translation errors well inside sentences, so the best cut is at the sentence ends: the
# lines mweralign must find, segmented by hand, and their word errors counted by hand.
PERTURBED = {
    "talk_a": ["Der Vater schreibt unsere teuren Bücher. Ich", "schreibe Geschichten.",
               "Ein Mann trinkt um fünf die frische Milch."],
    "talk_b": ["Wir übersetzen Sprache in Text. Die Katze sitzt auf", "der Matte. Heute regnet es nie.",
               "Das ist ein kleiner kleiner Test."],
}
PERTURBED_LINES = [
    "Der Vater schreibt unsere teuren Bücher.",  # heute deleted, billigen -> teuren: 2 errors
    "Ich schreibe Geschichten.",  # die deleted: 1
    "Ein Mann trinkt um fünf die frische Milch.",  # Uhr deleted: 1
    "Wir übersetzen Sprache in Text.",  # direkt deleted: 1
    "Die Katze sitzt auf der Matte.",
    "Heute regnet es nie.",  # nicht. -> nie.: 1
    "Das ist ein kleiner kleiner Test.",  # kleiner inserted: 1
]
PERTURBED_ERRORS = 7


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_talk_data_dir(tmp_path / "tst-COMMON")


def translations(tmp_path: Path, talks: dict[str, list[str]]) -> Path:
    return write_jsonl(tmp_path / "talks.jsonl", [talk_record(rec, segments) for rec, segments in talks.items()])


def test_references_are_each_talks_sentences_in_time_order(data_dir: Path) -> None:
    """segments lists the utterances latest first; the sentences come back in time order."""
    talks = read_references(data_dir)
    assert [t.recording_id for t in talks] == ["talk_a", "talk_b"]
    assert [list(t.sentences) for t in talks] == [[s for _, _, s in TALK_REFERENCES[r]] for r in ("talk_a", "talk_b")]
    assert [u for t in talks for u in t.utt_ids] == UTT_IDS


def test_moved_boundaries_score_as_the_references_against_themselves(data_dir: Path, tmp_path: Path) -> None:
    scores = score_talks(translations(tmp_path, MOVED_BOUNDARIES), data_dir, "de")
    gold = sacrebleu.corpus_bleu(REFS, [REFS])
    assert gold.score == pytest.approx(100.0)
    assert scores.aligned == list(zip(UTT_IDS, REFS))
    assert scores.result.bleu == pytest.approx(gold.score)
    assert scores.result.chrf == pytest.approx(100.0)
    assert scores.result.n_segments == len(REFS) == 7
    assert (scores.result.talks.n_talks, scores.result.talks.n_segments) == (2, 4)
    assert scores.result.talks.as_wer == 0.0


def test_perturbed_talks_score_what_sacrebleu_gives_on_the_hand_segmented_lines(data_dir: Path, tmp_path: Path) -> None:
    scores = score_talks(translations(tmp_path, PERTURBED), data_dir, "de")
    assert [line for _, line in scores.aligned] == PERTURBED_LINES
    expected_bleu = sacrebleu.corpus_bleu(PERTURBED_LINES, [REFS])
    expected_chrf = sacrebleu.corpus_chrf(PERTURBED_LINES, [REFS])
    assert 20 < expected_bleu.score < 90
    assert scores.result.bleu == pytest.approx(expected_bleu.score)
    assert scores.result.chrf == pytest.approx(expected_chrf.score)
    assert scores.result.talks.n_segments == 6
    assert scores.result.talks.as_wer == pytest.approx(100 * PERTURBED_ERRORS / REF_WORDS, abs=1e-4)


def test_talks_are_matched_by_recording_id(data_dir: Path, tmp_path: Path) -> None:
    """Records in another order still score 100; each talk given the other's translation scores badly."""
    records = [talk_record(rec, MOVED_BOUNDARIES[rec]) for rec in ("talk_b", "talk_a")]
    reversed_order = write_jsonl(tmp_path / "reversed.jsonl", records)
    assert score_talks(reversed_order, data_dir).result.bleu == pytest.approx(100.0)
    swapped = write_jsonl(tmp_path / "swapped.jsonl", [
        talk_record("talk_a", MOVED_BOUNDARIES["talk_b"]), talk_record("talk_b", MOVED_BOUNDARIES["talk_a"]),
    ])
    result = score_talks(swapped, data_dir).result
    assert result.bleu < 10
    assert result.talks.as_wer > 80


def test_empty_translations_give_empty_lines(data_dir: Path, tmp_path: Path) -> None:
    scores = score_talks(translations(tmp_path, {"talk_a": [], "talk_b": [""]}), data_dir)
    assert scores.aligned == [(utt, "") for utt in UTT_IDS]
    assert scores.result.bleu == 0.0 and scores.result.chrf == 0.0
    assert scores.result.talks.n_segments == 1
    assert scores.result.talks.as_wer == 100.0  # every reference word deleted


def test_an_empty_last_reference_sentence_keeps_its_line(tmp_path: Path) -> None:
    """mweralign drops a last empty reference line unless it ends with a newline."""
    talks = {"talk_a": [(0.0, 1.0, "Ich schreibe die Geschichten."), (1.5, 2.0, "")]}
    data_dir = write_talk_data_dir(tmp_path / "data", talks)
    scores = score_talks(translations(tmp_path, {"talk_a": ["Ich schreibe die Geschichten."]}), data_dir)
    assert [line for _, line in scores.aligned] == ["Ich schreibe die Geschichten.", ""]


def test_mwerAlign_progress_lines_stay_off_stdout_and_stderr(
    data_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Its C++ core prints them on file descriptor 2, under Python's sys.stderr."""
    score_talks(translations(tmp_path, PERTURBED), data_dir)
    print("after", file=sys.stderr)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "after\n")


def test_importing_mweralign_leaves_logging_alone() -> None:
    """mweralign calls logging.basicConfig(level=INFO) at import; other libraries' INFO records stay silent."""
    code = (
        "import logging\n"
        "from espnet2_ext.main_funcs.talk_alignment import TalkReference, align_talk\n"
        "align_talk(TalkReference('r', ('u',), ('a b',)), 'a b')\n"
        "logging.getLogger('somelibrary').info('should not be printed')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (result.stdout, result.stderr) == ("", "")


def test_align_talk_counts_word_errors() -> None:
    from espnet2_ext.main_funcs.talk_alignment import TalkReference

    reference = TalkReference("r", ("u1", "u2", "u3"), ("a b c", "d e f", "g h"))
    talk = align_talk(reference, "a b x d e f g")
    assert talk.lines == ("a b x", "d e f", "g")
    assert (talk.errors, talk.ref_words) == (pytest.approx(2.0), 8)
