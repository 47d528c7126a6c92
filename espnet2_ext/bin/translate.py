#!/usr/bin/env python3
"""Translate audio files with a packed model (``model.zip`` from recipe stage 8).

INPUT is an audio file soundfile can read (wav, flac, ogg, mp3, ...), a directory
(searched recursively for such files) or a Kaldi ``wav.scp``; headerless ``.raw`` and
``.pcm`` files are read as 16-bit little-endian mono PCM given ``--raw_sample_rate``.
``-`` reads standard input (``/dev/stdin`` and bash's ``<(sox ...)`` are pipes too): a
stream is read whole first, by its WAV/AIFF/Ogg/FLAC/ID3 header, or as headerless PCM
at ``--raw_sample_rate``.
Each audio file gives one output line, in input order:

- ``tsv`` (default): ``<id>\\t<translation>``; the id is the path as given or found,
  or the ``wav.scp`` key;
- ``text``: the translation only;
- ``jsonl``: one JSON object per input with the n-best and scores, the source
  transcript from the intermediate CTC, the segments with their words' times,
  warnings and error (null when translated); every record has the same fields.

``srt`` and ``vtt`` write subtitles instead: one input's to ``--output`` (or stdout),
several inputs' to ``--output_dir``, one ``<name>.srt`` (``.vtt``) each, the name being
the audio file's without its extension, or the ``wav.scp`` key. Blocks keep to the
common guidelines (``--max_chars`` 42 per line, ``--max_lines`` 2, ``--max_cps`` 21
characters per second, 1 to 7 s on screen) and never span two segments; within a
segment they are timed by their share of its characters (``--subtitle_timing
proportional``, the default) or by when their words were spoken, where the decoder's
cross-attention aligns them (``attention``: SBAAM's method).

tsv and text write a backslash, tab, newline or carriage return in an id or a
translation as \\\\, \\t, \\n, \\r, so each input stays one line.

Any sample rate and channel count is accepted: audio is resampled to 16 kHz and
mixed down, then gets exactly the training features and the packed CMVN. Inputs
longer than ``--max_segment_seconds`` (default: the model's, from its training
utterances) are cut where speech is least likely, and any at pauses of ``--pause_seconds`` (Silero VAD, SHAS's
divide-and-conquer) and translated segment by segment; audio without speech
(silence, noise) gives an empty translation and a warning.

Each line is written as soon as its input and those before it are done.
Exit status 1, with one ``ERROR:`` line and before any audio is read: bad options,
an ``--output`` or cache directory that cannot be written, a device that is not
there, a bad model archive, or an input list that is wrong: an INPUT or a file a
``wav.scp`` lists that does not exist, a directory without audio, an empty or
malformed ``wav.scp``; also a failed write of the output. Exit status 2: some
audio files exist but could not be translated (not audio, truncated, headerless
without ``--raw_sample_rate``, empty, too short, NaN samples); each gets an empty
line and an ``ERROR:`` line on stderr, and the others are still translated. When
stdout is closed early (``| head -1``) the program stops quietly with status 141,
as on SIGPIPE; Ctrl-C stops it with one line, the lines already written kept and
an ``--output`` file left as it was.

Usage:
    python -m espnet2_ext.bin.translate --model exp/st_train/packed/model.zip talk.wav clips/ \
        [--output out.tsv] [--format tsv|text|jsonl|srt|vtt] [--beam_size 5] [--batch_size 10] [--device cpu]
    python -m espnet2_ext.bin.translate --model model.zip talks/ --format srt --output_dir subtitles/
    python -m espnet2_ext.bin.translate --st_train_config exp/st/config.yaml --st_model_file exp/st/ave.pth ...
"""

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from espnet2.utils.types import float_or_none, int_or_none, str_or_none

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.fileio.kaldi_table import TableError
from espnet2_ext.fileio.output_target import check_output_target, open_output
from espnet2_ext.fileio.subtitle_files import SUBTITLE_FORMATS, subtitle_text
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.inference.output_formats import FORMATS, escape, format_line
from espnet2_ext.main_funcs.model_archive import ModelArchiveError
from espnet2_ext.segmentation.options import SHAS_MUSTC, SegmentationOptions
from espnet2_ext.st import SEARCHES
from espnet2_ext.subtitles import DEFAULT_TIMING, TIMINGS, SubtitleLimits
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command
from espnet2_ext.utils.waveform import MIN_SAMPLE_RATE

if TYPE_CHECKING:
    from espnet2_ext.inference.file_inputs import Input

