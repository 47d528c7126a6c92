"""A whole talk's translation cut onto its reference sentences, as IWSLT cuts it.

``translate`` cuts a talk at its pauses (and a stream is not cut at all), so lines cannot
be paired with the reference sentences by id. As at IWSLT, each talk's translation is cut
anew into one line per reference sentence (the talk's sentences in time order) where its
word error rate against them is lowest: mwerSegmenter's algorithm, here mweralign, its
packaged C++ port. Words are whitespace tokens and case is ignored, as in the
mwerSegmenter IWSLT used (mweralign's default SentencePiece tokenizer would also download
a model). Also here: reading ``translate --format jsonl``'s talks and a data dir's
references, which :mod:`.talk_scoring` and :mod:`.subtitle_scoring` score.
"""

import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from espnet2_ext.fileio.data_dir import read_recordings
from espnet2_ext.fileio.json_lines import json_object
from espnet2_ext.fileio.kaldi_table import read_text
from espnet2_ext.fileio.text_position import not_utf8_file
from espnet2_ext.main_funcs.scoring import ScoringError, id_mismatch
from espnet2_ext.subtitles import TimedSegment
from espnet2_ext.utils.native_output import captured_fd

_AS_WER = re.compile(r"^AS-WER \(automatic segmentation mWER\): (\S+)$")
_PROGRESS = re.compile(r"^loading reference file from stream: ")


class TalkScoringError(ScoringError):
    """Talk translations and references that do not pair up one to one; the message names
    the file and line or the recording."""


@dataclass(frozen=True)
class TalkTranslation:
    """One recording's record of ``translate --format jsonl``: the whole talk's translation
    and the segments our segmentation cut it into, with their words' times where known."""

    recording_id: str
    text: str
    segments: tuple[TimedSegment, ...]

    @property
    def n_segments(self) -> int:
        return len(self.segments)


@dataclass(frozen=True)
class TalkReference:
    """One recording's reference sentences in time order, their utterance ids and their
    (start, end) seconds (which only subtitle scoring reads)."""

    recording_id: str
    utt_ids: tuple[str, ...]
    sentences: tuple[str, ...]
    times: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class AlignedTalk:
    """A talk's translation cut into one line per reference sentence, and the word errors
    of that cut (mweralign's AS-WER times the reference words)."""

    lines: tuple[str, ...]
    errors: float
    ref_words: int


# --------------------------------------------------------------------------- reading


def read_translations(path: Path) -> dict[str, TalkTranslation]:
    """Recording id -> its translation, in file order.

    A record that failed (``error`` not null), a duplicate id, or a line that is not
    such a JSON object is a :class:`TalkScoringError` naming the line; blank lines
    are skipped.
    """
    if not path.is_file():
        raise TalkScoringError(f"missing file {path}")
    talks: dict[str, TalkTranslation] = {}
    lines: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                talk = _translation(line, f"{path}:{number}")
                if talk.recording_id in talks:
                    first = lines[talk.recording_id]
                    where = f"{path}:{number}: recording {talk.recording_id}"
                    raise TalkScoringError(f"{where} again (first on line {first})")
                talks[talk.recording_id], lines[talk.recording_id] = talk, number
    except UnicodeDecodeError:
        raise TalkScoringError(not_utf8_file(path)) from None
    return talks


def _translation(line: str, where: str) -> TalkTranslation:
    """One jsonl record, checked for the fields scoring reads."""
    try:
        record = json_object(line)
    except ValueError as err:
        raise TalkScoringError(f"{where}: {err} (one record of translate --format jsonl)") from None
    recording_id = record.get("id")
    if not isinstance(recording_id, str) or not recording_id:
        raise TalkScoringError(f"{where}: 'id' is missing or not a recording id")
    if record.get("error") is not None:
        message = " ".join(str(record["error"]).split())
        raise TalkScoringError(f"{where}: recording {recording_id} was not translated: {message}")
    text, segments = record.get("translation"), record.get("segments")
    if not isinstance(text, str):
        raise TalkScoringError(f"{where}: recording {recording_id}: 'translation' is missing or not a string")
    if not isinstance(segments, list):
        raise TalkScoringError(f"{where}: recording {recording_id}: 'segments' is missing or not a list")
    return TalkTranslation(
        recording_id, text, tuple(_segment(s, f"{where}: recording {recording_id}: segment {n}")
                                  for n, s in enumerate(segments, 1))
    )


