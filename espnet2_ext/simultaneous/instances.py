"""SimulEval 1.1.4's ``instances.log``: one JSON line per translated utterance.

A line is what ``Instance.summarize`` returns for speech input and text output
(SimulEval 1.1.4 ``simuleval/evaluator/instance.py``), dumped by ``json.dumps``
with its defaults (``simuleval/evaluator/evaluator.py``), so SimulEval's own
``--score-only`` and its ``LogInstance`` read our logs and we read theirs::

    {"index": 0, "prediction": "Hallo Welt", "delays": [640.0, 1280.0],
     "elapsed": [701.3, 1390.8], "prediction_length": 2, "reference": "Hallo Welt .",
     "source": "talk1_0.wav", "source_length": 1500.0}

``delays[i]``: ms of source received when word ``i`` of the prediction was written;
``elapsed[i]``: the same plus the wall-clock time spent since the first read (the
computation-aware delays); ``source_length``: the source duration in ms.

Runs are long, so the log is also the checkpoint: each line is written and
flushed whole as its utterance ends, a killed run keeps every finished line, and
a rerun (:class:`InstancesLogWriter` with ``resume=True``) skips the indices
already there. A kill in the middle of a write leaves a last line without its
newline: the reader leaves it out and says so, the writer cuts it off before
appending. Any other unreadable line is an :class:`InstancesLogError` naming the
file and line.
"""

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from espnet2_ext.fileio.json_lines import json_object
from espnet2_ext.fileio.text_position import not_utf8

# The keys of a line, in SimulEval's order (Instance.summarize, latency unit "word").
KEYS = ("index", "prediction", "delays", "elapsed", "prediction_length", "reference", "source", "source_length")


class InstancesLogError(ValueError):
    """An instances.log line that is not a SimulEval 1.1.4 speech-to-text record; names the file and line."""


@dataclass(frozen=True)
class InstanceRecord:
    """One translated utterance, as one line of ``instances.log``.

    Timestamps are stored as floats (SimulEval's speech input always writes floats:
    ``samples * 1000 / rate``), so a record and its line read back are equal.
    Construction checks the record (``ValueError`` saying which field is wrong):
    one delay and one elapsed time per predicted word, finite numbers, a positive
    source length.
    """

    index: int
    prediction: str
    delays: tuple[float, ...]
    elapsed: tuple[float, ...]
    prediction_length: int
    reference: str
    source: str | tuple[str, ...]  # SimulEval writes the audio's info lines; any text or lines do
    source_length: float

    def __post_init__(self) -> None:
        if not _is_int(self.index) or self.index < 0:
            raise ValueError(f"index must be a non-negative integer, not {self.index!r}")
        if not isinstance(self.prediction, str) or not isinstance(self.reference, str):
            raise ValueError("prediction and reference must be strings")
        if not isinstance(self.source, str):
            if not _is_sequence(self.source) or not all(isinstance(line, str) for line in self.source):
                raise ValueError("source must be a string or a list of strings")
            object.__setattr__(self, "source", tuple(self.source))
        for name in ("delays", "elapsed"):
            object.__setattr__(self, name, _timestamps(name, getattr(self, name)))
        if not _is_number(self.source_length) or not 0 < self.source_length < math.inf:
            raise ValueError(f"source_length must be a positive number of ms, not {self.source_length!r}")
        object.__setattr__(self, "source_length", float(self.source_length))
        words = len(self.prediction.split())
        if not _is_int(self.prediction_length) or not self.prediction_length == words == len(self.delays):
            raise ValueError(
                f"prediction_length {self.prediction_length!r}, {words} predicted words and "
                f"{len(self.delays)} delays must be the same number"
            )
        if len(self.elapsed) != len(self.delays):
            raise ValueError(f"{len(self.delays)} delays but {len(self.elapsed)} elapsed times")

    @classmethod
    def from_words(
        cls,
        index: int,
        words: Sequence[str],
        delays: Sequence[float],
        elapsed: Sequence[float],
        reference: str,
        source: str | Sequence[str],
        source_length: float,
    ) -> "InstanceRecord":
        """The record of ``words`` written at ``delays``: SimulEval joins them with one space."""
        return cls(index, " ".join(words), tuple(delays), tuple(elapsed), len(words), reference, source, source_length)

    @property
    def reference_length(self) -> int:
        """|Y| of the latency metrics: ``len(reference.split(" "))``, SimulEval 1.1.4's
        ``LogInstance.reference_length`` for the unit "word" (so ``""`` has 1 word and
        two spaces in a row make an empty one)."""
        return len(self.reference.split(" "))

    def json_line(self) -> str:
        """The line SimulEval writes for this record, without its newline (ASCII JSON)."""
        fields = {key: getattr(self, key) for key in KEYS}
        fields.update(delays=list(self.delays), elapsed=list(self.elapsed))
        if not isinstance(self.source, str):
            fields["source"] = list(self.source)
        return json.dumps(fields)


