"""Scoring whole talks translated with our own segmentation, as IWSLT scores them.

Each talk's translation is cut onto its reference sentences as IWSLT cuts it
(:mod:`espnet2_ext.main_funcs.talk_alignment`: mwerSegmenter's algorithm), then the lines
are scored by :func:`espnet2_ext.main_funcs.scoring.score_lines`, the gold scoring's own
code, so the two scores differ only by the segmentation.

Hypotheses: ``translate --format jsonl``, one record per recording (see
:mod:`espnet2_ext.inference.output_formats`). References: a Kaldi data dir's
``segments`` (which recording, and when) and ``text.tgt``. The talks' subtitles are
scored too (:mod:`espnet2_ext.main_funcs.subtitle_scoring`).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from espnet2_ext.main_funcs.experiment import ScoreResult, TalkSegmentation
from espnet2_ext.main_funcs.scoring import id_mismatch, score_lines
from espnet2_ext.main_funcs.subtitle_scoring import score_subtitles
from espnet2_ext.main_funcs.talk_alignment import (
    AlignedTalk,
    TalkReference,
    TalkScoringError,
    TalkTranslation,
    align_talk,
    read_references,
    read_translations,
)

ALIGNED_TXT = "aligned.txt"  # the re-segmented translation, ``utt-id text`` in reference order


@dataclass(frozen=True)
class TalkScores:
    """The scores, the re-segmented translation as (utterance id, line) in reference order,
    and the subtitle files scored (path under the score dir -> SRT text)."""

    result: ScoreResult
    aligned: list[tuple[str, str]]
    subtitle_files: dict[str, str] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- scoring


def paired_talks(
    hyp_path: Path, data_dir: Path
) -> tuple[list[TalkReference], dict[str, TalkTranslation]]:
    """The references and translations of a test set, checked to cover the same recordings."""
    references = read_references(data_dir)
    translations = read_translations(hyp_path)
    recordings = {talk.recording_id for talk in references}
    problem = id_mismatch(
        recordings, set(translations),
        "recordings have no translation", "translated recordings have no reference sentences",
    )
    if problem:
        raise TalkScoringError(f"{hyp_path} does not match {data_dir}: {problem}")
    return references, translations


def score_talks(hyp_path: Path, data_dir: Path, tgt_lang: str = "", subtitles: bool = False) -> TalkScores:
    """Every talk of ``data_dir`` re-segmented onto its reference sentences, then scored as
    gold segmentation is (:func:`score_lines`, one line per reference sentence); with
    ``subtitles``, the talks' subtitles too
    (:func:`~espnet2_ext.main_funcs.subtitle_scoring.score_subtitles`)."""
    references, translations = paired_talks(hyp_path, data_dir)
    aligned: list[tuple[str, str]] = []
    talks: dict[str, AlignedTalk] = {}
    refs: list[str] = []
    errors, ref_words = 0.0, 0
    for reference in references:
        translation = translations[reference.recording_id]
        if subtitles and translation.text.split() != [
            w for s in translation.segments for w in s.text.split()
        ]:
            raise TalkScoringError(
                f"{hyp_path}: recording {reference.recording_id}: 'translation' is not its segments' translations"
            )
        talk = talks[reference.recording_id] = align_talk(reference, translation.text)
        aligned += zip(reference.utt_ids, talk.lines)
        refs += reference.sentences
        errors, ref_words = errors + talk.errors, ref_words + talk.ref_words
    segmentation = TalkSegmentation(
        n_talks=len(references),
        n_segments=sum(t.n_segments for t in translations.values()),
        as_wer=100 * errors / ref_words if ref_words else None,
    )
    hyps = [line for _, line in aligned]
    result = score_lines(hyps, refs, tgt_lang, hyp=str(hyp_path), ref=str(data_dir / "text.tgt"), talks=segmentation)
    if not subtitles:
        return TalkScores(result, aligned)
    scored = score_subtitles(references, translations, talks, tgt_lang)
    return TalkScores(dataclasses.replace(result, subtitles=scored.scores), aligned, scored.files)
