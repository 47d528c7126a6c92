"""What recipe stage 9 measured: each simultaneous setting's quality and latency, as a table and a plot.

Stage 9 (``simulate --settings``) leaves ``<exp>/simulate_<conf>/<test set>/<setting>/``
with SimulEval's ``scores.tsv`` and our ``setting.yaml``. Here they are read back,
set beside the offline BLEU of the same test set (gold segmentation, stage 7's
``decode_<conf>/<test set>/score/result.json``), tabled for RESULTS.md and drawn as
BLEU against LAAL: the plain curve (latency of the audio only) and the
computation-aware one (plus the time spent computing), with the offline BLEU as
the ceiling they approach.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from espnet2_ext.fileio.atomic import atomic_path
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.main_funcs.experiment import ExperimentError, find_scores

SIMULATE_PREFIX = "simulate_"
SCORES_TSV = "scores.tsv"
SETTING_YAML = "setting.yaml"
PLOT_NAME = "bleu_laal.png"
KEPT_SHARE = 0.9  # the demo's goal: 90% of the offline BLEU


@dataclass(frozen=True)
class SimulatedSetting:
    """One setting's run on one test set: ``run`` is the ``simulate_*`` dir, ``name`` the setting's."""

    run: str
    test_set: str
    name: str
    options: dict[str, Any]
    scores: dict[str, float]
    path: Path

    def score(self, column: str) -> float | None:
        return self.scores.get(column)


def read_scores_tsv(path: Path) -> dict[str, float]:
    """SimulEval's ``scores.tsv``: a header line and one line of numbers."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ExperimentError(f"cannot read {path}: {err}") from None
    if len(lines) != 2 or len(lines[0].split("\t")) != len(lines[1].split("\t")):
        raise ExperimentError(f"{path}: expected a header line and one line of values, tab-separated")
    try:
        return {key: float(value) for key, value in zip(lines[0].split("\t"), lines[1].split("\t"))}
    except ValueError:
        raise ExperimentError(f"{path}:2: expected numbers, got {lines[1]!r}") from None


def read_setting(setting_dir: Path) -> dict[str, Any]:
    """A setting's ``setting.yaml`` (its options); ``{}`` when there is none."""
    try:
        return read_yaml_mapping(setting_dir / SETTING_YAML) if (setting_dir / SETTING_YAML).is_file() else {}
    except YamlFileError as err:
        raise ExperimentError(str(err)) from None


def find_simulations(exp_dir: Path) -> list[SimulatedSetting]:
    """Every finished setting (one with a ``scores.tsv``) of the experiment's stage-9 runs,
    by run, test set and plain LAAL."""
    found = []
    for path in exp_dir.glob(f"{SIMULATE_PREFIX}*/*/*/{SCORES_TSV}"):
        setting_dir = path.parent
        found.append(SimulatedSetting(
            setting_dir.parents[1].name, setting_dir.parent.name, setting_dir.name, read_setting(setting_dir),
            read_scores_tsv(path), path,
        ))
    return sorted(found, key=lambda s: (s.run, s.test_set, s.score("LAAL") or math.inf, s.name))


def offline_bleu(exp_dir: Path) -> dict[tuple[str, str], float]:
    """(run, test set) -> the offline BLEU of stage 7 (gold segmentation) for each stage-9 run:
    ``simulate_<conf>`` is compared with ``decode_<conf>``, or with the only decode dir there is."""
    decoded = find_scores(exp_dir)
    bleu: dict[tuple[str, str], float] = {}
    for run, test_set in {(s.run, s.test_set) for s in find_simulations(exp_dir)}:
        same = [d for d in decoded if d.test_set == test_set]
        named = [d for d in same if d.decode == "decode_" + run.removeprefix(SIMULATE_PREFIX)]
        chosen = named or (same if len(same) == 1 else [])
        if chosen:
            bleu[(run, test_set)] = chosen[0].result.bleu
    return bleu


def mean_source_seconds(group: Sequence[SimulatedSetting]) -> float | None:
    """The offline system's LAAL, in seconds: it writes every word when the source has ended,
    so its LAAL is the source length, averaged over the instances (of any setting's log)."""
    from espnet2_ext.simultaneous.instances import InstancesLogError, read_instances

    for setting in group:
        log = setting.path.parent / "instances.log"
        try:
            records = read_instances(log).records if log.is_file() else []
        except InstancesLogError as err:
            raise ExperimentError(str(err)) from None
        if records:
            return sum(r.source_length for r in records) / len(records) / 1000
    return None


def _groups(settings: Sequence[SimulatedSetting]) -> dict[tuple[str, str], list[SimulatedSetting]]:
    groups: dict[tuple[str, str], list[SimulatedSetting]] = {}
    for setting in settings:
        groups.setdefault((setting.run, setting.test_set), []).append(setting)
    return groups


def _cell(value: float | None, template: str = "{:.0f}") -> str:
    return "–" if value is None else template.format(value)


