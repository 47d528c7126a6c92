#!/usr/bin/env python3
"""Simultaneous translation of a test set with a packed model, scored as SimulEval 1.1.4 scores it.

Each INPUT (audio files, directories, a ``wav.scp``, ``-`` for stdin, as ``translate`` takes them;
or the utterances of ``--data_dir``, its ``segments`` being the gold segmentation)
is sent to FBK's agent in chunks of ``--segment_ms``: after each chunk the encoder
re-runs on everything received, one beam search forces what was committed, and the
policy (AlignAtt, EDAtt, local agreement or wait-k) decides what more to write.

With ``--history words|punctuation|audio`` (FBK's StreamAtt) or ``vad`` (the talk cut at
pauses), each INPUT, or each recording of ``--data_dir``'s ``wav.scp``, is one whole talk,
streamed at once; ``scores.tsv`` then has BLEU and chrF after re-segmenting each talk
onto its reference sentences, LongYAAL (OmniSTEval, the IWSLT 2026 track's scorer) and
StreamLAAL (FBK's, v2.0), ``aligned.txt`` the re-segmented translation. References:
``--data_dir``'s ``segments`` and ``text.tgt`` (written to ``DIR/reference.yaml`` and
``.txt``), or with INPUTs ``--reference REF.txt --segmentation SEG.yaml`` (MuST-C's:
``wav``, ``offset``, ``duration`` per reference line).

``--output DIR`` gets SimulEval's files:

- ``instances.log``: one JSON line per input (prediction, delays, elapsed, reference,
  source, source_length), appended as each ends; a rerun skips those already there;
- ``scores.tsv``: BLEU (sacreBLEU, 13a) and LAAL, AL, AP, DAL, ATD, StartOffset,
  EndOffset, and their ``_CA`` variants with ``--computation_aware``, once every
  input is in the log and references were given;
- ``setting.yaml``: the options, the model's SHA-256, the inputs and references, so that
  a rerun with other options, another model or other inputs is refused (other references
  only: the log is rescored with them).

The agent's options not given are the model's (stage 8 packs ``conf/simulate.yaml``'s
shared keys), else FBK's. With ``--settings FILE.yaml`` (the recipe's ``conf/simulate.yaml``:
shared options, then a ``settings:`` list; ``--config FILE.yaml`` takes it too) every
setting runs into ``DIR/<setting>/``, the model loaded once (``--nj``: in that many
processes, one thread each; Ctrl-C or SIGTERM stops them all at once); an option on the
command line beats the file's.

Exit status 1 with one ``ERROR:`` line before any audio is read: bad options (an
unknown policy, a negative f, a chunk under 40 ms, a decoder layer the model does
not have, ``cmvn: global`` for a zip without global statistics), a reference file
whose line count differs from the inputs, a missing input, an output directory
holding another setting's run, a worker process killed. Exit status 2: some inputs could not be read (each
gets an ``ERROR:`` line; the others are still translated, no scores written).
Ctrl-C stops with one line; what is in ``instances.log`` stays, and the same
command continues.

Usage:
    python -m espnet2_ext.bin.simulate --model model.zip --policy alignatt --frame_num 4 \\
        --segment_ms 1000 --reference ref.de --output out/ clips/
    python -m espnet2_ext.bin.simulate --model model.zip --data_dir data/tst-COMMON \\
        --settings conf/simulate.yaml --computation_aware --output exp/simulate
"""

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from espnet2.utils.types import int_or_none, str_or_none

from espnet2_ext.fileio.kaldi_table import TableError
from espnet2_ext.fileio.text_position import not_utf8
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.main_funcs.model_archive import ModelArchiveError
from espnet2_ext.simultaneous.options import CMVN_MODES, FRAME_UNITS, POLICIES, WAITK_SOURCES
from espnet2_ext.streaming.options import AUDIO_CUTS, HISTORIES, StreamOptions
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command

