#!/usr/bin/env python3
"""Decode stage scoring: corpus BLEU and chrF of one test set, with sacreBLEU signatures.

See :mod:`espnet2_ext.main_funcs.scoring`. Writes, under ``--out``, ``result.json``
(read by ``make_results`` and ``plot_curves``) and ``result.txt`` (sacreBLEU's own
``METRIC|signature = score`` lines first, then the segment count and the files),
and prints the latter.

Usage:
    python -m espnet2_ext.bin.score_st --hyp DECODE_DIR/1best_recog/text \
        --ref dump/tst-COMMON/text.tgt --out DECODE_DIR/score [--tgt_lang de]
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.fileio.kaldi_table import TableError
from espnet2_ext.main_funcs.experiment import write_result
from espnet2_ext.main_funcs.scoring import ScoringError, score_files
from espnet2_ext.utils.cli import ArgumentParser, check_output_dir, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hyp", type=Path, required=True, help="decoded text, e.g. DECODE_DIR/1best_recog/text")
    parser.add_argument("--ref", type=Path, required=True, help="reference text, e.g. dump/tst-COMMON/text.tgt")
    parser.add_argument("--out", type=Path, required=True, help="directory for result.json and result.txt")
    parser.add_argument("--tgt_lang", default="", help="target language; picks BLEU's tokenizer for zh, ja, ko")
    return parser


@command(TableError, ScoringError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    check_output_dir(args.out, "--out")
    result = score_files(args.hyp, args.ref, args.tgt_lang)
    write_result(args.out, result)
    print(result.text(), end="")


if __name__ == "__main__":
    sys.exit(main())
