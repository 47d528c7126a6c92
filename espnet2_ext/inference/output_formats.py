"""``translate``'s outputs: ``tsv``, ``text`` or ``jsonl`` lines, one per input, or
``srt`` / ``vtt`` subtitles, one file per input.

A tsv or text line stays one line with its tabs where they belong whatever a file is
called: :func:`escape` writes backslash, tab, newline and carriage return as ``\\\\``,
``\\t``, ``\\n``, ``\\r`` (jsonl has JSON's own escapes). A jsonl record has the same
fields whatever happened: ``error`` is null, or why the input could not be translated.
Where the lines go (stdout, a file, a FIFO ...) is :mod:`espnet2_ext.fileio.output_target`'s;
subtitle files are :mod:`espnet2_ext.fileio.subtitle_files`'.
"""

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espnet2_ext.inference.speech2translation import SegmentTranslation, TranslationResult

from espnet2_ext.fileio.subtitle_files import SUBTITLE_FORMATS

LINE_FORMATS = ("tsv", "text", "jsonl")
FORMATS = LINE_FORMATS + SUBTITLE_FORMATS
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    """``text`` on one line without tabs: backslash, tab, newline and CR as ``\\\\``, ``\\t``, ``\\n``, ``\\r``."""
    return text.translate(_ESCAPES)


def format_line(key: str, result: "TranslationResult", fmt: str) -> str:
    """One output line; an input that failed (``result.error``) has an empty translation."""
    if fmt == "text":
        return escape(result.text)
    if fmt == "tsv":
        return f"{escape(key)}\t{escape(result.text)}"
    return json.dumps(jsonl_record(key, result), ensure_ascii=False)


def jsonl_record(key: str, result: "TranslationResult") -> dict[str, Any]:
    """The jsonl fields: the joined translation and CTC transcript, each segment with its
    times, n-best and scores, the n-best again at the top for an input of one segment.

    A segment's ``words`` are its best translation's words with their times in seconds
    of the recording (where the cross-attention aligns them), or null where they are not
    known (``search: espnet``); subtitles are built from them."""
    return {
        "id": key,
        "translation": result.text,
        "source": result.source,
        "nbest": _nbest(result.segments[0]) if len(result.segments) == 1 else None,
        "segments": [
            {
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "translation": s.nbest[0].text if s.nbest else "",
                "source": s.source,
                "nbest": _nbest(s),
                "words": _words(s),
            }
            for s in result.segments
        ],
        "warnings": result.warnings,
        "error": result.error,
    }


def _words(segment: "SegmentTranslation") -> list[dict[str, Any]] | None:
    best = segment.nbest[0] if segment.nbest else None
    if best is None or best.word_times is None:
        return None
    return [
        {"word": word, "start": round(segment.start + start, 3), "end": round(segment.start + end, 3)}
        for word, (start, end) in zip(best.text.split(), best.word_times)
    ]


def _nbest(segment: "SegmentTranslation") -> list[dict[str, Any]]:
    return [{"text": h.text, "score": h.score} for h in segment.nbest]
