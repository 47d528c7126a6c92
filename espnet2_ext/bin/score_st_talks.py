#!/usr/bin/env python3
"""Talk-level scoring: BLEU and chrF of whole talks translated with our own segmentation, and their subtitles.

See :mod:`espnet2_ext.main_funcs.talk_scoring`: each talk's translation is re-segmented
onto its reference sentences (mweralign, as IWSLT does), then scored as ``score_st``
scores gold segmentation; its subtitles, timed by the cross-attention and
proportionally, are scored against the reference sentences at their times (SubER and
the error of block start times, :mod:`espnet2_ext.main_funcs.subtitle_scoring`).
Writes, under ``--out``, ``result.json`` (read by ``make_results``), ``result.txt``
(sacreBLEU's own ``METRIC|signature = score`` lines first, then the numbers of
reference sentences, talks and own segments, mweralign's AS-WER, the subtitle scores
and the files), ``aligned.txt`` (the re-segmented translation, ``utt-id text`` in
reference order, comparable line by line with the gold decode's ``1best_recog/text``)
and ``subtitles/<timing>/<talk>.srt`` and ``subtitles/reference/<talk>.srt`` (what
SubER scored), and prints ``result.txt``.

Usage:
    python -m espnet2_ext.bin.score_st_talks --hyp DECODE_DIR/talks/translations.jsonl \
        --data_dir data/tst-COMMON --out DECODE_DIR/talks/score [--tgt_lang de]
"""

import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.fileio.kaldi_table import TableError, write_text
from espnet2_ext.main_funcs.experiment import write_result
from espnet2_ext.main_funcs.scoring import ScoringError
from espnet2_ext.main_funcs.talk_scoring import ALIGNED_TXT, score_talks
from espnet2_ext.utils.cli import ArgumentParser, check_output_dir, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hyp", type=Path, required=True, help="translate --format jsonl of the data dir's wav.scp")
    parser.add_argument("--data_dir", type=Path, required=True, help="references: segments, text.tgt, wav.scp")
    parser.add_argument("--out", type=Path, required=True, help="directory for result.json, result.txt, aligned.txt")
    parser.add_argument("--tgt_lang", default="", help="target language; picks BLEU's tokenizer for zh, ja, ko")
    return parser


@command(TableError, ScoringError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    check_output_dir(args.out, "--out")
    scores = score_talks(args.hyp, args.data_dir, args.tgt_lang, subtitles=True)
    for name, text in scores.subtitle_files.items():
        write_text_atomically(args.out / name, text)
    write_text(args.out / ALIGNED_TXT, scores.aligned)
    write_result(args.out, scores.result)
    print(scores.result.text(), end="")


if __name__ == "__main__":
    sys.exit(main())
