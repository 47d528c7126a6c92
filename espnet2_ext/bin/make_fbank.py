#!/usr/bin/env python3
"""Stage 2: 80-dim Kaldi fbank features of a data dir into kaldiio ark/scp files.

Resumable (a re-run keeps every finished hour-sized chunk, whatever ``--nj``) and
filtered by length; see :mod:`espnet2_ext.main_funcs.fbank_dump` for the files written.

Usage:
    python -m espnet2_ext.bin.make_fbank --data_dir data/train --out_dir dump/train \
        --nj 4 [--min_frames 5] [--max_frames 3000]

``--max_frames none`` (and ``--min_frames 0``) keep everything, as test sets need.
"""

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2.utils.types import int_or_none

from espnet2_ext.fileio.kaldi_table import TableError
from espnet2_ext.main_funcs.fbank_dump import FbankDumpError, dump_fbank
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command

HOW_TO_RESUME = "features of finished chunks are kept; run the same command again to resume"


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp and segments")
    parser.add_argument("--out_dir", required=True, help="where feats.scp and the filtered data dir go")
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--min_frames", type=int, default=5, help="drop utterances with fewer frames")
    parser.add_argument("--max_frames", type=int_or_none, default=3000, help="drop longer utterances; none: keep all")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options checked before any work, the output dir included."""
    args = get_parser().parse_args(argv)
    if args.nj < 1 or args.min_frames < 0:
        raise CommandError(f"need --nj >= 1 and --min_frames >= 0, got {args.nj} and {args.min_frames}")
    if args.max_frames is not None and args.max_frames < args.min_frames:
        raise CommandError(f"--max_frames ({args.max_frames}) is below --min_frames ({args.min_frames})")
    check_output_dir(args.out_dir, "--out_dir")
    return args


@command(TableError, FbankDumpError, on_interrupt=HOW_TO_RESUME)
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = parse_args(argv)
    dump_fbank(Path(args.data_dir), Path(args.out_dir), args.nj, args.min_frames, args.max_frames)


if __name__ == "__main__":
    sys.exit(main())
