#!/usr/bin/env python3
"""Plot an experiment's training curves into one PNG, from ESPnet's reporter state.

See :mod:`espnet2_ext.main_funcs.training_curves` for the panels.

Usage:
    python -m espnet2_ext.bin.plot_curves --exp_dir exp/st_train [--out exp/st_train/curves.png]
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2.utils.types import str_or_none

from espnet2_ext.main_funcs.experiment import ExperimentError
from espnet2_ext.main_funcs.training_curves import CurvesError, plot_curves
from espnet2_ext.utils.cli import ArgumentParser, check_output_file, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp_dir", type=Path, required=True, help="training dir with checkpoint.pth")
    parser.add_argument("--out", type=str_or_none, default=None, help="PNG to write (default: EXP_DIR/curves.png)")
    return parser


@command(ExperimentError, CurvesError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    out = check_output_file(args.out or args.exp_dir / "curves.png", "--out")
    plot_curves(args.exp_dir, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
