#!/usr/bin/env python3
"""Translate audio files with a packed model (``model.zip`` from recipe stage 8).

INPUT is an audio file soundfile can read (wav, flac, ogg, mp3, ...), a directory
(searched recursively for such files) or a Kaldi ``wav.scp``. Each input gives one
output line, in input order:

- ``tsv`` (default): ``<id>\\t<translation>``; the id is the path as given or found,
  or the ``wav.scp`` key;
- ``text``: the translation only;
- ``jsonl``: one JSON object per input with the n-best and scores, the source
  transcript from the intermediate CTC, the segments and any warning or error.

Any sample rate and channel count is accepted: audio is resampled to 16 kHz and
mixed down, then gets exactly the training features and the packed CMVN. Inputs
longer than ``--max_segment_seconds`` are translated in segments cut at pauses
(with a warning), silent ones give an empty translation (with a warning).
An input that cannot be translated (unreadable, empty, too short) gets an empty
line and an ``ERROR:`` message on stderr; the others are still translated and the
exit status is 2. A bad model archive is reported before any audio is read (exit 1).

Usage:
    python -m espnet2_ext.bin.translate --model exp/st_train/packed/model.zip talk.wav clips/ \
        [--output out.tsv] [--format tsv|text|jsonl] [--beam_size 5] [--batch_size 10] [--device cpu]
"""

import argparse
import contextlib
import logging
import sys
from typing import Optional, Sequence

from espnet2.utils.types import str_or_none

from espnet2_ext.inference.file_inputs import InputListError, expand_inputs, translate_inputs
from espnet2_ext.inference.output_formats import FORMATS, format_line, write_lines
from espnet2_ext.main_funcs.model_archive import ModelArchiveError
from espnet2_ext.st import SEARCHES
from espnet2_ext.utils.cli import ArgumentParser, CommandError, command


class TranslateError(CommandError):
    """A fatal problem: options, model or input list (a bad audio file is not fatal)."""


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="--config takes a YAML of these options, e.g. the recipe's conf/decode.yaml",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, directory of them, or wav.scp")
    parser.add_argument("--model", required=True, help="model.zip from recipe stage 8, or its unpacked directory")
    parser.add_argument("--output", type=str_or_none, default=None, help="file to write (default: stdout)")
    parser.add_argument("--format", choices=FORMATS, default="tsv", help="output lines, see above")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch_size", type=int, default=10, help="segments encoded together; results do not change")
    parser.add_argument("--cache_dir", type=str_or_none, default=None, help="where zips are extracted")
    parser.add_argument("--log_level", default="WARNING", choices=("ERROR", "WARNING", "INFO", "DEBUG"))
    group = parser.add_argument_group("Search")
    group.add_argument("--search", default="fairseq", choices=SEARCHES, help="fairseq: FBK's decoding rules")
    group.add_argument("--beam_size", type=int, default=5)
    group.add_argument("--no_repeat_ngram_size", type=int, default=5, help="0: off")
    group.add_argument("--nbest", type=int, default=1, help="hypotheses kept per segment (jsonl shows them)")
    group.add_argument("--maxlen_a", type=float, default=0.0, help="at most maxlen_a * frames + maxlen_b tokens")
    group.add_argument("--maxlen_b", type=int, default=200)
    group.add_argument(
        "--lang_tag", type=str_or_none, default=None,
        help="e.g. <lang:de>; default: the model's only one (none for a model without tags)",
    )
    group.add_argument("--max_segment_seconds", type=float, default=30.0, help="longer audio is cut at pauses")
    group.add_argument("--silence_dbfs", type=float, default=-60.0, help="quieter audio is not translated")
    return parser


def run(args: argparse.Namespace) -> int:
    """Translate; returns the exit status (2 when some inputs could not be translated)."""
    if args.batch_size < 1:
        raise TranslateError(f"--batch_size must be >= 1, got {args.batch_size}")
    try:
        inputs = expand_inputs(args.inputs)
    except InputListError as err:
        raise TranslateError(str(err)) from None
    with contextlib.redirect_stdout(sys.stderr):  # ESPnet prints notices on stdout while importing
        from espnet2_ext.inference import Speech2Translation
    try:
        translator = Speech2Translation.from_pretrained(
            args.model,
            cache_dir=args.cache_dir,
            device=args.device,
            search=args.search,
            beam_size=args.beam_size,
            no_repeat_ngram_size=args.no_repeat_ngram_size,
            nbest=args.nbest,
            maxlen_a=args.maxlen_a,
            maxlen_b=args.maxlen_b,
            lang_tag=args.lang_tag,
            max_segment_seconds=args.max_segment_seconds,
            silence_dbfs=args.silence_dbfs,
        )
    except (ModelArchiveError, ValueError) as err:  # ModelLoadError is a ValueError
        raise TranslateError(str(err)) from None
    results = translate_inputs(translator, inputs, args.batch_size)
    failed = {i: message for i, message in results.items() if isinstance(message, str)}
    for message in failed.values():
        print(f"ERROR: {message}", file=sys.stderr)
    write_lines((format_line(item.key, results[i], args.format) for i, item in enumerate(inputs)), args.output)
    if failed:
        print(f"ERROR: {len(failed)} of {len(inputs)} inputs could not be translated", file=sys.stderr)
    return 2 if failed else 0


@command()
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status 0, 1 (one ``ERROR:`` line on a fatal error) or 2 (some inputs not translated)."""
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