def _segment(segment: object, where: str) -> TimedSegment:
    """One jsonl segment: its times, its translation, its words' times (null, or absent in
    records of older versions, where they are not known)."""
    if not isinstance(segment, dict):
        raise TalkScoringError(f"{where} is not an object")
    start, end, text = segment.get("start"), segment.get("end"), segment.get("translation")
    if not (_seconds(start) and _seconds(end) and start <= end):
        raise TalkScoringError(f"{where}: 'start' and 'end' must be seconds, start <= end; got {start!r}, {end!r}")
    if not isinstance(text, str):
        raise TalkScoringError(f"{where}: 'translation' is missing or not a string")
    words = segment.get("words")
    if words is None:
        return TimedSegment(start, end, text)
    if not isinstance(words, list) or not all(
        isinstance(w, dict) and isinstance(w.get("word"), str) and _seconds(w.get("start")) and _seconds(w.get("end"))
        for w in words
    ):
        raise TalkScoringError(f"{where}: 'words' must be null or a list of {{word, start, end}}")
    if [w["word"] for w in words] != text.split():
        raise TalkScoringError(f"{where}: 'words' are not the words of its translation")
    return TimedSegment(start, end, text, tuple((w["start"], w["end"]) for w in words))


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def read_references(data_dir: Path) -> list[TalkReference]:
    """Each recording's reference sentences (``text.tgt``) in time order (``segments``),
    recordings sorted by id; the two files must hold the same utterances."""
    recordings = read_recordings(data_dir)
    text_path = data_dir / "text.tgt"
    texts = read_text(text_path)
    utt_ids = {u.utt_id for r in recordings for u in r.utterances}
    problem = id_mismatch(utt_ids, set(texts), "utterances have no reference text", "reference texts have no utterance")
    if problem:
        listing = data_dir / "segments" if (data_dir / "segments").is_file() else data_dir / "wav.scp"
        raise TalkScoringError(f"{text_path} does not match {listing}: {problem}")
    return [
        TalkReference(
            r.recording_id,
            tuple(u.utt_id for u in r.utterances),
            tuple(texts[u.utt_id] for u in r.utterances),
            tuple((u.start, u.start if u.end is None else u.end) for u in r.utterances),
        )
        for r in recordings
    ]


# --------------------------------------------------------------------------- aligning


def _mweralign() -> ModuleType:
    """mweralign, imported without its side effect: importing it runs
    ``logging.basicConfig(level=INFO)``, which would print every library's INFO records."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import mweralign

    root.handlers[:] = handlers
    root.setLevel(level)
    return mweralign


def align_talk(reference: TalkReference, hypothesis: str) -> AlignedTalk:
    """``hypothesis`` cut into one line per reference sentence, at the boundaries of least word errors.

    mweralign reads the sentences as lines: each one ends with a newline, as without it
    a last empty sentence would be dropped. An empty hypothesis gives empty lines.
    """
    if not reference.sentences:  # mweralign's C++ core crashes without a reference line
        raise TalkScoringError(f"recording {reference.recording_id}: no reference sentences")
    sentences = "".join(" ".join(s.split()) + "\n" for s in reference.sentences)
    words = hypothesis.split()
    with captured_fd(2) as captured:  # its C++ core prints two lines per talk on the C-level stderr
        output = _mweralign().align_texts(reference=sentences, hypothesis=" ".join(words), is_tokenized=False)
    printed = captured.text.splitlines()
    lines = tuple(line.strip() for line in output.split("\n"))
    if len(lines) != len(reference.sentences):
        raise TalkScoringError(
            f"recording {reference.recording_id}: mweralign cut the translation into {len(lines)} lines "
            f"for {len(reference.sentences)} reference sentences"
        )
    ref_words = sum(len(s.split()) for s in reference.sentences)
    as_wer = [m.group(1) for m in map(_AS_WER.match, printed) if m]
    for line in printed:  # anything but its two progress lines is worth seeing
        if not (_AS_WER.match(line) or _PROGRESS.match(line)):
            print(f"mweralign: {line}", file=sys.stderr)
    if not words:  # mweralign prints nan: every reference word is deleted
        errors = float(ref_words)
    elif not ref_words:  # it prints inf: every hypothesis word is inserted
        errors = float(len(words))
    elif len(as_wer) == 1 and math.isfinite(float(as_wer[0])):
        errors = float(as_wer[0]) * ref_words / 100
    else:
        raise TalkScoringError(f"recording {reference.recording_id}: mweralign printed no AS-WER ({printed})")
    return AlignedTalk(lines, errors, ref_words)
