"""The records of an experiment dir, each schema written and read here only.

- ``averaged.json``: which epochs the decoded checkpoint averages (:class:`Averaged`),
  written by checkpoint averaging, read by the results page and the curves;
- ``decode_*/<test set>/score/result.json`` and ``result.txt``: one test set's scores
  (:class:`ScoreResult`), written by scoring, read by the results page and the curves;
- ``decode_*/<test set>/talks/score/result.json`` and ``result.txt``: the same test set
  translated talk by talk with our own segmentation and re-segmented onto the reference
  sentences (:class:`ScoreResult` with :class:`TalkSegmentation`), and the talks'
  subtitles scored (:class:`SubtitleScore`), written by talk scoring, read by the
  results page;
- ESPnet's own files: the reporter inside ``checkpoint.pth``, ``config.yaml``,
  ``num_params``, and run.sh's ``run.cmd``.

Readers check every field and raise :class:`ExperimentError` naming the file and field.
"""

import datetime
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from espnet2.train.reporter import Reporter

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping

AVERAGED_JSON = "averaged.json"
RESULT_JSON = "result.json"
RESULT_TXT = "result.txt"
TALKS_DIR = "talks"  # decode_*/<test set>/talks/: whole talks translated with our own segmentation
AVERAGING_MODES = ("around", "nbest", "epochs")


class ExperimentError(ValueError):
    """A missing or malformed experiment file; the message names it."""


# --------------------------------------------------------------------------- averaged.json


@dataclass(frozen=True)
class Averaged:
    """The checkpoint decoded: the mean of ``epochs``, saved as ``file``.

    ``criterion`` (e.g. valid.loss.min), ``mode`` (around, nbest, or epochs when they
    were given explicitly, then with a null criterion and best epoch) and
    ``best_epoch`` say how the epochs were chosen. ``file`` is relative to the
    experiment dir when the checkpoint lies in it.
    """

    file: str
    epochs: tuple[int, ...]
    criterion: str | None
    mode: str
    best_epoch: int | None


def write_averaged(exp_dir: Path, averaged: Averaged) -> None:
    record = {
        "file": averaged.file,
        "epochs": list(averaged.epochs),
        "criterion": averaged.criterion,
        "mode": averaged.mode,
        "best_epoch": averaged.best_epoch,
    }
    write_text_atomically(exp_dir / AVERAGED_JSON, json.dumps(record, indent=2) + "\n")


def read_averaged(exp_dir: Path) -> Averaged | None:
    """``<exp>/averaged.json``, or None when nothing was averaged yet."""
    path = exp_dir / AVERAGED_JSON
    if not path.is_file():
        return None
    data = _read_json(path)
    epochs = _field(data, "epochs", list, path)
    if not epochs or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
        raise ExperimentError(f"{path}: 'epochs' must be a non-empty list of epoch numbers, got {epochs!r}")
    mode = _field(data, "mode", str, path)
    if mode not in AVERAGING_MODES:
        raise ExperimentError(f"{path}: 'mode' must be one of {', '.join(AVERAGING_MODES)}, got {mode!r}")
    return Averaged(
        file=_field(data, "file", str, path),
        epochs=tuple(epochs),
        criterion=_field(data, "criterion", str, path, optional=True),
        mode=mode,
        best_epoch=_field(data, "best_epoch", int, path, optional=True),
    )


# --------------------------------------------------------------------------- result.json


@dataclass(frozen=True)
class TalkSegmentation:
    """How talk-level hypotheses became lines to score: ``n_talks`` talks, which our own
    segmentation cut into ``n_segments`` segments, re-segmented onto the reference
    sentences by mweralign with a word error rate of ``as_wer`` percent (case-insensitive,
    whitespace words; None when the references have no words)."""

    n_talks: int
    n_segments: int
    as_wer: float | None


@dataclass(frozen=True)
class SubtitleScore:
    """How well a talk set's subtitles, timed one way (``timing``), match the reference
    sentences: SubER (percent), the mean absolute error of block starts (seconds, over
    ``starts_compared`` blocks that start a reference sentence; None when none does),
    and the percentage of the ``blocks`` read at no more than ``max_cps``."""

    timing: str
    suber: float
    start_error: float | None
    starts_compared: int
    blocks: int
    within_cps: float | None
    max_cps: float

    def text(self) -> str:
        error = "none starts a sentence" if self.start_error is None else f"{self.start_error:.3f} s"
        cps = "" if self.within_cps is None else f", {self.within_cps:.1f}% within {self.max_cps:g} cps"
        return (f"SubER {self.timing}: {self.suber:.2f} (start error {error} over {self.starts_compared} "
                f"of {self.blocks} blocks{cps})")


