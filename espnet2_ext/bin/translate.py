#!/usr/bin/env python3
"""Translate audio files with a packed model (``model.zip`` from recipe stage 8).

INPUT is an audio file soundfile can read (wav, flac, ogg, mp3, ...), a directory
(searched recursively for such files) or a Kaldi ``wav.scp``; headerless ``.raw`` and
``.pcm`` files are read as 16-bit little-endian mono PCM given ``--raw_sample_rate``.
Each audio file gives one output line, in input order:

- ``tsv`` (default): ``<id>\\t<translation>``; the id is the path as given or found,
  or the ``wav.scp`` key;
- ``text``: the translation only;
- ``jsonl``: one JSON object per input with the n-best and scores, the source
  transcript from the intermediate CTC, the segments, warnings and error (null
  when translated); every record has the same fields.

tsv and text write a backslash, tab, newline or carriage return in an id or a
translation as \\\\, \\t, \\n, \\r, so each input stays one line.

Any sample rate and channel count is accepted: audio is resampled to 16 kHz and
mixed down, then gets exactly the training features and the packed CMVN. Inputs
longer than ``--max_segment_seconds`` are translated in segments cut at pauses
(with a warning), silent ones give an empty translation (with a warning).

Exit status 1, with one ``ERROR:`` line and before any audio is read: bad options,
an ``--output`` or cache directory that cannot be written, a device that is not
there, a bad model archive, or an input list that is wrong: an INPUT or a file a
``wav.scp`` lists that does not exist, a directory without audio, an empty or
malformed ``wav.scp``. Exit status 2: some audio files exist but could not be
translated (not audio, truncated, headerless without ``--raw_sample_rate``, empty,
too short); each gets an empty line and an ``ERROR:`` line on stderr, and the
others are still translated. When stdout is closed early (``| head -1``) the
program stops quietly with status 141, as on SIGPIPE.

Usage:
    python -m espnet2_ext.bin.translate --model exp/st_train/packed/model.zip talk.wav clips/ \
        [--output out.tsv] [--format tsv|text|jsonl] [--beam_size 5] [--batch_size 10] [--device cpu]
"""

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from espnet2.utils.types import int_or_none, str_or_none

from espnet2_ext.inference.output_formats import FORMATS, escape, format_line, write_lines
from espnet2_ext.main_funcs.model_archive import ModelArchiveError
from espnet2_ext.st import SEARCHES
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_file, command

EPILOG = """\
Which problems stop the run: each INPUT, and each file a wav.scp lists, must exist,
and each directory or wav.scp must hold audio; if not, the run stops with one ERROR
line before any work (exit status 1), as it does for bad options, an --output or
--cache_dir that cannot be written, a --device that is not there, or a bad model.
An audio file that exists but cannot be translated (not audio, truncated,
headerless without --raw_sample_rate, empty, too short) gets an ERROR line and an
empty output line, and the others are still translated (exit status 2).

--config takes a YAML of these options, e.g. the recipe's conf/decode.yaml"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Options with their defaults; the epilog's paragraphs as written."""


class TranslateError(CommandError):
    """A fatal problem: options, outputs, device, model or input list (a bad audio file is not fatal)."""


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, which ``taskset`` and
    container CPU sets restrict); all of them where the system has no such mask."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="audio file, directory of them, or wav.scp; each must exist (checked before any work)",
    )
    parser.add_argument("--model", required=True, help="model.zip from recipe stage 8, or its unpacked directory")
    parser.add_argument("--output", type=str_or_none, default=None, help="file to write (default: stdout)")
    parser.add_argument(
        "--format", choices=FORMATS, default="tsv",
        help="tsv: <id> TAB <translation>; text: the translation; jsonl: n-best with scores, CTC source "
        "transcript, segments, warnings, error. tsv and text write a backslash, tab, newline or CR "
        "in an id or a translation as \\\\, \\t, \\n, \\r",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch_size", type=int, default=10, help="segments encoded together; results do not change")
    parser.add_argument(
        "--num_threads", type=int, default=available_cores(),
        help="CPU threads; the default is the cores this process may use; fewer help on a busy machine",
    )
    parser.add_argument(
        "--raw_sample_rate", type=int_or_none, default=None,
        help="sample rate of headerless .raw/.pcm files (16-bit little-endian mono); without it they fail",
    )
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


def check_options(args: argparse.Namespace) -> None:
    """Values the parser's types cannot refuse alone (a ``--config`` sets them too)."""
    for option in ("batch_size", "beam_size", "nbest", "num_threads"):
        if getattr(args, option) < 1:
            raise TranslateError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.nbest > args.beam_size:
        raise TranslateError(f"--nbest ({args.nbest}) cannot exceed --beam_size ({args.beam_size})")
    for option in ("max_segment_seconds", "raw_sample_rate"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise TranslateError(f"--{option} must be > 0, got {value}")


def run(args: argparse.Namespace) -> int:
    """Translate; returns the exit status (2 when some inputs could not be translated).

    Everything that can stop the run is checked first, cheapest first: options, the
    output file, the input list, the device, the model; only then is audio read.
    """
    check_options(args)
    if args.output is not None:
        check_output_file(args.output, "--output")
    from espnet2_ext.inference.file_inputs import InputListError, expand_inputs, translate_inputs

    try:
        inputs = expand_inputs(args.inputs, headerless=args.raw_sample_rate is not None)
    except InputListError as err:
        raise TranslateError(escape(str(err))) from None
    with contextlib.redirect_stdout(sys.stderr):  # ESPnet prints notices on stdout while importing
        import torch

        from espnet2_ext.inference.speech2translation import Speech2Translation, check_device
    try:
        check_device(args.device)
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
    threads = torch.get_num_threads()
    torch.set_num_threads(args.num_threads)
    try:
        results = translate_inputs(translator, inputs, args.batch_size, args.raw_sample_rate)
    finally:  # for callers in the same process
        torch.set_num_threads(threads)
    failed = {i: message for i, message in results.items() if isinstance(message, str)}
    for message in failed.values():
        print(f"ERROR: {escape(message)}", file=sys.stderr)
    try:
        write_lines((format_line(item.key, results[i], args.format) for i, item in enumerate(inputs)), args.output)
    except BrokenPipeError:
        return stdout_closed()
    if failed:
        print(f"ERROR: {len(failed)} of {len(inputs)} inputs could not be translated", file=sys.stderr)
    return 2 if failed else 0


def stdout_closed() -> int:
    """End quietly when stdout's reader has gone (``translate ... | head -1``), with the
    status SIGPIPE gives (Python ignores SIGPIPE, so the write raised instead). stdout
    goes to /dev/null, or Python would report its failed flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


@command()
def main(argv: Sequence[str] | None = None) -> int:
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
