#!/usr/bin/env python3
"""Average epoch checkpoints of an ESPnet experiment: around the best one (FBK) or the n best.

See :mod:`espnet2_ext.main_funcs.checkpoint_averaging`. Writes the averaged state
dict (default ``<exp>/<phase>.<key>.ave_<num>around.pth``, ``...ave_<num>best.pth``
for ``nbest``) and ``<exp>/averaged.json`` recording what was averaged.

Usage:
    python -m espnet2_ext.bin.average_checkpoints --exp_dir exp/st_train --num 5 \
        [--criterion valid.loss.min] [--mode around|nbest] [--epochs 3,4,5] [--out PATH]
"""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2.utils.types import str_or_none

from espnet2_ext.main_funcs.checkpoint_averaging import (
    MODES,
    AveragingError,
    average_checkpoints,
    default_out,
    parse_criterion,
    parse_epochs,
)
from espnet2_ext.main_funcs.experiment import ExperimentError
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_file, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp_dir", required=True, help="training output dir with checkpoint.pth and <N>epoch.pth")
    parser.add_argument("--num", type=int, default=5, help="checkpoints to average")
    parser.add_argument("--criterion", default="valid.loss.min", help="phase.key.min|max from ESPnet's reporter")
    parser.add_argument("--mode", choices=MODES, default="around",
                        help="around: the best epoch and its neighbours (FBK); nbest: the best by the criterion")
    parser.add_argument("--epochs", type=str_or_none, default=None,
                        help="e.g. 3,4,5: average these epochs (overrides --mode)")
    parser.add_argument("--out", type=str_or_none, default=None,
                        help="averaged model path (default: ESPnet-style name in --exp_dir)")
    return parser


@command(AveragingError, ExperimentError)
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    if args.num < 1:
        raise CommandError(f"--num must be at least 1, got {args.num}")
    exp_dir, criterion = Path(args.exp_dir), parse_criterion(args.criterion)
    epochs = None if args.epochs is None else parse_epochs(args.epochs)
    out = Path(args.out) if args.out else default_out(exp_dir, criterion, args.mode, args.num, epochs)
    check_output_file(out, "--out")
    averaged = average_checkpoints(exp_dir, out, criterion, args.mode, args.num, epochs)
    chosen = "given" if averaged.criterion is None else f"{averaged.mode}, best epoch {averaged.best_epoch} by {criterion}"
    print(f"averaged epochs {', '.join(map(str, averaged.epochs))} ({chosen}) -> {out}")


if __name__ == "__main__":
    sys.exit(main())
