#!/usr/bin/env python3
"""Plot BLEU against latency for every setting recipe stages 9 and 10 ran, one PNG per run and test set.

Stage 9's (:mod:`espnet2_ext.main_funcs.simultaneous_results`): BLEU against LAAL, plain
and computation-aware, and the offline BLEU (stage 7) they approach, in
``<exp>/simulate_<conf>/<test set>/bleu_laal.png``. Stage 10's
(:mod:`espnet2_ext.main_funcs.streaming_results`): whole talks streamed, BLEU against
LongYAAL per way of streaming, with the gold segmentation's runs, in
``<exp>/stream_<conf>/<test set>/bleu_longyaal.png``.

Usage:
    python -m espnet2_ext.bin.plot_simulation --exp_dir exp/st_train_finetune
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.main_funcs.experiment import ExperimentError
from espnet2_ext.main_funcs.simultaneous_results import SCORES_TSV, plot_simulations
from espnet2_ext.main_funcs.streaming_results import plot_streams
from espnet2_ext.utils.cli import ArgumentParser, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp_dir", type=Path, required=True, help="the experiment stages 9 and 10 ran on")
    return parser


@command(ExperimentError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    if not args.exp_dir.is_dir():
        raise ExperimentError(f"experiment dir {args.exp_dir} does not exist")
    written = plot_simulations(args.exp_dir) + plot_streams(args.exp_dir)
    if not written:
        raise ExperimentError(
            f"{args.exp_dir}: no simulate_*/<test set>/<setting>/{SCORES_TSV} nor stream_*/...: run stage 9 or 10"
        )
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