def simultaneous_table(settings: Sequence[SimulatedSetting], offline: dict[tuple[str, str], float]) -> list[str]:
    """Markdown lines: per run and test set, each setting's BLEU, share of offline BLEU, LAAL, YAAL and AL (ms),
    with the computation-aware columns when measured; empty when stage 9 has not run."""
    lines: list[str] = []
    for (run, test_set), group in _groups(settings).items():
        reference = offline.get((run, test_set))
        aware = any("LAAL_CA" in s.scores for s in group)
        header = "| setting | BLEU | % offline | LAAL | YAAL | AL |" + (" LAAL_CA | AL_CA |" if aware else "")
        seconds = mean_source_seconds(group)
        offline_laal = "" if seconds is None else f" at LAAL {1000 * seconds:.0f}, every word at the end"
        lines += [
            f"{run}, {test_set} (gold segmentation; latency in ms of source; offline BLEU "
            f"{_cell(reference, '{:.2f}')}{offline_laal}):",
            "",
            header,
            "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if aware else ""),
        ]
        for s in group:
            bleu = s.score("BLEU")
            share = None if bleu is None or not reference else 100 * bleu / reference
            row = (
                f"| {s.name} | {_cell(bleu, '{:.2f}')} | {_cell(share, '{:.0f}%')} "
                f"| {_cell(s.score('LAAL'))} | {_cell(s.score('YAAL'))} | {_cell(s.score('AL'))} |"
            )
            if aware:
                row += f" {_cell(s.score('LAAL_CA'))} | {_cell(s.score('AL_CA'))} |"
            lines.append(row)
        lines.append("")
    return lines[:-1]


def family(setting: SimulatedSetting) -> str:
    """The curve a setting belongs to: its policy, and for AlignAtt what f counts."""
    policy = str(setting.options.get("policy", setting.name.split("_")[0]))
    if policy == "alignatt":
        units = {"position": "encoder positions", "time": "40-ms frames"}
        unit = units.get(setting.options.get("frame_unit", "position"), "encoder positions")
        return f"AlignAtt (f in {unit})"
    return {"edatt": "EDAtt", "la": "local agreement", "waitk": "wait-k"}.get(policy, policy)


def draw(
    group: Sequence[SimulatedSetting], reference: float | None, title: str, offline_seconds: float | None = None
) -> Figure:
    """BLEU against LAAL (seconds): the plain and computation-aware curves, the offline BLEU above,
    and the offline system as a point (every word at the end: LAAL ``offline_seconds``)."""
    figure = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    families: dict[str, list[SimulatedSetting]] = {}
    for setting in group:  # one curve per policy (and AlignAtt's frame unit): its parameter varies along it
        families.setdefault(family(setting), []).append(setting)
    for number, (name, members) in enumerate(sorted(families.items())):
        color = f"C{number}"
        for column, style, suffix in (("LAAL", "o-", ""), ("LAAL_CA", "s--", ", computation-aware")):
            points = sorted((s.scores[column] / 1000, s.scores["BLEU"], s.name) for s in members if column in s.scores)
            if not points:
                continue
            xs, ys, _ = zip(*points)
            ax.plot(xs, ys, style, color=color, label=name + suffix, alpha=1.0 if not suffix else 0.6)
            if not suffix:
                for x, y, label in points:
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize="x-small")
    if reference is not None:
        ax.axhline(reference, color="tab:green", lw=1.5, label=f"offline ({reference:.1f})")
        ax.axhline(KEPT_SHARE * reference, color="tab:green", ls=":", lw=1, label=f"{KEPT_SHARE:.0%} of offline")
        if offline_seconds is not None:
            ax.plot([offline_seconds], [reference], "*", color="tab:green", ms=12,
                    label=f"offline: every word at the end (LAAL {offline_seconds:.2f} s)")
    ax.set_xlabel("LAAL (s)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside: the curves fill the axes
    ax.set_title(title)
    figure.tight_layout()
    return figure


def plot_simulations(exp_dir: Path) -> list[Path]:
    """Draw ``<exp>/simulate_*/<test set>/bleu_laal.png`` for every run and test set; the paths written
    (none when stage 9 has not run)."""
    settings = find_simulations(exp_dir)
    offline = offline_bleu(exp_dir)
    written = []
    for (run, test_set), group in _groups(settings).items():
        out = exp_dir / run / test_set / PLOT_NAME
        title = f"{exp_dir.resolve().name}: {run}, {test_set}"
        figure = draw(group, offline.get((run, test_set)), title, mean_source_seconds(group))
        with atomic_path(out) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        written.append(out)
    return written


def plots(exp_dir: Path) -> list[Path]:
    """The plots :func:`plot_simulations` has drawn."""
    return sorted(exp_dir.glob(f"{SIMULATE_PREFIX}*/*/{PLOT_NAME}"))
