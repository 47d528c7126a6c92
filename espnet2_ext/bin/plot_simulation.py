#!/usr/bin/env python3
"""Plot BLEU against LAAL for every simultaneous setting recipe stage 9 ran, one PNG per test set.

See :mod:`espnet2_ext.main_funcs.simultaneous_results`: the plain and the
computation-aware curves, and the offline BLEU (stage 7) they approach, drawn into
``<exp>/simulate_<conf>/<test set>/bleu_laal.png``.

Usage:
    python -m espnet2_ext.bin.plot_simulation --exp_dir exp/st_train_finetune
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.main_funcs.experiment import ExperimentError
from espnet2_ext.main_funcs.simultaneous_results import plot_simulations
from espnet2_ext.utils.cli import ArgumentParser, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp_dir", type=Path, required=True, help="the experiment stage 9 simulated")
    return parser


@command(ExperimentError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    for path in plot_simulations(args.exp_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
