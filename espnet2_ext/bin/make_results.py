"""Write one experiment's section of an icefall-style RESULTS.md from what is on disk.

The section holds the scores of every ``<exp>/decode_*/<test set>/score/result.json``
(written by ``score_st``) with their sacreBLEU signatures, the averaged checkpoint
(``<exp>/averaged.json``), key facts of the model (``<exp>/config.yaml``,
``<exp>/num_params``), the exact stage commands (``<exp>/run.cmd``, one per line),
the hardware, and the training curves (``<exp>/curves.png``) when present.

The section sits between marker comments named after the experiment dir, so one
RESULTS.md can hold several experiments and text outside the markers is kept.
Nothing is accumulated: each run rebuilds the section from the files, so re-running
gives the same file. Its date is that of the newest file read, not today's, for the
same reason. The hardware is that of the machine running this script: run it where
the experiment trained and decoded.

Usage:
    python -m espnet2_ext.bin.make_results --exp-dir exp/st_train --out RESULTS.md [--title ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from espnet2_ext.bin.score_st import RESULT_JSON
from espnet2_ext.utils.cli import CommandError, command
from espnet2_ext.utils.fileio import write_text_atomically

FILE_HEADER = "# Results\n"
BEGIN = "<!-- make_results begin: {key} (generated: edits inside are overwritten) -->"
END = "<!-- make_results end: {key} -->"


class ResultsError(CommandError):
    """Missing or malformed experiment files."""


@dataclass(frozen=True)
class DecodedSet:
    """The scores of one test set under one decoding configuration."""

    decode: str  # the decode_* dir name, which names the decoding config
    test_set: str
    bleu: float
    chrf: float
    n_segments: int
    bleu_signature: str
    chrf_signature: str
    path: Path


@dataclass(frozen=True)
class Averaged:
    """The checkpoint decoded: the mean of ``epochs``, as ``average_checkpoints`` records it.

    ``criterion`` (e.g. valid.loss.min), ``mode`` (around, nbest) and ``best_epoch``
    say how the epochs were chosen; a null criterion means they were given explicitly.
    """

    epochs: tuple[int, ...]
    file: str
    criterion: str | None = None
    mode: str | None = None
    best_epoch: int | None = None


# --------------------------------------------------------------------------- input


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {path}: {err}") from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not JSON: {err}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    return data


_NUMBER = (int, float)
_KIND_NAMES = {_NUMBER: "a number", int: "an integer", str: "a string", list: "a list"}


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
        raise ResultsError(f"{path}: '{key}' is missing or not {_KIND_NAMES[kind]}")
    return value


def find_scores(exp_dir: Path) -> list[DecodedSet]:
    """Every ``decode_*/*/score/result.json`` of the experiment, sorted by decode dir and test set."""
    scores = []
    for path in sorted(exp_dir.glob(f"decode_*/*/score/{RESULT_JSON}")):
        data = read_json(path)
        scores.append(DecodedSet(
            decode=path.parents[2].name,
            test_set=path.parents[1].name,
            bleu=float(_field(data, "bleu", _NUMBER, path)),
            chrf=float(_field(data, "chrf", _NUMBER, path)),
            n_segments=_field(data, "n_segments", int, path),
            bleu_signature=_field(data, "signatures.bleu", str, path),
            chrf_signature=_field(data, "signatures.chrf", str, path),
            path=path,
        ))
    return scores


def read_averaged(exp_dir: Path) -> Averaged | None:
    """``<exp>/averaged.json`` (``{"epochs": [..], "file": .., "criterion": .., ...}``), or None without it."""
    path = exp_dir / "averaged.json"
    if not path.is_file():
        return None
    data = read_json(path)
    epochs = _field(data, "epochs", list, path)
    if not epochs or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
        raise ResultsError(f"{path}: 'epochs' must be a non-empty list of epoch numbers, got {epochs!r}")
    return Averaged(
        epochs=tuple(epochs),
        file=_field(data, "file", str, path),
        criterion=_field(data, "criterion", str, path, optional=True),
        mode=_field(data, "mode", str, path, optional=True),
        best_epoch=_field(data, "best_epoch", int, path, optional=True),
    )


def read_config(exp_dir: Path) -> dict[str, Any] | None:
    """The merged training config ESPnet saved, or None without it."""
    path = exp_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        raise ResultsError(f"{path}: not YAML: {err}") from None
    if not isinstance(config, dict):
        raise ResultsError(f"{path}: expected a YAML mapping")
    return config