DEFAULTS = StreamOptions()


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="audio file, directory of them, or wav.scp")
    parser.add_argument("--model", required=True, help="model.zip from recipe stage 8, or its unpacked directory")
    parser.add_argument("--output", required=True, help="directory for instances.log and scores.tsv")
    parser.add_argument("--data_dir", type=str_or_none, default=None, help="instead of INPUTs: a Kaldi data dir")
    parser.add_argument("--reference_name", default="text.tgt", help="the --data_dir file holding the references")
    parser.add_argument(
        "--reference", type=str_or_none, default=None,
        help="with INPUTs: one reference line each (with --history: each line of --segmentation)",
    )
    parser.add_argument(
        "--segmentation", type=str_or_none, default=None,
        help="with --history and INPUTs: MuST-C's yaml placing each --reference line in its talk",
    )
    parser.add_argument(
        "--tgt_lang", type=str_or_none, default=None,
        help="with --history: the language OmniSTEval tokenises (default: the model's language tag's)",
    )
    parser.add_argument("--settings", type=str_or_none, default=None, help="YAML of several settings (see above)")
    parser.add_argument("--computation_aware", action="store_true", help="also the _CA latency columns")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--num_threads", type=int, default=1, help="CPU threads (FBK's latency: one process)")
    parser.add_argument(
        "--nj", type=int, default=1, help="with --settings: settings run in this many processes of one thread"
    )
    parser.add_argument("--raw_sample_rate", type=int_or_none, default=None, help="of headerless .raw/.pcm inputs")
    parser.add_argument("--cache_dir", type=str_or_none, default=None, help="where zips are extracted")
    parser.add_argument("--silence_dbfs", type=float, default=-60.0, help="quieter audio gets no words")
    parser.add_argument("--log_level", default="WARNING", choices=("ERROR", "WARNING", "INFO", "DEBUG"))
    group = parser.add_argument_group(
        "The agent; each unset: the model's packed settings, else FBK's (named below)"
    )
    agent_option(group, "--policy", choices=POLICIES)
    agent_option(group, "--frame_num", type=int, help="AlignAtt's f, EDAtt's lambda")
    agent_option(group, "--frame_unit", choices=FRAME_UNITS, help="what f counts: encoder positions (FBK) or "
                 "40-ms frames of audio")
    agent_option(group, "--attn_threshold", type=float, help="EDAtt's alpha")
    agent_option(group, "--waitk", type=int, help="wait-k's k")
    agent_option(group, "--waitk_source", choices=WAITK_SOURCES)
    agent_option(group, "--segment_factor", type=int, help="40-ms frames a word")
    agent_option(group, "--attention_layer", type=int, help="0-based (--extract-attn-from-layer)")
    agent_option(group, "--segment_ms", type=int, help="chunk (--source-segment-size)")
    agent_option(group, "--cmvn", choices=CMVN_MODES, help="global: the zip's statistics")
    agent_option(group, "--beam_size", type=int)
    agent_option(group, "--no_repeat_ngram_size", type=int)
    agent_option(group, "--maxlen_b", type=int, help="tokens, forced prefix included")
    agent_option(group, "--lang_tag", type=str_or_none)
    group = parser.add_argument_group("Whole talks as one stream (StreamAtt); each unset: the default named")
    agent_option(group, "--history", choices=HISTORIES, help="none: each input one utterance")
    agent_option(group, "--history_words", type=int, help="words of text kept (words, audio)")
    agent_option(group, "--history_max_tokens", type=int, help="most tokens punctuation keeps")
    agent_option(group, "--audio_cut", choices=AUDIO_CUTS,
                 help="where the audio history starts once text left it (past_discarded: ours)")
    agent_option(group, "--max_history_seconds", type=float, whose="ours",
                 help="most audio re-encoded (None: the model's longest training utterance, else 30; FBK: no limit)")
    agent_option(group, "--pause_flush_seconds", type=float, whose="ours",
                 help="a pause this long writes the hypothesis whole and restarts the history (FBK: never)")
    return parser


def agent_option(group: Any, flag: str, help: str = "", whose: str = "FBK's", **kwargs: Any) -> None:
    """An option of the agent: None unless set, its default (``whose``: FBK's, or ours where
    FBK's agent has no such thing) named in its help."""
    default = getattr(DEFAULTS, flag.lstrip("-"))
    group.add_argument(flag, default=None, help=f"{help}{'; ' if help else ''}{whose}: {default}", **kwargs)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, but not the agent's None (the model's, else FBK's)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def settings_of(
    args: argparse.Namespace, given: set[str], packed: dict[str, Any] | None = None,
    packed_stream: dict[str, Any] | None = None,
) -> list[tuple[Path, StreamOptions]]:
    """(output directory, options) of each setting: one, or each of ``--settings``.

    Each option's value comes from, last winning: FBK's defaults, the model's packed
    settings (``packed``; for a setting that streams whole talks also ``packed_stream``,
    but its ``history``, which the caller chooses), ``--config``, the settings file's shared
    keys, its setting, the command line (``given``: the options written there).
    """
    names = [f.name for f in fields(StreamOptions)]
    set_here = {name: getattr(args, name) for name in names if getattr(args, name) is not None or name in given}
    explicit = {name: value for name, value in set_here.items() if name in given}
    stream_defaults = {k: v for k, v in (packed_stream or {}).items() if k != "history"}

    def checked(*layers: dict[str, Any]) -> StreamOptions:
        options = StreamOptions.checked(**{**(packed or {}), **set_here, **{k: v for layer in layers for k, v in layer.items()}})
        if not options.streams or not stream_defaults:
            return options
        return StreamOptions.checked(
            **{**(packed or {}), **stream_defaults, **set_here, **{k: v for layer in layers for k, v in layer.items()}}
        )

    output = Path(args.output)
    if args.settings is None:
        return [(output, checked())]
    if isinstance(args.settings, list):  # the settings: list of a --config file
        where, values, listed = f"{args.config}", {}, args.settings
    else:
        where = args.settings
        values = read_yaml_mapping(Path(args.settings))
        listed = values.pop("settings", None)
    if not isinstance(listed, list) or not listed or not all(isinstance(item, dict) for item in listed):
        raise CommandError(f"{where}: expected a non-empty 'settings:' list of mappings (policy: ..., frame_num: ...)")
    settings = []
    for number, item in enumerate(listed, 1):
        try:
            options = checked(values, item, explicit)
        except ValueError as err:
            raise CommandError(f"{where}: setting {number}: {err}") from None
        settings.append((output / options.describe(), options))
    seen: dict[Path, int] = {}
    for number, (directory, _) in enumerate(settings, 1):
        if directory in seen:
            overridden = [f"--{name}" for name in explicit if any(name in item for item in listed)]
            why = f": the command line's {', '.join(overridden)} sets it in every setting" if overridden else ""
            raise CommandError(f"{where}: settings {seen[directory]} and {number} are the same ({directory.name}){why}")
        seen[directory] = number
    return settings


