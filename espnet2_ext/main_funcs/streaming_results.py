"""What recipe stage 10 measured: whole talks streamed, each setting's quality and latency, as a table and a plot.

Stage 10 (``simulate --history ... --settings conf/stream.yaml``) leaves
``<exp>/stream_<conf>/<test set>/<setting>/`` with the long-form ``scores.tsv`` (BLEU,
chrF, LongYAAL, StreamLAAL, their ``_CA``) and ``setting.yaml``. Each setting is set
beside stage 9's run of the same policy, f, chunk and layer on the gold segmentation
(``simulate_<conf>``): the upper bound a stream is measured against in FBK's StreamAtt
paper, its BLEU and YAAL, the latency LongYAAL extends to talks. The plot draws BLEU
against LongYAAL per way of streaming, with the gold segmentation's BLEU against YAAL.
"""

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from espnet2_ext.fileio.atomic import atomic_path
from espnet2_ext.main_funcs.simultaneous_results import (
    SCORES_TSV,
    SimulatedSetting,
    find_simulations,
    read_scores_tsv,
    read_setting,
)

STREAM_PREFIX = "stream_"
PLOT_NAME = "bleu_longyaal.png"
SAME_AGENT = ("policy", "frame_num", "frame_unit", "attn_threshold", "segment_ms", "attention_layer", "cmvn")
GOAL_SHARE = 0.85  # the demo's goal: 85% of the gold segmentation's BLEU at the same f
GOLD_COLOUR = "black"  # the upper bound, apart from the streaming curves (C0, C1, ...)


def find_streams(exp_dir: Path) -> list[SimulatedSetting]:
    """Every finished setting (one with a ``scores.tsv``) of the experiment's stage-10 runs,
    by run, test set and LongYAAL."""
    found = []
    for path in exp_dir.glob(f"{STREAM_PREFIX}*/*/*/{SCORES_TSV}"):
        setting_dir = path.parent
        found.append(SimulatedSetting(
            setting_dir.parents[1].name, setting_dir.parent.name, setting_dir.name, read_setting(setting_dir),
            read_scores_tsv(path), path,
        ))
    return sorted(found, key=lambda s: (s.run, s.test_set, s.score("LongYAAL") or float("inf"), s.name))


def gold_counterpart(stream: SimulatedSetting, gold: Sequence[SimulatedSetting]) -> SimulatedSetting | None:
    """Stage 9's run of the same agent (policy, f, chunk, layer, normalisation) on the same test set."""
    for setting in gold:
        if setting.test_set == stream.test_set and all(
            setting.options.get(key) == stream.options.get(key) for key in SAME_AGENT
        ):
            return setting
    return None


def way(setting: SimulatedSetting) -> str:
    """The curve a setting belongs to: how the talk is streamed."""
    options = setting.options
    history = options.get("history", "none")
    if history == "vad":
        return "cut at pauses (VAD), utterance by utterance"
    if history == "audio":
        return f"FixedAudio, {options.get('history_words')} words (FBK's baseline)"
    cut = " (ours: cut past the discarded text)" if options.get("audio_cut") == "past_discarded" else ""
    if history == "punctuation":
        return f"StreamAtt, punctuation{cut}"
    return f"StreamAtt, {options.get('history_words')} words{cut}"


def _cell(value: float | None, template: str = "{:.0f}") -> str:
    return "–" if value is None else template.format(value)


