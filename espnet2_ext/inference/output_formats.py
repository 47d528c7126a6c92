"""``translate``'s output lines: ``tsv``, ``text`` or ``jsonl``, one per input, written whole."""

import json
from typing import Iterator, Optional, Union

from espnet2_ext.fileio.atomic import atomic_path

FORMATS = ("tsv", "text", "jsonl")


def format_line(key: str, result: Union["TranslationResult", str], fmt: str) -> str:  # noqa: F821
    """One output line; ``result`` is a message for inputs that failed."""
    failed = isinstance(result, str)
    if fmt == "text":
        return "" if failed else result.text
    if fmt == "tsv":
        return f"{key}\t{'' if failed else result.text}"
    if failed:
        return json.dumps({"id": key, "translation": "", "error": result}, ensure_ascii=False)
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
    }
    return json.dumps(record, ensure_ascii=False)


def write_lines(lines: Iterator[str], output: Optional[str]) -> None:
    """To ``output`` (written whole, then renamed into place) or to stdout."""
    if output is None:
        for line in lines:
            print(line)
        return
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as stream:
        for line in lines:
            stream.write(line + "\n")