@dataclass(frozen=True)
class ScoreResult:
    """Corpus scores of one test set, how sacreBLEU computed them, and what was scored.

    ``n_segments`` counts the scored line pairs, i.e. the reference sentences; ``talks``
    and ``subtitles`` (the default timing first) are set only for talk-level scores
    (absent from older ``result.json`` files).
    """

    bleu: float
    chrf: float
    n_segments: int
    bleu_signature: str
    chrf_signature: str
    bleu_line: str  # sacreBLEU's "BLEU|<signature> = 25.31 58.1/31.0/... (BP = ...)"
    chrf_line: str
    tgt_lang: str | None
    hyp: str
    ref: str
    talks: TalkSegmentation | None = None
    subtitles: tuple[SubtitleScore, ...] = ()

    def text(self) -> str:
        """``result.txt``: the two score lines first (run.sh logs ``head -n 2``), then what was scored."""
        lines = [self.bleu_line, self.chrf_line, f"segments: {self.n_segments}"]
        if self.talks is not None:
            as_wer = "no reference words" if self.talks.as_wer is None else f"{self.talks.as_wer:.2f}"
            lines += [
                f"talks: {self.talks.n_talks}",
                f"own segments: {self.talks.n_segments} (re-segmented onto the {self.n_segments} reference sentences)",
                f"AS-WER: {as_wer} (mweralign, case-insensitive)",
            ]
        lines += [score.text() for score in self.subtitles]
        lines += [f"hyp: {self.hyp}", f"ref: {self.ref}"]
        return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class DecodedSet:
    """The scores of one test set under one decoding configuration (a ``decode_*`` dir)."""

    decode: str
    test_set: str
    result: ScoreResult
    path: Path


