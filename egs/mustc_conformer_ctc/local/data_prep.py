#!/usr/bin/env python3
"""Stage 1: MuST-C (plus extra corpora in the same layout) -> Kaldi-style data dirs.

Writes ``<out>/{train,dev,tst-COMMON}/`` with ``wav.scp``, ``segments``, ``utt2spk``,
``spk2utt`` and four text files keyed by utterance id:

- ``text.src``: English transcript as in MuST-C (case and punctuation kept),
- ``text.src.norm``: the CTC target, see :func:`normalize_source`,
- ``text.tgt``: the translation as in MuST-C, the BLEU reference,
- ``text.tgt.tagged``: ``<lang:xx> `` + translation, the decoder's training target.

In all text files runs of whitespace (including line and paragraph separators, which
would break the one-line-per-utterance format) become one space.

Ids. A talk ``ted_1.wav`` becomes recording and speaker ``ted_1`` (MuST-C's
``speaker_id`` is one per talk, so it adds nothing); extra corpora prefix it with a tag
made from their root's directory name (``europarl_st_ted_1``) so ids stay unique. An
utterance is ``<recording>-<start>-<end>``, times in centiseconds padded to 7 digits,
e.g. ``ted_1-0001631-0001981``. The padding makes files sort by talk and time; the
``-`` (which sorts before letters, digits, ``_`` and ``.``) makes the order by
utterance id agree with the order by speaker id, which Kaldi's ``validate_data_dir.sh``
demands (with ``ted_1_1631_1981``, ``ted_10_...`` sorts before ``ted_1_...`` while
speaker ``ted_1`` sorts before ``ted_10``). All files are sorted by their first field
in Python's string order, which is ``LC_ALL=C`` order.

Bad input stops the stage with one ``ERROR:`` line and exit status 1. Every input is
read and checked before anything is written, and each output dir is built next to its
final place and renamed into it, so a failed or killed run leaves the previous output.

Usage:
    python local/data_prep.py --mustc-root /data/MUSTC_v1.0 --tgt-lang de --out data \
        [--extra-train /data/other1,/data/other2] [--char-ratio-filter false] \
        [--config conf/data.yaml]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import yaml
from espnet2.utils.config_argparse import ArgumentParser
from espnet2.utils.types import str2bool

from espnet2_ext.utils.cli import CommandError, ErrorsRaise, command

SPLITS = ("train", "dev", "tst-COMMON")
TRAIN_SPLIT = "train"
_YAML_KEYS = ("duration", "offset", "wav")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.]")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_NON_WORD = re.compile(r"[^\w\s']|_")
_STRAY_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


class DataPrepError(CommandError):
    """Bad corpus files or options."""


@dataclass(frozen=True)
class Corpus:
    """A corpus root in MuST-C layout and the prefix that keeps its ids unique."""

    root: Path
    prefix: str


@dataclass(frozen=True)
class Segment:
    """One utterance: a region of a recording with its transcript and translation."""

    utt_id: str
    recording_id: str
    start: float
    end: float
    src: str
    tgt: str


@dataclass
class SplitData:
    """Everything written for one split; ``recordings`` maps recording id to wav path."""

    recordings: dict[str, Path]
    segments: list[Segment]
    clipped: int = 0
    duplicates: int = 0
    ratio_filtered: int = 0


# --------------------------------------------------------------------------- text


def squeeze_whitespace(text: str) -> str:
    """Collapse every Unicode whitespace run (incl. U+2028) to one space and strip."""
    return " ".join(text.split())


def normalize_source(text: str) -> str:
    """The CTC target: lowercase; letters, digits and word-internal apostrophes only.

    NFKC-normalised and lowercased; curly apostrophes become ``'``; every other
    character that is not a letter or digit (punctuation, symbols, ``_``) becomes a
    space, so ``well-known`` gives ``well known`` rather than ``wellknown``; an
    apostrophe survives only between two word characters, so contractions stay words
    (``don't``, ``it's`` -- dropping it would merge ``it's`` with ``its``) while quotes
    disappear; whitespace is squeezed.

    >>> normalize_source("'Don't,' she said -- \u201cit's 5$!\u201d")
    "don't she said it's 5"
    """
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    text = _STRAY_APOSTROPHE.sub(" ", _NON_WORD.sub(" ", text))
    return squeeze_whitespace(text)


def char_ratio(segment: Segment) -> float:
    """Target characters per source character (raw texts), FBK's noisy-pair filter."""
    return len(segment.tgt) / len(segment.src)


# --------------------------------------------------------------------------- reading


def split_dir(root: Path, tgt_lang: str, split: str) -> Path:
    """``<root>/en-<tgt>/data/<split>``, with an error naming the first missing level."""
    if not root.is_dir():
        raise DataPrepError(f"corpus root {root} does not exist or is not a directory")
    pair = root / f"en-{tgt_lang}"
    if not pair.is_dir():
        raise DataPrepError(f"{root}: no language pair dir en-{tgt_lang} (expected {pair})")
    path = pair / "data" / split
    if not path.is_dir():
        raise DataPrepError(f"{pair}: no split dir {path.relative_to(pair)} (expected {path})")
    return path


def existing_file(path: Path) -> Path:
    """``path`` itself, or an error saying which corpus file is missing."""
    if not path.is_file():
        raise DataPrepError(f"missing file {path}")
    return path


def read_yaml_entries(path: Path) -> list[dict]:
    """The segment list of ``<split>.yaml``, each entry checked for usable times and wav."""
    try:
        with path.open(encoding="utf-8") as stream:
            entries = yaml.load(stream, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DataPrepError(f"{where}: malformed YAML: {err.problem or err.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataPrepError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(entries, list):
        raise DataPrepError(f"{path}: expected a YAML list of segments, got {type(entries).__name__}")
    if not entries:
        raise DataPrepError(f"{path}: no segments")
    for number, entry in enumerate(entries, 1):
        check_yaml_entry(path, number, entry)
    return entries


def check_yaml_entry(path: Path, number: int, entry: object) -> None:
    """Raise unless ``entry`` is ``{duration: >0, offset: >=0, wav: name, ...}``."""
    where = f"{path}: entry {number}"
    if not isinstance(entry, dict):
        expected = "a mapping like {duration: 1.5, offset: 0.0, wav: ted_1.wav}"
        raise DataPrepError(f"{where}: expected {expected}, got {entry!r}")
    missing = [key for key in _YAML_KEYS if key not in entry]
    if missing:
        raise DataPrepError(f"{where}: missing key(s) {', '.join(missing)} in {entry!r}")
    for key in ("duration", "offset"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataPrepError(f"{where}: {key} must be a number of seconds, got {value!r}")
    if entry["duration"] <= 0 or entry["offset"] < 0:
        raise DataPrepError(f"{where}: expected duration > 0 and offset >= 0, got {entry!r}")
    if not isinstance(entry["wav"], str) or not entry["wav"]:
        raise DataPrepError(f"{where}: wav must be a file name, got {entry['wav']!r}")


def read_sentences(path: Path) -> list[str]:
    """One sentence per ``\\n``-terminated line, whitespace squeezed; empty lines are errors."""
    try:
        with path.open(encoding="utf-8", newline="\n") as stream:
            lines = [squeeze_whitespace(line) for line in stream]
    except UnicodeDecodeError as err:
        raise DataPrepError(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    return lines


def check_parallel(yaml_path: Path, entries: list[dict], texts: dict[Path, list[str]]) -> None:
    """Same number of yaml entries and text lines, and no empty sentence."""
    counts = [len(entries)] + [len(lines) for lines in texts.values()]
    if len(set(counts)) > 1:
        details = ", ".join(
            [f"{yaml_path}: {len(entries)} entries"] + [f"{path}: {len(lines)} lines" for path, lines in texts.items()]
        )
        raise DataPrepError(
            f"segment counts disagree ({details}); line i of each text file must belong to entry i of the yaml"
        )
    for path, lines in texts.items():
        for number, line in enumerate(lines, 1):
            if not line:
                raise DataPrepError(f"{path}:{number}: empty sentence (segment {number} of {yaml_path})")


def wav_duration(path: Path, referrer: str) -> float:
    """Length of a wav in seconds from its header; errors name the yaml entry using it."""
    if not path.is_file():
        raise DataPrepError(f"missing wav {path} (used by {referrer})")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, OSError) as err:
        raise DataPrepError(f"cannot read wav {path} (used by {referrer}): {err}") from None
    return info.frames / info.samplerate


def safe_id(name: str) -> str:
    """``name`` with every character other than ``[A-Za-z0-9_.]`` replaced by ``_``."""
    return _UNSAFE_ID_CHARS.sub("_", name)


def utt_id(recording_id: str, start: float, end: float) -> str:
    """``<recording>-<start>-<end>`` in 7-digit centiseconds (see the module docstring)."""
    return f"{recording_id}-{round(start * 100):07d}-{round(end * 100):07d}"


def read_corpus_split(corpus: Corpus, tgt_lang: str, split: str, max_overshoot: float) -> SplitData:
    """Read and check one split of one corpus: yaml, both text files and every wav header."""
    directory = split_dir(corpus.root, tgt_lang, split)
    txt = directory / "txt"
    yaml_path = existing_file(txt / f"{split}.yaml")
    text_paths = [existing_file(txt / f"{split}.en"), existing_file(txt / f"{split}.{tgt_lang}")]
    entries = read_yaml_entries(yaml_path)
    texts = {path: read_sentences(path) for path in text_paths}
    check_parallel(yaml_path, entries, texts)
    data = SplitData(recordings={}, segments=[])
    durations: dict[str, float] = {}
    for number, (entry, src, tgt) in enumerate(zip(entries, *texts.values()), 1):
        referrer = f"{yaml_path} entry {number}"
        wav = directory / "wav" / entry["wav"]
        if entry["wav"] not in durations:
            durations[entry["wav"]] = wav_duration(wav, referrer)
        recording = corpus.prefix + safe_id(Path(entry["wav"]).stem)
        start, end = float(entry["offset"]), float(entry["offset"] + entry["duration"])
        uid = utt_id(recording, start, end)
        length = durations[entry["wav"]]
        if end > length + max_overshoot:
            raise DataPrepError(
                f"{referrer} (utterance {uid}): segment {start:.3f}-{end:.3f} s ends past the end of {wav} "
                f"({length:.3f} s; at most {max_overshoot} s overshoot is tolerated)"
            )
        if end > length:
            data.clipped += 1
        add_recording(data.recordings, recording, wav)
        data.segments.append(Segment(uid, recording, start, min(end, length), src, tgt))
    return data


def add_recording(recordings: dict[str, Path], recording: str, wav: Path) -> None:
    """Register a recording, refusing two different wavs under one id."""
    path = Path(os.path.abspath(wav))
    known = recordings.setdefault(recording, path)
    if known != path:
        raise DataPrepError(f"recording id {recording} would name both {known} and {path}; rename one of the wavs")


# --------------------------------------------------------------------------- combining


def make_corpora(mustc_root: str, extra_train: str) -> list[Corpus]:
    """The main corpus (ids unprefixed) and the extra ones, each with a unique prefix."""
    corpora = [Corpus(Path(mustc_root), "")]
    for root in (part.strip() for part in extra_train.split(",")):
        if not root:
            continue
        path = Path(root)
        if any(os.path.abspath(c.root) == os.path.abspath(path) for c in corpora):
            raise DataPrepError(f"corpus {path} is given twice (--mustc-root/--extra-train)")
        prefix = safe_id(Path(os.path.abspath(path)).name) + "_"
        clash = next((c for c in corpora if c.prefix == prefix), None)
        if clash is not None:
            raise DataPrepError(
                f"extra corpora {clash.root} and {path} would share the id prefix {prefix!r}; rename or symlink one"
            )
        corpora.append(Corpus(path, prefix))
    return corpora


def merge(parts: Sequence[SplitData]) -> SplitData:
    """One split from several corpora; a repeated utterance id keeps its first segment."""
    merged = SplitData(recordings={}, segments=[])
    seen: set[str] = set()
    for part in parts:
        for recording, wav in part.recordings.items():
            add_recording(merged.recordings, recording, wav)
        for segment in part.segments:
            if segment.utt_id in seen:
                merged.duplicates += 1
                continue
            seen.add(segment.utt_id)
            merged.segments.append(segment)
        merged.clipped += part.clipped
    return merged


def filter_char_ratio(data: SplitData, low: float, high: float) -> SplitData:
    """Drop pairs whose target/source character ratio is outside ``[low, high]``."""
    kept = [segment for segment in data.segments if low <= char_ratio(segment) <= high]
    return SplitData(
        recordings=data.recordings,
        segments=kept,
        clipped=data.clipped,
        duplicates=data.duplicates,
        ratio_filtered=len(data.segments) - len(kept),
    )


def read_all(args: argparse.Namespace) -> dict[str, SplitData]:
    """Every split, fully read and checked, before anything is written."""
    corpora = make_corpora(args.mustc_root, args.extra_train)
    result = {}
    for split in SPLITS:
        sources = corpora if split == TRAIN_SPLIT else corpora[:1]
        data = merge([read_corpus_split(c, args.tgt_lang, split, args.max_overshoot) for c in sources])
        if split == TRAIN_SPLIT and args.char_ratio_filter:
            data = filter_char_ratio(data, args.char_ratio_min, args.char_ratio_max)
        result[split] = data
    return result


# --------------------------------------------------------------------------- writing


def kaldi_files(data: SplitData, tgt_lang: str) -> dict[str, list[str]]:
    """File name -> sorted lines of a Kaldi data dir (plus our text files)."""
    segments = sorted(data.segments, key=lambda s: s.utt_id)
    spk2utt: dict[str, list[str]] = {}
    for segment in segments:
        spk2utt.setdefault(segment.recording_id, []).append(segment.utt_id)
    return {
        "wav.scp": [f"{rec} {data.recordings[rec]}" for rec in sorted(spk2utt)],
        "segments": [f"{s.utt_id} {s.recording_id} {s.start:.6f} {s.end:.6f}" for s in segments],
        "utt2spk": [f"{s.utt_id} {s.recording_id}" for s in segments],
        "spk2utt": [f"{spk} {' '.join(utts)}" for spk, utts in sorted(spk2utt.items())],
        "text.src": [f"{s.utt_id} {s.src}" for s in segments],
        "text.src.norm": [f"{s.utt_id} {normalize_source(s.src)}".rstrip() for s in segments],
        "text.tgt": [f"{s.utt_id} {s.tgt}" for s in segments],
        "text.tgt.tagged": [f"{s.utt_id} <lang:{tgt_lang}> {s.tgt}" for s in segments],
    }


def write_dir_atomically(final: Path, files: dict[str, list[str]]) -> None:
    """Build ``final`` as a sibling temp dir and swap it in only once complete."""
    tmp = final.with_name(f".{final.name}.tmp")
    old = final.with_name(f".{final.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, lines in files.items():
            with (tmp / name).open("w", encoding="utf-8", newline="\n") as stream:
                stream.writelines(f"{line}\n" for line in lines)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def log_summary(split: str, data: SplitData) -> None:
    """One line per split: the numbers to compare against the corpus documentation."""
    hours = sum(s.end - s.start for s in data.segments) / 3600
    talks = len({s.recording_id for s in data.segments})
    empty = sum(1 for s in data.segments if not normalize_source(s.src))
    logging.info(
        "%s: %d talks, %d segments, %.2f h; removed by char-ratio filter: %d, duplicate ids dropped: %d, "
        "ends clipped to wav length: %d, empty normalised source: %d",
        *(split, talks, len(data.segments), hours, data.ratio_filtered, data.duplicates, data.clipped, empty),
    )


# --------------------------------------------------------------------------- command line


class _Parser(ErrorsRaise, ArgumentParser):
    """ESPnet's ``--config`` parser; errors end as one ``ERROR:`` line and unknown config keys name their line."""

    def parse_known_args(self, args=None, namespace=None):
        config = argparse.ArgumentParser.parse_known_args(self, args)[0].config
        if config is not None:
            check_config_keys(Path(config), {action.dest for action in self._actions})
        return super().parse_known_args(args, namespace)


def check_config_keys(path: Path, known: set[str]) -> None:
    """Raise at the first key of the YAML config ``path`` that is no option of the stage."""
    if not path.is_file():
        raise DataPrepError(f"no such config file {path}")
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise DataPrepError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(node, yaml.MappingNode):
        raise DataPrepError(f"{path}: expected a mapping of option: value")
    for key, _ in node.value:
        if key.value not in known:
            expected = ", ".join(sorted(known - {"help", "config"}))
            line = key.start_mark.line + 1
            raise DataPrepError(f"{path}:{line}: unknown key {key.value!r}; expected one of: {expected}")


def get_parser() -> ArgumentParser:
    """Options of the data stage; any of them may also come from ``--config`` (underscored)."""
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mustc-root", help="MuST-C root, holding en-<tgt>/data/")
    parser.add_argument("--tgt-lang", help="target language, e.g. de")
    parser.add_argument("--out", help="output dir; gets train/, dev/, tst-COMMON/")
    parser.add_argument(
        "--extra-train", default="", help="comma-separated roots of more corpora in MuST-C layout (train split used)"
    )
    parser.add_argument(
        "--char-ratio-filter", type=str2bool, default=True, help="drop train pairs whose char ratio is out of range"
    )
    parser.add_argument("--char-ratio-min", type=float, default=0.8, help="lowest target/source char ratio kept")
    parser.add_argument("--char-ratio-max", type=float, default=1.6, help="highest target/source char ratio kept")
    parser.add_argument(
        "--max-overshoot", type=float, default=0.05, help="seconds a segment may end past its wav (then clipped)"
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parsed options, with the checks argparse cannot make (values may come from YAML)."""
    args = get_parser().parse_args(argv)
    for name in ("mustc_root", "tgt_lang", "out"):
        if not isinstance(getattr(args, name), str) or not getattr(args, name):
            option = name.replace("_", "-")
            raise DataPrepError(f"--{option} is required (on the command line or as {name} in --config)")
    if not isinstance(args.extra_train, str):
        raise DataPrepError(f"--extra-train must be a comma-separated string, got {args.extra_train!r}")
    if not isinstance(args.char_ratio_filter, bool):
        raise DataPrepError(f"--char-ratio-filter must be true or false, got {args.char_ratio_filter!r}")
    for name in ("char_ratio_min", "char_ratio_max", "max_overshoot"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise DataPrepError(f"--{name.replace('_', '-')} must be a number >= 0, got {value!r}")
    if args.char_ratio_min > args.char_ratio_max:
        low, high = args.char_ratio_min, args.char_ratio_max
        raise DataPrepError(f"--char-ratio-min ({low}) must not exceed --char-ratio-max ({high})")
    return args


@command()
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = parse_args(argv)
    splits = read_all(args)
    out = Path(args.out)
    for split, data in splits.items():
        write_dir_atomically(out / split, kaldi_files(data, args.tgt_lang))
        log_summary(split, data)
    logging.info("wrote %s", ", ".join(str(out / split) for split in splits))


if __name__ == "__main__":
    sys.exit(main())
