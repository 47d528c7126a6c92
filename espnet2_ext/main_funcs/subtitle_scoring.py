"""Scoring the subtitles of whole talks against their reference sentences, both timings side by side.

The references are the test set's sentences, each one block shown from its
``segments`` start to its end (one line: the data has no line breaks). Each talk's
translation (``translate --format jsonl``) becomes blocks as ``translate --format
srt`` makes them (:func:`~espnet2_ext.subtitles.build_blocks`), once timed by the
cross-attention and once proportionally, and each set is scored by:

- **SubER** (Wilken et al. 2022; PyPI ``subtitle-edit-rate``, the IWSLT subtitling
  track's metric): edits of words and of line and block breaks, where a word only
  matches one whose subtitle overlaps it in time, per 100 reference tokens; the talks
  are scored as one corpus, as ``suber -H talk1.srt ... -R ref1.srt ...`` does;
- **start error**: the mean absolute difference between a block's start and its
  reference sentence's start, over the blocks that begin where a sentence begins
  (mweralign's re-segmentation, :func:`~espnet2_ext.main_funcs.talk_alignment.align_talk`,
  says which translated word starts each sentence);
- the share of blocks read at no more than ``max_cps`` (FBK's CPS conformity).

The ``.srt`` files scored go under ``subtitles/<timing>/`` and the references under
``subtitles/reference/`` of the score dir, so ``suber`` can score them again.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from espnet2_ext.fileio.subtitle_files import subtitle_text
from espnet2_ext.main_funcs.experiment import SubtitleScore
from espnet2_ext.subtitles import DEFAULT_TIMING, TIMINGS, Block, SubtitleLimits, build_blocks
from espnet2_ext.subtitles.blocks import to_ms

if TYPE_CHECKING:
    from espnet2_ext.main_funcs.talk_alignment import AlignedTalk, TalkReference, TalkTranslation

SUBTITLES_DIR = "subtitles"
REFERENCE = "reference"


def reference_blocks(reference: "TalkReference") -> list[Block]:
    """One block per reference sentence, at its ``segments`` times, the sentence on one line."""
    return [
        Block(to_ms(start), to_ms(end), (" ".join(sentence.split()),))
        for (start, end), sentence in zip(reference.times, reference.sentences)
        if sentence.strip()
    ]


def start_errors(blocks: Sequence[Block], lines: Sequence[str], starts: Sequence[float]) -> dict[int, float]:
    """Block index -> the seconds between its start and its sentence's (``starts``), for
    each block whose first word is the first of a reference sentence's re-segmented line
    (``lines``, one per sentence, whose words are the blocks' words)."""
    sentence_at: dict[int, float] = {}
    offset = 0
    for line, start in zip(lines, starts):
        words = len(line.split())
        if words:
            sentence_at[offset] = start
        offset += words
    errors, offset = {}, 0
    for index, block in enumerate(blocks):
        if offset in sentence_at:
            errors[index] = abs(block.start - sentence_at[offset])
        offset += len(block.text.split())
    return errors


def suber_score(hypotheses: Sequence[str], references: Sequence[str], tgt_lang: str = "") -> float:
    """SubER of talks' SRT texts as one corpus, as ``suber -H talk1.srt ... -R ref1.srt ...``
    scores their files (its reader reads files only: they are written to a temporary dir)."""
    from suber.concat_input_files import create_concatenated_segments
    from suber.metrics.suber import calculate_SubER

    with tempfile.TemporaryDirectory() as tmp:
        paths: list[list[str]] = [[], []]
        for kind, texts in enumerate((hypotheses, references)):
            for number, text in enumerate(texts):
                path = Path(tmp, f"{kind}.{number}.srt")
                path.write_text(text, encoding="utf-8")
                paths[kind].append(str(path))
        hyp, ref = create_concatenated_segments(*paths)
    language = tgt_lang if tgt_lang in ("zh", "ja", "ko") else None
    return float(calculate_SubER(hyp, ref, metric="SubER", language=language))


class SubtitleScores(NamedTuple):
    """Each timing's scores (:data:`~espnet2_ext.subtitles.DEFAULT_TIMING` first), and the
    files they scored: path under the score dir -> SRT text."""

    scores: tuple[SubtitleScore, ...]
    files: dict[str, str]


def score_subtitles(
    references: Sequence["TalkReference"],
    translations: dict[str, "TalkTranslation"],
    aligned: dict[str, "AlignedTalk"],
    tgt_lang: str = "",
    limits: SubtitleLimits = SubtitleLimits(),
) -> SubtitleScores:
    """The talks' subtitles, timed each way, scored against the reference sentences (module docstring)."""
    files = {
        f"{SUBTITLES_DIR}/{REFERENCE}/{r.recording_id}.srt": subtitle_text(reference_blocks(r), "srt")
        for r in references
    }
    scores = []
    for timing in sorted(TIMINGS, key=lambda t: t != DEFAULT_TIMING):
        errors, n_blocks, within = [], 0, 0
        for reference in references:
            blocks = build_blocks(translations[reference.recording_id].segments, limits, timing)
            files[f"{SUBTITLES_DIR}/{timing}/{reference.recording_id}.srt"] = subtitle_text(blocks, "srt")
            starts = [start for start, _ in reference.times]
            errors += start_errors(blocks, aligned[reference.recording_id].lines, starts).values()
            n_blocks += len(blocks)
            within += sum(b.chars * 1000 <= limits.max_cps * (b.end_ms - b.start_ms) for b in blocks)
        scores.append(
            SubtitleScore(
                timing=timing,
                suber=suber_score(
                    [files[f"{SUBTITLES_DIR}/{timing}/{r.recording_id}.srt"] for r in references],
                    [files[f"{SUBTITLES_DIR}/{REFERENCE}/{r.recording_id}.srt"] for r in references],
                    tgt_lang,
                ),
                start_error=sum(errors) / len(errors) if errors else None,
                starts_compared=len(errors),
                blocks=n_blocks,
                within_cps=100 * within / n_blocks if n_blocks else None,
                max_cps=limits.max_cps,
            )
        )
    return SubtitleScores(tuple(scores), files)