def read_num_params(exp_dir: Path) -> int | None:
    path = exp_dir / "num_params"
    if not path.is_file():
        return None
    text = read_text(path).strip()
    try:
        return int(text)
    except ValueError:
        raise ResultsError(f"{path}: expected one integer, got {text[:40]!r}") from None


def read_commands(exp_dir: Path) -> list[str] | None:
    """The stage commands run.sh recorded, one per line, or None without ``run.cmd``."""
    path = exp_dir / "run.cmd"
    if not path.is_file():
        return None
    return [line for line in read_text(path).splitlines() if line.strip()]


# --------------------------------------------------------------------------- facts


def cpu_model() -> str:
    """The first ``model name`` of /proc/cpuinfo (absent on some ARM kernels)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return "unknown CPU"


def gpu_names() -> list[str]:
    """Names of the visible CUDA devices; torch is imported only here, it is slow to load."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def hardware() -> str:
    gpus = gpu_names()
    gpu = ", ".join(f"{gpus.count(name)} x {name}" for name in sorted(set(gpus))) if gpus else "no GPU"
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs; {gpu}"


def _conf(config: dict[str, Any], section: str, key: str) -> Any:
    conf = config.get(section)
    return conf.get(key) if isinstance(conf, dict) else None


def _fmt(template: str, value: Any) -> str | None:
    """``template`` filled with ``value``, or None when the config lacks the key."""
    return None if value is None else template.format(value)


def _described(name: str, details: Sequence[str | None]) -> str:
    """``name: detail, detail`` with the absent details left out."""
    present = [detail for detail in details if detail]
    return f"{name}: {', '.join(present)}" if present else name


def encoder_fact(config: dict[str, Any]) -> str:
    """e.g. ``ctc_compress_conformer: 12 blocks, d=512, ..., CTC after block 8, compression avg``."""
    get = partial(_conf, config, "encoder_conf")
    compression = get("compression")
    if compression == "fixed":
        compression = f"fixed (ratio {get('compression_fixed_ratio')})"
    layers = get("subsampling_layers")
    return _described(f"encoder: {config['encoder']}", [
        _fmt("{} blocks", get("num_blocks")),
        _fmt("d={}", get("output_size")),
        _fmt("{} heads", get("attention_heads")),
        _fmt("FFN {}", get("linear_units")),
        _fmt("conv kernel {}", get("cnn_module_kernel")),
        None if layers is None else f"subsampling {layers} x stride 2 ({2 ** layers}x shorter)",
        _fmt("CTC after block {}", get("ctc_block")),
        _fmt("compression {}", compression),
    ])


def config_facts(config: dict[str, Any]) -> list[str]:
    """What the merged training config says about the model and its training; absent keys are left out."""
    facts = []
    if "encoder" in config:
        facts.append(encoder_fact(config))
    if "decoder" in config:
        get = partial(_conf, config, "decoder_conf")
        facts.append(_described(f"decoder: {config['decoder']}", [
            _fmt("{} blocks", get("num_blocks")),
            _fmt("{} heads", get("attention_heads")),
            _fmt("FFN {}", get("linear_units")),
        ]))
    loss = [
        _fmt("ctc_weight {}", _conf(config, "model_conf", "ctc_weight")),
        _fmt("label smoothing {}", _conf(config, "model_conf", "lsm_weight")),
    ]
    training = [
        _fmt("max {} epochs", config.get("max_epoch")),
        _fmt("batch_bins {}", config.get("batch_bins")),
        _fmt("accum_grad {}", config.get("accum_grad")),
        _fmt("lr {}", _conf(config, "optim_conf", "lr")),
        _fmt("warmup {} steps", _conf(config, "scheduler_conf", "warmup_steps")),
    ]
    tokens = config.get("token_list")
    facts += [
        _described("loss", loss) if any(loss) else None,
        _fmt("vocabulary: {} tokens", len(tokens) if isinstance(tokens, list) else None),
        _described("training", training) if any(training) else None,
        _fmt("ngpu: {}", config.get("ngpu")),
    ]
    return [fact for fact in facts if fact]


def model_facts(config: dict[str, Any] | None, num_params: int | None) -> list[str]:
    """Markdown list items: the config's key facts and the parameter count."""
    facts = [] if config is None else config_facts(config)
    if num_params is not None:
        facts.append(f"parameters: {num_params / 1e6:.1f} M ({num_params:,})")
    return [f"- {fact}" for fact in facts]


def newest_date(paths: Sequence[Path]) -> str:
    """UTC date of the newest of ``paths``: stable across re-runs, unlike today's date."""
    if not paths:
        return "unknown (no scores, config or commands yet)"
    mtime = max(p.stat().st_mtime for p in paths)
    day = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%d")
    return f"{day} (newest of the files read)"


