"""One experiment's section of an icefall-style RESULTS.md, rebuilt from what is on disk.

The section holds the scores of every ``<exp>/decode_*/<test set>/score/result.json``
(gold segmentation) beside those of ``<exp>/decode_*/<test set>/talks/score/result.json``
(whole talks with our own segmentation, re-segmented onto the reference sentences)
with their sacreBLEU signatures, the talks' subtitle scores (SubER and the error of
block start times, each timing), the averaged checkpoint (``averaged.json``), key
facts of the model (``config.yaml``, ``num_params``), the exact stage commands
(``run.cmd``, one per line), the hardware, and the training curves (``curves.png``)
when present; :mod:`espnet2_ext.main_funcs.experiment` reads those records. After
stage 9, each simultaneous setting's BLEU and latency beside the offline BLEU, and
the BLEU-LAAL plots (:mod:`espnet2_ext.main_funcs.simultaneous_results`); after stage 10,
the whole talks streamed beside the gold segmentation, and the BLEU-LongYAAL plots
(:mod:`espnet2_ext.main_funcs.streaming_results`).

The section sits between marker comments named after the experiment dir, so one
RESULTS.md can hold several experiments and text outside the markers is kept.
Nothing is accumulated: each run rebuilds the section from the files, so re-running
gives the same file. Its date is that of the newest file read, not today's, for the
same reason. The hardware is that of the machine running this: run it where the
experiment trained and decoded.
"""

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.main_funcs.experiment import (
    AVERAGED_JSON,
    RESULT_JSON,
    TALKS_DIR,
    Averaged,
    DecodedSet,
    ScoreResult,
    find_scores,
    find_talk_scores,
    read_averaged,
    read_commands,
    read_config,
    read_num_params,
)
from espnet2_ext.main_funcs.simultaneous_results import find_simulations, offline_bleu, plots, simultaneous_table
from espnet2_ext.main_funcs.streaming_results import find_streams, stream_plots, streaming_table

FILE_HEADER = "# Results\n"
BEGIN = "<!-- make_results begin: {key} (generated: edits inside are overwritten) -->"
END = "<!-- make_results end: {key} -->"


class ResultsError(ValueError):
    """A RESULTS.md whose markers are broken, or no experiment dir."""


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


@dataclass(frozen=True)
class ScoredSet:
    """One test set under one decoding: scored with gold segmentation, with our own, or both."""

    decode: str
    test_set: str
    gold: ScoreResult | None
    own: ScoreResult | None


def pair_scores(gold: Sequence[DecodedSet], own: Sequence[DecodedSet]) -> list[ScoredSet]:
    """Gold and own-segmentation scores of the same decode dir and test set side by side, sorted."""
    by_key: dict[tuple[str, str], dict[str, ScoreResult]] = {}
    for kind, scores in (("gold", gold), ("own", own)):
        for s in scores:
            by_key.setdefault((s.decode, s.test_set), {})[kind] = s.result
    return [ScoredSet(*key, found.get("gold"), found.get("own")) for key, found in sorted(by_key.items())]


_ABSENT = "–"


def _score(result: ScoreResult | None, metric: str) -> str:
    return _ABSENT if result is None else f"{getattr(result, metric):.2f}"


