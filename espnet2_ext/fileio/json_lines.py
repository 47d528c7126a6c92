"""JSON-lines files (``translate --format jsonl``, SimulEval's ``instances.log``): one object a line."""

import json
from typing import Any

__all__ = ["json_object"]


def json_object(line: str) -> dict[str, Any]:
    """The JSON object on one line; ``ValueError`` saying what is wrong, for the caller to place
    (file and line)."""
    if not line.strip():
        raise ValueError("a blank line; every line must be one JSON object")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value
