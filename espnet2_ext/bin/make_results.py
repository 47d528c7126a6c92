#!/usr/bin/env python3
"""Write one experiment's section of an icefall-style RESULTS.md from what is on disk.

See :mod:`espnet2_ext.main_funcs.results_page` for what the section holds; other
sections and hand-written text in the file are kept, and re-running gives the same file.

Usage:
    python -m espnet2_ext.bin.make_results --exp_dir exp/st_train --out RESULTS.md [--title ...]
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.main_funcs.experiment import ExperimentError
from espnet2_ext.main_funcs.results_page import ResultsError, make_results
from espnet2_ext.utils.cli import ArgumentParser, check_output_file, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp_dir", type=Path, required=True, help="training dir, e.g. exp/st_train")
    parser.add_argument("--out", type=Path, required=True, help="RESULTS.md to create or update")
    parser.add_argument("--title", help="section heading (default: the experiment dir's name)")
    return parser


@command(ExperimentError, ResultsError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    check_output_file(args.out, "--out")
    make_results(args.exp_dir, args.out, args.title)
    print(f"{args.out}: section {args.title or args.exp_dir.resolve().name} updated")


if __name__ == "__main__":
    sys.exit(main())
