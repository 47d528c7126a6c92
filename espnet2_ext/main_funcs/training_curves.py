"""An experiment's training curves in one PNG, from ESPnet's reporter state.

The per-epoch means come from the ``reporter`` entry of ``<exp>/checkpoint.pth``
(what ESPnet's trainer saves after every epoch), so the plot works during and after
training without parsing logs. Panels, each left out when its key was never
reported: loss, accuracy, the CE and CTC components (separate panels: CE is per
target token, CTC per utterance, so their scales differ), and the compression
ratio (compressed / uncompressed encoder length). Every panel marks the best
epoch by valid loss and shades the epochs averaged into the decoded checkpoint
(``averaged.json``); the title lists the BLEU scores of the experiment's ``result.json``
files. :mod:`espnet2_ext.main_funcs.experiment` reads all three.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from espnet2.train.reporter import Reporter
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from espnet2_ext.fileio.atomic import atomic_path
from espnet2_ext.main_funcs.experiment import Averaged, DecodedSet, find_scores, load_reporter, read_averaged

SUBSETS = ("train", "valid")  # ESPnet's reporter keys for the two passes of an epoch
BEST_BY = ("valid", "loss")  # lower is better


@dataclass(frozen=True)
class Panel:
    key2: str  # the statistic's name in the reporter
    title: str


PANELS = (
    Panel("loss", "loss (CE + weighted CTC, per token)"),
    Panel("acc", "accuracy"),
    Panel("loss_ce", "CE loss (per token)"),
    Panel("loss_ctc", "CTC loss (per utterance)"),
    Panel("compression_ratio", "compression ratio"),
)


class CurvesError(ValueError):
    """A reporter with nothing to plot."""


def epochs_reported(reporter: Reporter) -> list[int]:
    """Epochs 1..last that have statistics (a resumed run may lack some)."""
    return [epoch for epoch in range(1, reporter.get_epoch() + 1) if epoch in reporter.stats]


def series(reporter: Reporter, key: str, key2: str) -> list[float]:
    """``key.key2`` for epochs 1..last, NaN where an epoch did not report it."""
    return [
        # not get_value: it checks that the key exists at the last epoch, not at `epoch`
        float(reporter.stats[epoch][key][key2]) if reporter.has(key, key2, epoch) else math.nan
        for epoch in range(1, reporter.get_epoch() + 1)
    ]


def panels_to_draw(reporter: Reporter) -> list[Panel]:
    """The panels whose statistic was reported by train or valid in some epoch."""
    reported = {
        (key, key2)
        for epoch in epochs_reported(reporter)
        for key in reporter.get_keys(epoch)
        for key2 in reporter.get_keys2(key, epoch)
    }
    return [panel for panel in PANELS if any((subset, panel.key2) in reported for subset in SUBSETS)]


def best_epoch(reporter: Reporter) -> int | None:
    """Epoch with the lowest valid loss (the earliest of ties), None when never reported."""
    values = series(reporter, *BEST_BY)
    finite = [(value, epoch) for epoch, value in enumerate(values, 1) if not math.isnan(value)]
    return min(finite)[1] if finite else None


def figure_title(exp_dir: Path, scores: Sequence[DecodedSet]) -> str:
    """The experiment's name and its BLEU scores, one decode dir per line."""
    lines = [exp_dir.resolve().name]
    by_decode: dict[str, list[str]] = {}
    for s in scores:
        by_decode.setdefault(s.decode, []).append(f"{s.test_set} {s.result.bleu:.2f}")
    lines += [f"BLEU ({decode}): {', '.join(sets)}" for decode, sets in by_decode.items()]
    return "\n".join(lines)


def draw(reporter: Reporter, averaged: Averaged | None, title: str) -> Figure:
    """The figure, one panel per reported statistic in two columns, on an Agg canvas.

    A bare ``Figure`` rather than pyplot: no global figure registry, no backend switch.
    """
    panels = panels_to_draw(reporter)
    if not panels:
        raise CurvesError(f"none of {', '.join(p.key2 for p in PANELS)} was reported")
    epochs = list(range(1, reporter.get_epoch() + 1))
    best = best_epoch(reporter)
    columns = min(2, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(6 * columns, 3.4 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for subset in SUBSETS:
            values = series(reporter, subset, panel.key2)
            if not all(math.isnan(v) for v in values):
                ax.plot(epochs, values, marker=".", label=subset)
        if averaged is not None:
            for epoch in averaged.epochs:
                ax.axvspan(epoch - 0.5, epoch + 0.5, color="tab:green", alpha=0.12, lw=0)
        if best is not None:
            ax.axvline(best, color="tab:red", ls="--", lw=1)
        ax.set_title(panel.title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes.flat[0].legend(handles=_legend(axes.flat[: len(panels)], best, averaged), fontsize="small")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _legend(axes: Sequence[Axes], best: int | None, averaged: Averaged | None) -> list[Artist]:
    """One legend for all panels (they share styles): each subset once, the best epoch, the averaging."""
    by_label: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            by_label.setdefault(label, handle)
    handles = list(by_label.values())
    if best is not None:
        handles.append(Line2D([], [], color="tab:red", ls="--", lw=1, label=f"best valid loss (epoch {best})"))
    if averaged is not None:
        handles.append(Patch(color="tab:green", alpha=0.25, label=f"averaged ({len(averaged.epochs)} epochs)"))
    return handles


def plot_curves(exp_dir: Path, out: Path) -> None:
    """Draw the experiment's curves into the PNG ``out``, written atomically."""
    if not exp_dir.is_dir():
        raise CurvesError(f"experiment dir {exp_dir} does not exist")
    reporter = load_reporter(exp_dir)
    if reporter.get_epoch() < 1:
        raise CurvesError(f"{exp_dir / 'checkpoint.pth'}: no finished epoch to plot")
    figure = draw(reporter, read_averaged(exp_dir), figure_title(exp_dir, find_scores(exp_dir)))
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