def streaming_table(streams: Sequence[SimulatedSetting], gold: Sequence[SimulatedSetting]) -> list[str]:
    """Markdown lines: per run and test set, each setting's BLEU, chrF, LongYAAL and StreamLAAL
    (their ``_CA`` when measured) beside the gold segmentation's BLEU and YAAL at the same f."""
    lines: list[str] = []
    groups: dict[tuple[str, str], list[SimulatedSetting]] = {}
    for stream in streams:
        groups.setdefault((stream.run, stream.test_set), []).append(stream)
    for (run, test_set), group in groups.items():
        aware = any("LongYAAL_CA" in s.scores for s in group)
        lines += [
            f"{run}, {test_set} (whole talks streamed, re-segmented onto the reference sentences; latency in ms; "
            "gold: stage 9's same agent on the reference segmentation):",
            "",
            "| setting | BLEU | chrF | LongYAAL | StreamLAAL |" + (" LongYAAL_CA | StreamLAAL_CA |" if aware else "")
            + " gold BLEU | % gold | gold YAAL |",
            "|---|---:|---:|---:|---:|" + ("---:|---:|" if aware else "") + "---:|---:|---:|",
        ]
        for s in group:
            counterpart = gold_counterpart(s, gold)
            gold_bleu = counterpart.score("BLEU") if counterpart else None
            bleu = s.score("BLEU")
            share = None if bleu is None or not gold_bleu else 100 * bleu / gold_bleu
            row = (
                f"| {s.name} | {_cell(bleu, '{:.2f}')} | {_cell(s.score('chrF'), '{:.2f}')} "
                f"| {_cell(s.score('LongYAAL'))} | {_cell(s.score('StreamLAAL'))} |"
            )
            if aware:
                row += f" {_cell(s.score('LongYAAL_CA'))} | {_cell(s.score('StreamLAAL_CA'))} |"
            gold_yaal = counterpart.score("YAAL") if counterpart else None
            row += f" {_cell(gold_bleu, '{:.2f}')} | {_cell(share, '{:.0f}%')} | {_cell(gold_yaal)} |"
            lines.append(row)
        lines.append("")
    return lines[:-1]


def draw(group: Sequence[SimulatedSetting], gold: Sequence[SimulatedSetting], title: str) -> Figure:
    """BLEU against LongYAAL (seconds), one curve per way of streaming (f varies along it), and
    the gold segmentation's runs of the same agents, BLEU against YAAL."""
    figure = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ways: dict[str, list[SimulatedSetting]] = {}
    for setting in group:
        ways.setdefault(way(setting), []).append(setting)
    for number, (name, members) in enumerate(sorted(ways.items())):
        points = sorted((s.scores["LongYAAL"] / 1000, s.scores["BLEU"], s.name) for s in members
                        if s.score("LongYAAL") == s.score("LongYAAL"))  # NaN: no word before a talk's end
        if points:
            xs, ys, labels = zip(*points)
            ax.plot(xs, ys, "o-", color=f"C{number}", label=name)
            for x, y, label in points:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize="x-small")
    matched = {id(c): c for s in group if (c := gold_counterpart(s, gold)) is not None and "YAAL" in c.scores}
    if matched:
        points = sorted((c.scores["YAAL"] / 1000, c.scores["BLEU"], c.name) for c in matched.values())
        xs, ys, labels = zip(*points)
        ax.plot(xs, ys, "s--", color=GOLD_COLOUR, label="gold segmentation (BLEU against YAAL)")
        for x, y, label in points:
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small", color=GOLD_COLOUR)
    ax.set_xlabel("LongYAAL (s)")
    ax.set_ylabel("BLEU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title(title)
    figure.tight_layout()
    return figure


def plot_streams(exp_dir: Path) -> list[Path]:
    """Draw ``<exp>/stream_*/<test set>/bleu_longyaal.png`` for every run and test set; the paths written."""
    streams = find_streams(exp_dir)
    gold = find_simulations(exp_dir)
    groups: dict[tuple[str, str], list[SimulatedSetting]] = {}
    for stream in streams:
        groups.setdefault((stream.run, stream.test_set), []).append(stream)
    written = []
    for (run, test_set), group in groups.items():
        out = exp_dir / run / test_set / PLOT_NAME
        figure = draw(group, gold, f"{exp_dir.resolve().name}: {run}, {test_set}")
        with atomic_path(out) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        written.append(out)
    return written


def stream_plots(exp_dir: Path) -> list[Path]:
    """The plots :func:`plot_streams` has drawn."""
    return sorted(exp_dir.glob(f"{STREAM_PREFIX}*/*/{PLOT_NAME}"))