# --------------------------------------------------------------------------- markdown


def _cell(text: str) -> str:
    """A code span for a table cell; ``|`` (in every sacreBLEU signature) must be escaped there."""
    return f"`{text}`".replace("|", "\\|")


def score_table(scores: Sequence[DecodedSet]) -> list[str]:
    if not scores:
        return [f"No decoded test sets yet (no `decode_*/*/score/{RESULT_JSON}`)."]
    lines = [
        "| decoding | test set | BLEU | chrF | segments | BLEU signature | chrF signature |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.decode} | {s.test_set} | {s.bleu:.2f} | {s.chrf:.2f} | {s.n_segments} "
            f"| {_cell(s.bleu_signature)} | {_cell(s.chrf_signature)} |"
        )
    return lines


def averaged_line(averaged: Averaged | None) -> str:
    if averaged is None:
        return "- Checkpoint: not recorded (no averaged.json)"
    epochs = ", ".join(str(e) for e in averaged.epochs)
    if averaged.criterion is None:
        chosen = "given explicitly"
    else:
        chosen = _described(f"chosen by {averaged.criterion}", [
            _fmt("mode {}", averaged.mode),
            _fmt("best epoch {}", averaged.best_epoch),
        ])
    return f"- Checkpoint: `{averaged.file}`, the average of {len(averaged.epochs)} epochs ({epochs}), {chosen}"


def section(exp_dir: Path, key: str, title: str) -> str:
    """The experiment's whole section, markers included; ``key`` is exp_dir relative to RESULTS.md.

    ``key`` names the section and makes links relative: RESULTS.md may sit anywhere.
    """
    scores = find_scores(exp_dir)
    averaged = read_averaged(exp_dir)
    config = read_config(exp_dir)
    num_params = read_num_params(exp_dir)
    commands = read_commands(exp_dir)
    inputs = [s.path for s in scores] + [
        exp_dir / name for name in ("averaged.json", "config.yaml", "num_params", "run.cmd")
        if (exp_dir / name).is_file()
    ]
    lines = [
        BEGIN.format(key=key),
        f"## {title}",
        "",
        f"- Experiment: `{exp_dir}`",
        f"- Date: {newest_date(inputs)}",
        f"- Hardware: {hardware()}",
        averaged_line(averaged),
        "",
        *score_table(scores),
        "",
        "### Model",
        "",
        *(model_facts(config, num_params) or ["No config.yaml or num_params."]),
        "",
        "### Commands",
        "",
    ]
    if commands is None:
        lines.append("Not recorded (no run.cmd).")
    else:
        lines += ["```bash", *commands, "```"]
    if (exp_dir / "curves.png").is_file():
        lines += ["", "### Training curves", "", f"![training curves of {title}]({Path(key, 'curves.png').as_posix()})"]
    lines.append(END.format(key=key))
    return "\n".join(lines) + "\n"


def replace_section(document: str, key: str, new_section: str) -> str:
    """``document`` with the section of ``key`` replaced, or appended when it has none."""
    begin, end = BEGIN.format(key=key), END.format(key=key)
    start = document.find(begin)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + new_section
    stop = document.find(end, start)
    if stop < 0:
        raise ResultsError(f"the section of {key} has its begin marker but no end marker")
    return document[:start] + new_section + document[stop + len(end):].removeprefix("\n")


def make_results(exp_dir: Path, out: Path, title: str | None) -> None:
    if not exp_dir.is_dir():
        raise ResultsError(f"experiment dir {exp_dir} does not exist")
    key = Path(os.path.relpath(exp_dir.resolve(), out.resolve().parent)).as_posix()
    new_section = section(exp_dir, key, title or exp_dir.resolve().name)
    document = read_text(out) if out.is_file() else FILE_HEADER
    try:
        write_text_atomically(out, replace_section(document, key, new_section))
    except OSError as err:
        raise ResultsError(f"cannot write {out}: {err}") from None


# --------------------------------------------------------------------------- command line


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-dir", type=Path, required=True, help="training dir, e.g. exp/st_train")
    parser.add_argument("--out", type=Path, required=True, help="RESULTS.md to create or update")
    parser.add_argument("--title", help="section heading (default: the experiment dir's name)")
    return parser


@command()
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    make_results(args.exp_dir, args.out, args.title)
    print(f"{args.out}: section {args.title or args.exp_dir.resolve().name} updated")


if __name__ == "__main__":
    sys.exit(main())