class InstancesLog(NamedTuple):
    """What an ``instances.log`` holds: its whole lines, and the line number of a
    half-written last line that was left out (None when the file ends with a newline)."""

    records: list[InstanceRecord]
    torn_line: int | None


def read_instances(path: str | Path) -> InstancesLog:
    """Every record of ``path`` in file order.

    A last line without its newline is the trace of a killed write: it is left
    out and its number returned in ``torn_line``. Any other line that is not one
    JSON record with exactly SimulEval's keys, a blank line or an index seen
    before is an :class:`InstancesLogError` ``<path>:<line>: <what is wrong>``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InstancesLogError(f"cannot read {path}: {err.strerror or err}") from None
    whole = data[: data.rfind(b"\n") + 1]
    try:
        text = whole.decode("utf-8")
    except UnicodeDecodeError:
        raise InstancesLogError(not_utf8(path, whole)) from None
    lines = text.splitlines()
    records, seen = [], {}
    for number, line in enumerate(lines, 1):
        try:
            record = _parse(line)
        except ValueError as err:
            raise InstancesLogError(f"{path}:{number}: {err}") from None
        if record.index in seen:
            raise InstancesLogError(f"{path}:{number}: index {record.index} is already on line {seen[record.index]}")
        seen[record.index] = number
        records.append(record)
    torn_line = len(lines) + 1 if len(whole) < len(data) else None
    return InstancesLog(records, torn_line)


class InstancesLogWriter:
    """Appends records to an ``instances.log``, each line written and flushed whole.

    ``resume=True`` keeps the records already in the file (their indices are in
    :attr:`done`, for the caller to skip) after cutting off a half-written last
    line (its number is in :attr:`torn_line`); ``resume=False`` starts an empty log,
    as SimulEval does without ``--continue-unfinished``. Use it as a context manager.
    """

    def __init__(self, path: str | Path, *, resume: bool) -> None:
        self.path = Path(path)
        self.done: set[int] = set()
        self.torn_line: int | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            log = read_instances(self.path)
            self.done = {record.index for record in log.records}
            self.torn_line = log.torn_line
            if log.torn_line is not None:
                os.truncate(self.path, self.path.read_bytes().rfind(b"\n") + 1)
        self._stream: TextIO = self.path.open("a" if resume else "w", encoding="utf-8", newline="\n")

    def write(self, record: InstanceRecord) -> None:
        """Append ``record`` as one line and flush it; an index already written is a ``ValueError``."""
        if record.index in self.done:
            raise ValueError(f"{self.path}: index {record.index} is already written")
        self._stream.write(record.json_line() + "\n")
        self._stream.flush()
        self.done.add(record.index)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "InstancesLogWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _parse(line: str) -> InstanceRecord:
    """The record of one line; ``ValueError`` saying what is wrong with it."""
    fields = json_object(line)
    missing, extra = [k for k in KEYS if k not in fields], [k for k in fields if k not in KEYS]
    if missing or extra:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(extra)}"] if extra else []
        raise ValueError(f"keys: {'; '.join(problems)} (a SimulEval 1.1.4 speech-to-text line has {', '.join(KEYS)})")
    return InstanceRecord(**fields)


def _timestamps(name: str, values: Any) -> tuple[float, ...]:
    """``values`` as a tuple of floats, or ``ValueError`` if one is not a finite number."""
    if not _is_sequence(values):
        raise ValueError(f"{name} must be a list of numbers")
    for i, value in enumerate(values):
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{name}[{i}] must be a finite number, not {value!r}")
    return tuple(float(value) for value in values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_sequence(value: object) -> bool:
    return isinstance(value, (list, tuple))