EPILOG = """\
Which problems stop the run: each INPUT, and each file a wav.scp lists, must exist,
and each directory or wav.scp must hold audio; if not, the run stops with one ERROR
line before any work (exit status 1), as it does for bad options, an --output or
--cache_dir that cannot be written, a --device that is not there, or a bad model.
An audio file that exists but cannot be translated (not audio, truncated,
headerless without --raw_sample_rate, empty, too short) gets an ERROR line and an
empty output line (no subtitle file), and the others are still translated (exit
status 2).

--config takes a YAML of these options, e.g. the recipe's conf/decode.yaml"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Options with their defaults; the epilog's paragraphs as written."""


# SegmentationOptions' fields, as this program spells them.
SEGMENTATION_OPTIONS = {
    "max_seconds": "--max_segment_seconds", "min_seconds": "--min_segment_seconds", "threshold": "--vad_threshold",
    "pause_seconds": "--pause_seconds", "pad_start_seconds": "--pad_start_seconds",
    "pad_end_seconds": "--pad_end_seconds",
}


# SubtitleLimits' fields, as this program spells them.
SUBTITLE_OPTIONS = {
    "max_chars": "--max_chars", "max_lines": "--max_lines", "max_cps": "--max_cps",
    "min_seconds": "--min_block_seconds", "max_seconds": "--max_block_seconds",
}


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
        help="audio file, directory of them, wav.scp, or - (stdin); each must exist (checked before any work)",
    )
    parser.add_argument("--model", default=None, help="model.zip from recipe stage 8, or its unpacked directory")
    parser.add_argument(
        "--st_train_config", default=None, help="instead of --model: a training config.yaml (with --st_model_file)"
    )
    parser.add_argument("--st_model_file", default=None, help="instead of --model: the weights (.pth)")
    parser.add_argument("--output", type=str_or_none, default=None, help="file to write (default: stdout)")
    parser.add_argument(
        "--output_dir", type=str_or_none, default=None,
        help="srt, vtt: the directory that gets one <name>.srt (.vtt) per input (needed for several inputs)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="tsv",
        help="tsv: <id> TAB <translation>; text: the translation; jsonl: n-best with scores, CTC source "
        "transcript, segments with their words' times, warnings, error; srt, vtt: subtitles. tsv and "
        "text write a backslash, tab, newline or CR in an id or a translation as \\\\, \\t, \\n, \\r",
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
    group = parser.add_argument_group("Segmentation of long audio (Silero VAD, SHAS's divide-and-conquer)")
    group.add_argument(
        "--max_segment_seconds", type=float_or_none, default=None,
        help="segments are shorter than this; default: the 95th percentile of the model's training "
        f"utterances, or SHAS's {SHAS_MUSTC.max_seconds:g} s for a model without them",
    )
    group.add_argument("--min_segment_seconds", type=float, default=0.2, help="a cut leaves both sides longer")
    group.add_argument("--vad_threshold", type=float, default=0.5, help="frames less likely speech are not speech")
    group.add_argument(
        "--pause_seconds", type=float_or_none, default=None,
        help="pauses at least this long always separate segments; default: the model's (longer than any "
        "inside its training utterances); 0: never, as SHAS",
    )
    group.add_argument(
        "--pad_start_seconds", type=float_or_none, default=None,
        help="non-speech a segment keeps before its speech; default: the model's training utterances', else 0",
    )
    group.add_argument(
        "--pad_end_seconds", type=float_or_none, default=None,
        help="non-speech a segment keeps after its speech; default: the model's training utterances', else 0",
    )
    group.add_argument("--silence_dbfs", type=float, default=-60.0, help="quieter audio is not translated")
    limits = SubtitleLimits()
    group = parser.add_argument_group("Subtitles (--format srt, vtt)")
    group.add_argument("--max_chars", type=int, default=limits.max_chars, help="characters per line")
    group.add_argument("--max_lines", type=int, default=limits.max_lines, help="lines per block")
    group.add_argument("--max_cps", type=float, default=limits.max_cps, help="characters per second, at most")
    group.add_argument("--min_block_seconds", type=float, default=limits.min_seconds, help="shortest time on screen")
    group.add_argument("--max_block_seconds", type=float, default=limits.max_seconds, help="longest time on screen")
    group.add_argument(
        "--subtitle_timing", choices=TIMINGS, default=DEFAULT_TIMING,
        help="proportional: each segment shared among its words by characters; attention: each word when the "
        "decoder's cross-attention aligns it (SBAAM; proportional where unknown, as with --search espnet)",
    )
    group.add_argument(
        "--attention_layer", type=int_or_none, default=None,
        help="the decoder layer (0-based) whose cross-attention times the words; default: FBK's 3, or the "
        "last of a decoder with fewer",
    )
    return parser


def check_options(args: argparse.Namespace) -> None:
    """Values the parser's types cannot refuse alone (a ``--config`` sets them too)."""
    if (args.model is None) == (args.st_train_config is None):
        raise TranslateError("give either --model, or --st_train_config with --st_model_file")
    if (args.st_train_config is None) != (args.st_model_file is None):
        raise TranslateError("--st_train_config and --st_model_file go together")
    for option in ("batch_size", "beam_size", "nbest", "num_threads"):
        if getattr(args, option) < 1:
            raise TranslateError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.nbest > args.beam_size:
        raise TranslateError(f"--nbest ({args.nbest}) cannot exceed --beam_size ({args.beam_size})")
    for option in ("maxlen_b", "no_repeat_ngram_size"):
        if getattr(args, option) < 0:
            raise TranslateError(f"--{option} must be >= 0, got {getattr(args, option)}")
    if not math.isfinite(args.maxlen_a) or args.maxlen_a < 0:
        raise TranslateError(f"--maxlen_a must be >= 0, got {args.maxlen_a}")
    if args.maxlen_a == 0 and args.maxlen_b == 0:
        raise TranslateError("--maxlen_a and --maxlen_b are both 0: every translation would be empty")
    if not math.isfinite(args.silence_dbfs) or args.silence_dbfs > 0:
        raise TranslateError(f"--silence_dbfs must be a level <= 0 dBFS, got {args.silence_dbfs}")
    if args.pause_seconds is not None and not args.pause_seconds >= 0:
        raise TranslateError(f"--pause_seconds must be >= 0 (0: no cut at pauses), got {args.pause_seconds}")
    if args.raw_sample_rate is not None and args.raw_sample_rate < MIN_SAMPLE_RATE:
        raise TranslateError(f"--raw_sample_rate must be >= {MIN_SAMPLE_RATE} Hz, got {args.raw_sample_rate}")
    if args.attention_layer is not None and args.attention_layer < 0:
        raise TranslateError(f"--attention_layer must be >= 0, got {args.attention_layer}")
    subtitle_limits(args)
    if args.output_dir is not None:
        if args.format not in SUBTITLE_FORMATS:
            raise TranslateError(
                f"--output_dir is for --format {' or '.join(SUBTITLE_FORMATS)}; --format {args.format} "
                "writes lines to --output or stdout"
            )
        if args.output is not None:
            raise TranslateError("give --output (one input's subtitles) or --output_dir (one file per input), not both")
    try:
        SegmentationOptions(
            max_seconds=SHAS_MUSTC.max_seconds if args.max_segment_seconds is None else args.max_segment_seconds,
            min_seconds=args.min_segment_seconds,
            threshold=args.vad_threshold,
            pause_seconds=args.pause_seconds or None,
            pad_start_seconds=args.pad_start_seconds or 0.0,
            pad_end_seconds=args.pad_end_seconds or 0.0,
        )
    except ValueError as err:
        message = str(err)
        for name, option in SEGMENTATION_OPTIONS.items():
            message = message.replace(name, option)
        raise TranslateError(message) from None


def subtitle_limits(args: argparse.Namespace) -> SubtitleLimits:
    """The subtitle options as :class:`SubtitleLimits`, checked (whatever the format: a
    ``--config`` may set them)."""
    try:
        return SubtitleLimits(**{field: getattr(args, option[2:]) for field, option in SUBTITLE_OPTIONS.items()})
    except ValueError as err:
        message = str(err)
        for field, option in SUBTITLE_OPTIONS.items():
            message = message.replace(field, option)
        raise TranslateError(message) from None


def subtitle_paths(args: argparse.Namespace, inputs: Sequence["Input"]) -> list[Path] | None:
    """Where each input's subtitles go with ``--output_dir``; None when they go to ``--output``
    or stdout (one input). Refused: several inputs without ``--output_dir``, two inputs
    with the same name, a directory that cannot be written."""
    if args.output_dir is None:
        if len(inputs) > 1:
            raise TranslateError(
                f"--format {args.format} writes one file per input and there are {len(inputs)} inputs: "
                "give --output_dir"
            )
        return None
    from espnet2_ext.inference.file_inputs import InputListError, output_names

    directory = check_output_dir(args.output_dir, "--output_dir")
    try:
        names = output_names(inputs, f".{args.format}")
    except InputListError as err:
        raise TranslateError(f"--output_dir {directory}: {err}") from None
    return [directory / name for name in names]


def thread_count(requested: int) -> int:
    """``requested`` CPU threads, at most the cores this process may use (more only slow it down)."""
    cores = available_cores()
    if requested > cores:
        logging.warning("--num_threads %d is more than the %d cores available: using %d", requested, cores, cores)
        return cores
    return requested


def run(args: argparse.Namespace) -> int:
    """Translate; returns the exit status (2 when some inputs could not be translated).

    Everything that can stop the run is checked first, cheapest first: options, the
    output file, the input list, the device, the model; only then is audio read.
    Lines are written as results come, in input order.
    """
    check_options(args)
    if args.output is not None:
        check_output_target(args.output, "--output")
    from espnet2_ext.inference.file_inputs import InputListError, expand_inputs, translate_inputs

    try:
        inputs = expand_inputs(args.inputs, headerless=args.raw_sample_rate is not None)
    except InputListError as err:
        raise TranslateError(escape(str(err))) from None
    subtitles = args.format in SUBTITLE_FORMATS
    paths = subtitle_paths(args, inputs) if subtitles else None
    with contextlib.redirect_stdout(sys.stderr):  # ESPnet prints notices on stdout while importing
        import torch

        from espnet2_ext.inference.speech2translation import Speech2Translation, check_device
        from espnet2_ext.main_funcs.training_utterances import TrainingUtterances
    options = dict(
        device=args.device,
        search=args.search,
        beam_size=args.beam_size,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        nbest=args.nbest,
        maxlen_a=args.maxlen_a,
        maxlen_b=args.maxlen_b,
        lang_tag=args.lang_tag,
        max_segment_seconds=args.max_segment_seconds,
        min_segment_seconds=args.min_segment_seconds,
        vad_threshold=args.vad_threshold,
        pause_seconds=args.pause_seconds,
        pad_start_seconds=args.pad_start_seconds,
        pad_end_seconds=args.pad_end_seconds,
        silence_dbfs=args.silence_dbfs,
        attention_layer=args.attention_layer,
    )
    try:
        check_device(args.device)
        if args.model is not None:
            translator = Speech2Translation.from_pretrained(args.model, cache_dir=args.cache_dir, **options)
        else:
            translator = Speech2Translation(
                args.st_train_config, args.st_model_file, **options,
                training_utterances=TrainingUtterances.from_config(read_yaml_mapping(Path(args.st_train_config))),
            )
    except (ModelArchiveError, ValueError, YamlFileError, TableError) as err:  # ModelLoadError is a ValueError
        raise TranslateError(str(err)) from None
    threads = torch.get_num_threads()
    torch.set_num_threads(thread_count(args.num_threads))
    failed = 0
    limits = subtitle_limits(args)
    try:
        with contextlib.nullcontext() if paths is not None else open_output(args.output) as output:
            results = translate_inputs(translator, inputs, args.batch_size, args.raw_sample_rate)
            for number, result in enumerate(results):
                if result.error is not None:
                    failed += 1
                    print(f"ERROR: {escape(result.error)}", file=sys.stderr)
                if not subtitles:
                    output.write(format_line(result.name, result, args.format))
                elif result.error is None:
                    text = subtitle_text(result.subtitles(args.subtitle_timing, **vars(limits)), args.format)
                    if paths is None:
                        output.write(text.removesuffix("\n"))
                    else:
                        write_subtitles(paths[number], text)
    except BrokenPipeError:
        return stdout_closed()
    finally:  # for callers in the same process
        torch.set_num_threads(threads)
    if failed:
        print(f"ERROR: {failed} of {len(inputs)} inputs could not be translated", file=sys.stderr)
    return 2 if failed else 0


def write_subtitles(path: Path, text: str) -> None:
    """One input's subtitle file, whole or not at all."""
    try:
        write_text_atomically(path, text)
    except OSError as err:
        raise TranslateError(f"writing {path} failed: {err.strerror}") from None


def stdout_closed() -> int:
    """End quietly when stdout's reader has gone (``translate ... | head -1``), with the
    status SIGPIPE gives (Python ignores SIGPIPE, so the write raised instead). stdout
    goes to /dev/null, or Python would report its failed flush at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


@command(on_interrupt="the lines and subtitle files written so far are complete; an --output file was left as it was")
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