def packed_streaming(args: argparse.Namespace) -> dict[str, Any]:
    """The streaming settings packed with the model (stage 10's conf/stream.yaml shared keys)."""
    from espnet2_ext.main_funcs.model_archive import open_model
    from espnet2_ext.streaming.options import packed_stream_settings

    try:
        return packed_stream_settings(open_model(args.model, args.cache_dir).meta)
    except ValueError as err:
        raise ModelArchiveError(f"{args.model}: {err}") from None


def read_references(path: str) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CommandError(f"--reference {path}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise CommandError(not_utf8(Path(path), data)) from None


def instance_source(args: argparse.Namespace, streams: bool) -> Any:
    """What to translate: the data dir's utterances (or recordings, when ``streams``) or the
    INPUTs, with their references."""
    from espnet2_ext.inference.file_inputs import InputListError, expand_inputs
    from espnet2_ext.simultaneous.evaluation import InstanceSource
    from espnet2_ext.streaming.evaluation import TalkSource

    if (args.data_dir is None) == (not args.inputs):
        raise CommandError("give either INPUTs or --data_dir")
    if args.segmentation is not None and not streams:
        raise CommandError("--segmentation places the references of whole talks: it goes with --history")
    if args.data_dir is not None:
        if args.reference is not None or args.segmentation is not None:
            given = "--reference" if args.reference is not None else "--segmentation"
            raise CommandError(f"{given} goes with INPUTs; --data_dir has its references in {args.reference_name}")
        if streams:
            return TalkSource(data_dir=Path(args.data_dir), reference_name=args.reference_name)
        return InstanceSource(data_dir=Path(args.data_dir), reference_name=args.reference_name)
    try:
        inputs = expand_inputs(args.inputs, headerless=args.raw_sample_rate is not None)
    except InputListError as err:
        raise CommandError(str(err)) from None
    if streams:
        if (args.segmentation is None) != (args.reference is None):
            missing, given = ("--segmentation", "--reference") if args.segmentation is None else (
                "--reference", "--segmentation")
            raise CommandError(
                f"{given} without {missing}: a talk is scored against its sentences, placed by --segmentation "
                "(MuST-C's yaml) and read from --reference, one line each"
            )
        return TalkSource(
            inputs=tuple(inputs), raw_sample_rate=args.raw_sample_rate,
            segmentation=None if args.segmentation is None else Path(args.segmentation),
            reference=None if args.reference is None else Path(args.reference),
        )
    references = tuple(read_references(args.reference)) if args.reference is not None else None
    return InstanceSource(inputs=tuple(inputs), references=references, raw_sample_rate=args.raw_sample_rate)


def run(args: argparse.Namespace, given: set[str]) -> int:
    """Every setting over every instance; the exit status (2: some inputs unreadable).
    ``given``: the options written on the command line, which outrank all others."""
    for option in ("num_threads", "nj"):
        if getattr(args, option) < 1:
            raise CommandError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.nj > 1 and args.settings is None:
        raise CommandError(
            f"--nj {args.nj} runs the settings of --settings in parallel, and there is one setting: "
            "leave it out (--num_threads sets a setting's CPU threads)"
        )
    check_output_dir(args.output, "--output", parents=False)
    import torch

    from espnet2_ext.inference.audio import is_stream
    from espnet2_ext.inference.speech2translation import check_device
    from espnet2_ext.simultaneous.evaluation import UtteranceRuns, run_settings_in_processes, summary
    from espnet2_ext.simultaneous.translator import model_settings
    from espnet2_ext.streaming.evaluation import StreamRuns
    from espnet2_ext.utils.progress import progress_bar

    settings = settings_of(args, given, model_settings(args.model, args.cache_dir), packed_streaming(args))
    for directory, _ in settings:
        check_output_dir(directory, "--output")
    streams = {options.streams for _, options in settings}
    if len(streams) > 1:
        raise CommandError(
            "the settings mix utterances (history: none) and whole talks (a history): each reads other "
            "instances, so run them apart"
        )
    whole_talks = streams.pop()
    source = instance_source(args, whole_talks)
    piped = [item.path for item in source.inputs if is_stream(item.path)]
    if piped and len(settings) > 1:
        raise CommandError(
            f"{piped[0]}: a stream can be read once, and each of the {len(settings)} settings reads every input: "
            "save it to a file first"
        )
    instances = source.instances()  # checks the references and the data dir before any audio
    check_device(args.device)
    torch.set_num_threads(args.num_threads)
    runs = StreamRuns(source, args.tgt_lang) if whole_talks else UtteranceRuns()
    translators = runs.translators(  # which checks each setting against the model
        args.model, [options for _, options in settings], args.cache_dir, args.device, args.silence_dbfs
    )
    scored = any(instance.reference for instance in instances)
    processes = min(args.nj, len(settings))
    if processes > 1:
        del translators
        summaries = run_settings_in_processes(
            args.model, settings, source, processes, cache_dir=args.cache_dir, device=args.device,
            silence_dbfs=args.silence_dbfs, computation_aware=args.computation_aware, scored=scored, runs=runs,
        )
    else:
        summaries = []
        unit = "talk" if whole_talks else "utt"
        for (directory, options), translator in zip(settings, translators):
            name = options.describe()
            with progress_bar(total=len(instances), unit=unit, desc=name, disable=len(instances) < 5) as bar:
                result = runs.run(
                    translator, instances, directory, computation_aware=args.computation_aware, scored=scored,
                    on_record=lambda _: bar.update(1),
                )
            summaries.append(summary(directory, name, result))
    failed = 0
    for item in summaries:
        for error in item.failed:
            print(f"ERROR: {error}", file=sys.stderr)
        failed += len(item.failed)
        if item.columns is not None:
            keys = [k for k in ("BLEU", "LAAL", "AL", "LAAL_CA", "LongYAAL", "StreamLAAL") if k in item.columns]
            shown = ", ".join(f"{key} {item.columns[key]:.2f}" for key in keys)
            print(f"{item.name}: {shown} -> {item.out_dir}", file=sys.stderr)
        elif not item.failed:
            print(f"{item.name}: {item.out_dir / 'instances.log'} written; no scores without references "
                  "(--reference, or --data_dir's text.tgt)", file=sys.stderr)
    return 2 if failed else 0


@command(
    ModelArchiveError, ValueError, YamlFileError, TableError,
    on_interrupt="instances.log keeps every input finished; run the same command again to continue",
)
def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0, 1 (one ``ERROR:`` line) or 2 (some inputs could not be read)."""
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s", stream=sys.stderr)
    return run(args, parser.given_on_command_line(argv))


if __name__ == "__main__":
    sys.exit(main())
