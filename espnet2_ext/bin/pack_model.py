#!/usr/bin/env python3
"""Last recipe stage: pack a trained model into a self-contained zip.

See :mod:`espnet2_ext.main_funcs.model_packing` for what the archive holds.

Usage:
    python -m espnet2_ext.bin.pack_model --exp-dir exp/st_train \
        --model-file exp/st_train/valid.loss.ave_5around.pth --outpath exp/st_train/packed/model.zip
"""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet2_ext.main_funcs.model_packing import PackError, pack_model
from espnet2_ext.utils.cli import ErrorsRaise, command

# --------------------------------------------------------------------------- command line


class _Parser(ErrorsRaise, argparse.ArgumentParser):
    """Argument errors end as one ``ERROR:`` line and exit status 1."""


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-dir", required=True, help="training output dir holding config.yaml")
    parser.add_argument("--model-file", required=True, help="weights to pack, e.g. the averaged checkpoint")
    parser.add_argument("--outpath", required=True, help="the .zip to write")
    return parser


@command(PackError)
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    contents = pack_model(Path(args.exp_dir), Path(args.model_file), Path(args.outpath))
    print(f"packed {contents['st_model_file']} and {contents['st_train_config']} into {args.outpath}")


if __name__ == "__main__":
    sys.exit(main())
