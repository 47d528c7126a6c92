#!/usr/bin/env python3
"""Write a model zip as FBK-fairseq's files, for FBK's own tools: the inverse of ``import_fbk``.

The directory gets ``checkpoint.pt``, the data ``config.yaml``, ``tgtdict.txt``/``srcdict.txt``,
``tgtdict.model``/``srcdict.model`` and, when the zip packs global CMVN statistics,
``gcmvn.npz``. It appears whole or not at all; an existing non-empty one is refused
unless ``--overwrite`` (which replaces it). See :mod:`espnet2_ext.main_funcs.fbk_export`.

Usage:
    python -m espnet2_ext.bin.export_fbk --model model.zip --out fbk_model/ [--overwrite]
"""

import logging
import sys
from collections.abc import Sequence

from espnet2.utils.types import str_or_none

from espnet2_ext.main_funcs.fbk_export import FBKExportError, export_fbk, output_problem
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model.zip (recipe stage 8 or import_fbk), or its unpacked directory")
    parser.add_argument("--out", required=True, help="directory to write FBK's files into")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty")
    parser.add_argument("--cache_dir", type=str_or_none, default=None, help="where zips are extracted")
    return parser


@command(FBKExportError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    out = check_output_dir(args.out, "--out")  # before opening the model
    if problem := output_problem(out, args.overwrite):
        raise CommandError(f"--out {problem}")
    export_fbk(args.model, out, cache_dir=args.cache_dir, overwrite=args.overwrite)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
