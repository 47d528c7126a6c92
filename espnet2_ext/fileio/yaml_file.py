"""Reading YAML documents (configs, ``meta.yaml``) with one-line errors that place the problem.

PyYAML's own messages span several lines and place a bad byte by its offset in a
decoded buffer; a user with a broken config wants ``file:line:column: what``.
Every reader of a YAML file in the project goes through here, so a bad one reads
the same whichever program opened it.
"""

from pathlib import Path
from typing import Any

import yaml

from espnet2_ext.fileio.text_position import not_utf8


class YamlFileError(ValueError):
    """A YAML file that is missing, unreadable, not YAML or not a mapping; the message places it."""


def yaml_problem(name: str | Path, text: bytes | str, err: yaml.YAMLError, first_line: int = 1) -> str:
    """``<name>:<line>[:<column>]: not valid YAML: <problem>`` for PyYAML's ``err`` on ``text``,
    which starts at line ``first_line`` of ``name`` (a fragment of a longer file)."""
    if isinstance(err, yaml.reader.ReaderError):
        if err.encoding == "unicode" or isinstance(text, str):  # a refused character; position counts characters
            decoded = text if isinstance(text, str) else text.decode("utf-8")
            line = first_line + decoded[: err.position].count("\n")
            return f"{name}:{line}: not valid YAML: character #x{err.character:04x}: {err.reason}"
        return not_utf8(name, text)
    if isinstance(err, yaml.MarkedYAMLError) and (err.problem_mark or err.context_mark) is not None:
        mark = err.problem_mark or err.context_mark
        problem = f"{err.context}: {err.problem}" if err.context and err.problem else err.problem or err.context
        return f"{name}:{first_line + mark.line}:{mark.column + 1}: not valid YAML: {problem}"
    return f"{name}:{first_line}: not valid YAML: {' '.join(str(err).split())}"


def parse_yaml_mapping(text: bytes | str, name: str | Path, empty_ok: bool = False) -> dict[str, Any]:
    """The mapping ``text`` holds (named ``name`` in errors); with ``empty_ok`` an empty
    document is an empty mapping."""
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise YamlFileError(yaml_problem(name, text, err)) from None
    if content is None and empty_ok:
        return {}
    if not isinstance(content, dict):
        found = "an empty document" if content is None else f"a {type(content).__name__}"
        raise YamlFileError(f"{name}: expected a YAML mapping of key: value, found {found}")
    return content


def read_yaml_mapping(path: Path, empty_ok: bool = False) -> dict[str, Any]:
    """:func:`parse_yaml_mapping` of the file ``path``."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise YamlFileError(f"no such file {path}") from None
    except OSError as err:
        raise YamlFileError(f"cannot read {path}: {err.strerror or err}") from None
    return parse_yaml_mapping(text, path, empty_ok)