def score_table(scores: Sequence[ScoredSet]) -> list[str]:
    """One row per test set: BLEU, chrF and segment count with gold and with our own segmentation,
    each pair side by side; the sacreBLEU signatures below it."""
    if not scores:
        return [f"No decoded test sets yet (no `decode_*/*/score/{RESULT_JSON}`)."]
    lines = [
        "| decoding | test set | BLEU gold | BLEU own | chrF gold | chrF own | segments gold | segments own |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        gold_segments = _ABSENT if s.gold is None else str(s.gold.n_segments)
        own_segments = _ABSENT if s.own is None or s.own.talks is None else str(s.own.talks.n_segments)
        lines.append(
            f"| {s.decode} | {s.test_set} | {_score(s.gold, 'bleu')} | {_score(s.own, 'bleu')} "
            f"| {_score(s.gold, 'chrf')} | {_score(s.own, 'chrf')} | {gold_segments} | {own_segments} |"
        )
    lines += [
        "",
        f"- *gold*: the reference segmentation, one segment per reference sentence (`score/{RESULT_JSON}`)",
        "- *own*: whole talks translated with our own segmentation, re-segmented onto the reference",
        f"  sentences by mweralign before scoring, as at IWSLT (`{TALKS_DIR}/score/{RESULT_JSON}`)",
    ]
    for s in scores:
        if s.gold is not None and s.own is not None and s.gold.n_segments != s.own.n_segments:
            lines.append(
                f"- {s.decode} {s.test_set}: *own* is scored against {s.own.n_segments} reference sentences, "
                f"*gold* against {s.gold.n_segments}"
            )
    return lines + signature_lines(scores)


def subtitle_table(own: Sequence[DecodedSet]) -> list[str]:
    """One row per decoding, test set and subtitle timing (the default first), or nothing
    when no talk score has subtitles."""
    rows = [(s, score) for s in own for score in s.result.subtitles]
    if not rows:
        return []
    lines = [
        "| decoding | test set | timing | SubER | start error (s) | blocks | within cps |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for s, score in rows:
        default = " (default)" if score is s.result.subtitles[0] else ""
        error = _ABSENT if score.start_error is None else f"{score.start_error:.3f} ({score.starts_compared})"
        within = _ABSENT if score.within_cps is None else f"{score.within_cps:.1f}% (<= {score.max_cps:g})"
        lines.append(
            f"| {s.decode} | {s.test_set} | {score.timing}{default} | {score.suber:.2f} | {error} "
            f"| {score.blocks} | {within} |"
        )
    return [
        *lines,
        "",
        "- the talks' subtitles (our own segmentation) against the reference sentences, each one",
        "  block at its `segments` times; SubER (`subtitle-edit-rate`): edits of words and breaks",
        "  per 100 reference tokens; start error: mean absolute seconds between a block and its",
        "  sentence, over the blocks starting one (how many in parentheses); within cps: blocks read",
        f"  at no more than that speed; the files scored: `{TALKS_DIR}/score/subtitles/`",
    ]


def signature_lines(scores: Sequence[ScoredSet]) -> list[str]:
    """``- BLEU signature: `...``` once when every score shares it, else one item per signature
    naming its scores (outside a table, a signature's ``|`` needs no escaping)."""
    lines = []
    for metric, attribute in (("BLEU", "bleu_signature"), ("chrF", "chrf_signature")):
        users: dict[str, list[str]] = {}
        for s in scores:
            for kind, result in (("gold", s.gold), ("own", s.own)):
                if result is not None:
                    users.setdefault(getattr(result, attribute), []).append(f"{s.decode} {s.test_set} {kind}")
        if len(users) == 1:
            lines.append(f"- {metric} signature: `{next(iter(users))}`")
        else:
            lines += [f"- {metric} signature `{signature}`: {', '.join(names)}" for signature, names in users.items()]
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
    gold, own = find_scores(exp_dir), find_talk_scores(exp_dir)
    averaged = read_averaged(exp_dir)
    config = read_config(exp_dir)
    num_params = read_num_params(exp_dir)
    commands = read_commands(exp_dir)
    inputs = [s.path for s in (*gold, *own)] + [
        exp_dir / name for name in (AVERAGED_JSON, "config.yaml", "num_params", "run.cmd")
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
        *score_table(pair_scores(gold, own)),
        "",
    ]
    subtitles = subtitle_table(own)
    if subtitles:
        lines += ["### Subtitles", "", *subtitles, ""]
    lines += [
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
    simulated = find_simulations(exp_dir)
    if simulated:
        table = simultaneous_table(simulated, offline_bleu(exp_dir))
        lines += ["", "### Simultaneous translation (stage 9)", "", *table]
        for plot in plots(exp_dir):
            relative = Path(key, plot.relative_to(exp_dir)).as_posix()
            lines += ["", f"![BLEU against LAAL, {plot.parent.parent.name} {plot.parent.name}]({relative})"]
    streamed = find_streams(exp_dir)
    if streamed:
        lines += ["", "### Whole talks streamed (stage 10)", "", *streaming_table(streamed, simulated)]
        for plot in stream_plots(exp_dir):
            relative = Path(key, plot.relative_to(exp_dir)).as_posix()
            lines += ["", f"![BLEU against LongYAAL, {plot.parent.parent.name} {plot.parent.name}]({relative})"]
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
    """Create ``out`` or replace the experiment's section in it."""
    if not exp_dir.is_dir():
        raise ResultsError(f"experiment dir {exp_dir} does not exist")
    key = Path(os.path.relpath(exp_dir.resolve(), out.resolve().parent)).as_posix()
    new_section = section(exp_dir, key, title or exp_dir.resolve().name)
    try:
        document = out.read_text(encoding="utf-8") if out.is_file() else FILE_HEADER
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {out}: {err}") from None
    write_text_atomically(out, replace_section(document, key, new_section))