def write_result(score_dir: Path, result: ScoreResult) -> None:
    """``result.json`` (scores at full precision: rounding is left to readers) and ``result.txt``."""
    record: dict[str, Any] = {
        "bleu": result.bleu,
        "chrf": result.chrf,
        "signatures": {"bleu": result.bleu_signature, "chrf": result.chrf_signature},
        "sacrebleu": {"bleu": result.bleu_line, "chrf": result.chrf_line},
        "n_segments": result.n_segments,
        "tgt_lang": result.tgt_lang,
        "hyp": result.hyp,
        "ref": result.ref,
    }
    if result.talks is not None:
        t = result.talks
        record["talks"] = {"n_talks": t.n_talks, "n_segments": t.n_segments, "as_wer": t.as_wer}
    if result.subtitles:
        record["subtitles"] = [
            {
                "timing": s.timing, "suber": s.suber, "start_error": s.start_error,
                "starts_compared": s.starts_compared, "blocks": s.blocks, "within_cps": s.within_cps,
                "max_cps": s.max_cps,
            }
            for s in result.subtitles
        ]
    write_text_atomically(score_dir / RESULT_JSON, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(score_dir / RESULT_TXT, result.text())


def read_result(path: Path) -> ScoreResult:
    data = _read_json(path)
    talks = None
    if _field(data, "talks", dict, path, optional=True) is not None:
        as_wer = _field(data, "talks.as_wer", _NUMBER, path, optional=True)
        talks = TalkSegmentation(
            n_talks=_field(data, "talks.n_talks", int, path),
            n_segments=_field(data, "talks.n_segments", int, path),
            as_wer=None if as_wer is None else float(as_wer),
        )
    subtitles = []
    for number, entry in enumerate(_field(data, "subtitles", list, path, optional=True) or []):
        key = f"subtitles.{number}"
        if not isinstance(entry, dict):
            raise ExperimentError(f"{path}: '{key}' is not an object")
        start_error = _field(entry, "start_error", _NUMBER, path, optional=True)
        within = _field(entry, "within_cps", _NUMBER, path, optional=True)
        subtitles.append(SubtitleScore(
            timing=_field(entry, "timing", str, path),
            suber=float(_field(entry, "suber", _NUMBER, path)),
            start_error=None if start_error is None else float(start_error),
            starts_compared=_field(entry, "starts_compared", int, path),
            blocks=_field(entry, "blocks", int, path),
            within_cps=None if within is None else float(within),
            max_cps=float(_field(entry, "max_cps", _NUMBER, path)),
        ))
    return ScoreResult(
        bleu=float(_field(data, "bleu", _NUMBER, path)),
        chrf=float(_field(data, "chrf", _NUMBER, path)),
        n_segments=_field(data, "n_segments", int, path),
        bleu_signature=_field(data, "signatures.bleu", str, path),
        chrf_signature=_field(data, "signatures.chrf", str, path),
        bleu_line=_field(data, "sacrebleu.bleu", str, path),
        chrf_line=_field(data, "sacrebleu.chrf", str, path),
        tgt_lang=_field(data, "tgt_lang", str, path, optional=True),
        hyp=_field(data, "hyp", str, path),
        ref=_field(data, "ref", str, path),
        talks=talks,
        subtitles=tuple(subtitles),
    )


def find_scores(exp_dir: Path) -> list[DecodedSet]:
    """Every ``decode_*/*/score/result.json`` (gold segmentation) of the experiment,
    sorted by decode dir and test set."""
    return [
        DecodedSet(decode=path.parents[2].name, test_set=path.parents[1].name, result=read_result(path), path=path)
        for path in sorted(exp_dir.glob(f"decode_*/*/score/{RESULT_JSON}"))
    ]


def find_talk_scores(exp_dir: Path) -> list[DecodedSet]:
    """Every ``decode_*/*/talks/score/result.json`` (our own segmentation) of the experiment,
    sorted by decode dir and test set."""
    return [
        DecodedSet(decode=path.parents[3].name, test_set=path.parents[2].name, result=read_result(path), path=path)
        for path in sorted(exp_dir.glob(f"decode_*/*/{TALKS_DIR}/score/{RESULT_JSON}"))
    ]


# --------------------------------------------------------------------------- ESPnet's files


# What ESPnet's reporter pickles besides tensors: numpy scalars with their dtypes, timedeltas.
_REPORTER_GLOBALS = [
    np.dtype, np._core.multiarray.scalar, datetime.timedelta,
    *(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")),
]


def load_reporter(exp_dir: Path) -> Reporter:
    """ESPnet's training reporter from ``<exp>/checkpoint.pth``.

    ``mmap`` keeps the model and optimizer tensors on disk: only the reporter is read.
    Loaded with ``weights_only``, allowing only what a reporter holds besides tensors
    (numpy scalars and dtypes, timedeltas), so code planted in the file never runs.
    """
    path = exp_dir / "checkpoint.pth"
    if not path.is_file():
        raise ExperimentError(f"missing {path}: ESPnet's trainer writes it after each epoch")
    try:
        with torch.serialization.safe_globals(_REPORTER_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        reason = next((line for line in str(err).splitlines() if "Unsupported global" in line), str(err))
        raise ExperimentError(f"cannot load {path}: {reason.strip()}") from None
    if not isinstance(state, dict) or "reporter" not in state:
        raise ExperimentError(f"{path} has no 'reporter' entry: not an ESPnet training checkpoint")
    reporter = Reporter()
    reporter.load_state_dict(state["reporter"])
    return reporter


def read_config(exp_dir: Path) -> dict[str, Any] | None:
    """The merged training config ESPnet saved, or None without it."""
    path = exp_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        return read_yaml_mapping(path)
    except YamlFileError as err:
        raise ExperimentError(str(err)) from None


def read_num_params(exp_dir: Path) -> int | None:
    """The parameter count ESPnet's trainer wrote, or None without it."""
    path = exp_dir / "num_params"
    if not path.is_file():
        return None
    text = _read_text(path).strip()
    try:
        return int(text)
    except ValueError:
        raise ExperimentError(f"{path}: expected one integer, got {text[:40]!r}") from None


def read_commands(exp_dir: Path) -> list[str] | None:
    """The stage commands run.sh recorded, one per line, or None without ``run.cmd``."""
    path = exp_dir / "run.cmd"
    if not path.is_file():
        return None
    return [line for line in _read_text(path).splitlines() if line.strip()]


# --------------------------------------------------------------------------- checked reading

_NUMBER = (int, float)
_KIND_NAMES = {_NUMBER: "a number", int: "an integer", str: "a string", list: "a list", dict: "an object"}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ExperimentError(f"cannot read {path}: {err}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ExperimentError(f"{path}: not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a JSON object")
    return data


def _field(
    data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, optional: bool = False
) -> Any:
    """``data[key]`` (``a.b``: nested) checked to be of ``kind``; a bool is not a number here.

    With ``optional``, an absent or null value is returned as None.
    """
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if optional and value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ExperimentError(f"{path}: '{key}' is missing or not {_KIND_NAMES[kind]}")
    return value

