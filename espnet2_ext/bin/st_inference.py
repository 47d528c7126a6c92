#!/usr/bin/env python3
"""The recipe's decode stage: translate a feature dump dir with a trained model.

Writes ESPnet's ``<output_dir>/<n>best_recog/{text,token,token_int,score}``;
see :mod:`espnet2_ext.inference.speech2translation` for the search.
``espnet2_ext.bin.translate`` is the command line for audio files.
"""

import argparse
import logging
import sys
from collections.abc import Sequence

from espnet2.utils.types import float_or_none, str2triple_str, str_or_none

from espnet2_ext.inference.dump_decoding import decode_dump
from espnet2_ext.st import SEARCHES
from espnet2_ext.tasks.model_building import ModelLoadError
from espnet2_ext.utils.cli import ArgumentParser, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description="Translate speech with a CTC-compressing ST model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", choices=("ERROR", "WARNING", "INFO", "DEBUG"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=1, help="utterances encoded together")
    group = parser.add_argument_group("Input data")
    group.add_argument(
        "--data_path_and_name_and_type", type=str2triple_str, required=True, action="append",
        help="e.g. dump/test/feats.scp,speech,kaldi_ark",
    )
    group.add_argument("--key_file", type=str_or_none)
    group = parser.add_argument_group("Model")
    group.add_argument("--st_train_config", required=True)
    group.add_argument("--st_model_file", required=True)
    group = parser.add_argument_group("Search")
    group.add_argument("--search", default="fairseq", choices=SEARCHES, help="fairseq: FBK's decoding rules")
    group.add_argument("--beam_size", type=int, default=5)
    group.add_argument("--no_repeat_ngram_size", type=int, default=5)
    group.add_argument("--maxlen_a", type=float, default=0.0)
    group.add_argument("--maxlen_b", type=int, default=200)
    group.add_argument("--nbest", type=int, default=1)
    group.add_argument("--lang_tag", type=str_or_none, default=None, help="e.g. <lang:de>")
    group.add_argument("--dtype", default="float32", choices=("float16", "float32", "float64"))
    group = parser.add_argument_group(
        "Segmentation of long audio", "translate's, so that one decode.yaml serves both; features are not segmented"
    )
    group.add_argument("--max_segment_seconds", type=float_or_none, default=None)
    group.add_argument("--min_segment_seconds", type=float, default=0.2)
    group.add_argument("--vad_threshold", type=float, default=0.5)
    return parser


@command(ModelLoadError)
def main(argv: Sequence[str] | None = None) -> None:
    args = vars(get_parser().parse_args(argv))
    args.pop("config", None)
    logging.basicConfig(
        level=args.pop("log_level"),
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    decode_dump(**args)


if __name__ == "__main__":
    sys.exit(main())
