#!/usr/bin/env python3
"""Last recipe stage: pack a trained model into a self-contained zip.

See :mod:`espnet2_ext.main_funcs.model_packing` for what the archive holds.

Usage:
    python -m espnet2_ext.bin.pack_model --exp_dir exp/st_train \
        --model_file exp/st_train/valid.loss.ave_5around.pth --outpath exp/st_train/packed/model.zip \
        --global_cmvn exp/st_stats/train/feats_stats.npz --simulate_conf conf/simulate.yaml
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.main_funcs.model_packing import PackError, pack_model
from espnet2_ext.simultaneous.options import META_KEY as SIMULTANEOUS_KEY
from espnet2_ext.simultaneous.options import SimulOptions
from espnet2_ext.streaming.options import META_KEY as STREAMING_KEY
from espnet2_ext.streaming.options import StreamOptions
from espnet2_ext.utils.cli import ArgumentParser, check_output_file, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp_dir", type=Path, required=True, help="training output dir holding config.yaml")
    parser.add_argument("--model_file", type=Path, required=True, help="weights to pack, e.g. the averaged checkpoint")
    parser.add_argument("--outpath", type=Path, required=True, help="the .zip to write")
    parser.add_argument(
        "--global_cmvn", type=Path, default=None,
        help="global CMVN statistics to pack for simultaneous translation: stage 4's feats_stats.npz "
        "(count, sum, sum_square) or FBK's gcmvn.npz (mean, std)",
    )
    parser.add_argument(
        "--simulate_conf", type=Path, default=None,
        help="stage 9's simulate.yaml: its keys shared by every setting (chunk, attention layer, f, ...) "
        "become the simultaneous programs' defaults for this model",
    )
    parser.add_argument(
        "--stream_conf", type=Path, default=None,
        help="stage 10's stream.yaml: its shared keys (history, audio cut, f, ...) become the defaults of "
        "whole-talk streaming (StreamingTranslator, serve, simulstream) for this model",
    )
    return parser


@command(PackError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    check_output_file(args.outpath, "--outpath")
    confs = {SIMULTANEOUS_KEY: (args.simulate_conf, SimulOptions), STREAMING_KEY: (args.stream_conf, StreamOptions)}
    settings = {key: (path, kind) for key, (path, kind) in confs.items() if path is not None}
    contents = pack_model(args.exp_dir, args.model_file, args.outpath, args.global_cmvn, settings)
    cmvn = f" (global CMVN statistics: {contents['global_cmvn']})" if "global_cmvn" in contents else ""
    print(f"packed {contents['st_model_file']} and {contents['st_train_config']} into {args.outpath}{cmvn}")


if __name__ == "__main__":
    sys.exit(main())
