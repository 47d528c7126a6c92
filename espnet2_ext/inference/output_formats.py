"""``translate``'s output lines: ``tsv``, ``text`` or ``jsonl``, one per input.

A tsv or text line stays one line with its tabs where they belong whatever a file is
called: :func:`escape` writes backslash, tab, newline and carriage return as ``\\\\``,
``\\t``, ``\\n``, ``\\r`` (jsonl has JSON's own escapes). A jsonl record has the same
fields whatever happened: ``error`` is null, or why the input could not be translated.
Where the lines go (stdout, a file, a FIFO ...) is :mod:`espnet2_ext.fileio.output_target`'s.
"""

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espnet2_ext.inference.speech2translation import SegmentTranslation, TranslationResult

FORMATS = ("tsv", "text", "jsonl")
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
    times, n-best and scores, the n-best again at the top for an input of one segment."""
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
            }
            for s in result.segments
        ],
        "warnings": result.warnings,
        "error": result.error,
    }


def _nbest(segment: "SegmentTranslation") -> list[dict[str, Any]]:
    return [{"text": h.text, "score": h.score} for h in segment.nbest]
