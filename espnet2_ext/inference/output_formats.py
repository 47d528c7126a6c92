"""``translate``'s output lines: ``tsv``, ``text`` or ``jsonl``, one per input, written whole.

A tsv or text line stays one line with its tabs where they belong whatever a file is
called: :func:`escape` writes backslash, tab, newline and carriage return as ``\\\\``,
``\\t``, ``\\n``, ``\\r`` (jsonl has JSON's own escapes). A failed input's jsonl record
has the fields of a translated one, with ``error`` set instead of null.
"""

import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from espnet2_ext.fileio.atomic import atomic_path

if TYPE_CHECKING:
    from espnet2_ext.inference.speech2translation import TranslationResult

FORMATS = ("tsv", "text", "jsonl")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    """``text`` on one line without tabs: backslash, tab, newline and CR as ``\\\\``, ``\\t``, ``\\n``, ``\\r``."""
    return text.translate(_ESCAPES)


def format_line(key: str, result: "TranslationResult | str", fmt: str) -> str:
    """One output line; ``result`` is a message for inputs that failed."""
    failed = isinstance(result, str)
    if fmt == "text":
        return "" if failed else escape(result.text)
    if fmt == "tsv":
        return f"{escape(key)}\t{'' if failed else escape(result.text)}"
    if failed:
        record = {"id": key, "translation": "", "source": "", "nbest": None, "segments": [], "warnings": []}
        return json.dumps({**record, "error": result}, ensure_ascii=False)
    record = {
        "id": key,
        "translation": result.text,
        "source": result.source,
        "nbest": [{"text": h.text, "score": h.score} for h in result.nbest] if len(result.segments) == 1 else None,
        "segments": [
            {"start": s.start, "end": s.end, "translation": s.nbest[0].text if s.nbest else "", "source": s.source}
            for s in result.segments
        ],
        "warnings": result.warnings,
        "error": None,
    }
    return json.dumps(record, ensure_ascii=False)


def write_lines(lines: Iterator[str], output: str | None) -> None:
    """To ``output`` (written whole, then renamed into place) or to stdout.

    Raises:
        BrokenPipeError: stdout's reader has gone (``| head -1``); raised here, not at exit.
    """
    if output is None:
        for line in lines:
            print(line)
        sys.stdout.flush()
        return
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as stream:
        for line in lines:
            stream.write(line + "\n")
