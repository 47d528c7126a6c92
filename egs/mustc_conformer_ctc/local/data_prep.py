#!/usr/bin/env python3
"""Stage 1: MuST-C (plus extra corpora in the same layout) -> Kaldi-style data dirs.

Writes ``<out>/{train,dev,tst-COMMON}/`` with ``wav.scp``, ``segments``, ``utt2spk``,
``spk2utt`` and four text files keyed by utterance id:

- ``text.src``: English transcript as in MuST-C (case and punctuation kept),
- ``text.src.norm``: the CTC target, see :func:`normalize_source`,
- ``text.tgt``: the translation as in MuST-C, the BLEU reference,
- ``text.tgt.tagged``: ``<lang:xx> `` + translation, the decoder's training target.

With ``--join_segments N`` (N > 1) the train split also gets, per talk, runs of 2 to N
consecutive segments joined into one utterance each (their audio from the first start
to the last end, their texts joined): a model that will stream whole talks (StreamAtt,
recipe stage 10) then has seen inputs of several sentences, as MuST-C's own segments
often are. Dev and test keep their segments.

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

Memory stays flat in the corpus size. A first pass streams each split's yaml and text
files in step, one segment at a time (:mod:`espnet2_ext.fileio.segment_list`), checks
them and the wav headers, and keeps only, per talk, its wav, its length and where its
segments start in the three files. A second pass writes the talks in id order, reading
each one's segments again from those offsets, so one talk is in memory at a time.
On a generated MuST-C-sized tree (2,500 talks, 250k segments, 2 CPU cores) the stage
peaks at 52 MB (55 MB at 2.5M segments) and takes 20 s, where loading each yaml whole
took 1.6 GB and 37 s. Both passes log their progress every ``PROGRESS_SECONDS``.

Usage:
    python local/data_prep.py --mustc_root /data/MUSTC_v1.0 --tgt_lang de --out data \
        [--extra_train /data/other1,/data/other2] [--char_ratio_filter false] \
        [--config conf/data.yaml]
"""

import argparse
import itertools
import logging
import os
import re
import sys
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from espnet2.utils.types import str2bool

from espnet2_ext.fileio.atomic import atomic_dir
from espnet2_ext.fileio.kaldi_table import spk2utt_lines
from espnet2_ext.fileio.segment_list import (
    Entry,
    Position,
    SegmentListError,
    read_entries,
    read_lines,
    segment_definition,
)
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command

SPLITS = ("train", "dev", "tst-COMMON")
TRAIN_SPLIT = "train"
KALDI_FILES = ("wav.scp", "segments", "utt2spk", "spk2utt", "text.src", "text.src.norm", "text.tgt", "text.tgt.tagged")
PROGRESS_SECONDS = 5.0
HOW_TO_RESUME = "outputs are replaced whole, so what is there is the previous run's; run the same command again"
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
class SplitFiles:
    """One corpus's split: the segment list, the two text files in step with it, the wav dir."""

    yaml: Path
    src: Path
    tgt: Path
    wav_dir: Path


@dataclass
class Run:
    """Consecutive segments of one talk: where they start in the three files, and how many."""

    files: SplitFiles
    yaml_at: Position
    src_at: Position
    tgt_at: Position
    count: int = 1


@dataclass
class Talk:
    """What the first pass keeps of a recording: its wav, its length and where its segments are."""

    wav: Path
    seconds: float
    runs: list[Run] = field(default_factory=list)


@dataclass
class SplitIndex:
    """A split after the first pass, all corpora merged: memory grows with talks, not segments."""

    talks: dict[str, Talk] = field(default_factory=dict)
    clipped: int = 0


@dataclass(frozen=True)
class Segment:
    """One utterance: a region of a recording with its transcript and translation."""

    utt_id: str
    recording_id: str
    start: float
    end: float
    src: str
    tgt: str
    src_norm: str


@dataclass
class SplitStats:
    """The numbers of the summary line, counted while writing."""

    talks: int = 0
    segments: int = 0
    seconds: float = 0.0
    clipped: int = 0
    duplicates: int = 0
    ratio_filtered: int = 0
    empty_source: int = 0
    joined: int = 0

    def add(self, segments: Sequence[Segment]) -> None:
        self.talks += 1
        self.segments += len(segments)
        self.seconds += sum(s.end - s.start for s in segments)
        self.empty_source += sum(1 for s in segments if not s.src_norm)


class Progress:
    """Logs ``<what>: <count> <unit> (<percent>)`` at most every ``PROGRESS_SECONDS``.

    A pass over MuST-C en-de takes tens of seconds; without this the stage looks hung.
    """

    def __init__(self, what: str, unit: str, total: int) -> None:
        self.what, self.unit, self.total = what, unit, max(total, 1)
        self.next_log = time.monotonic() + PROGRESS_SECONDS

    def update(self, count: int, position: int) -> None:
        if time.monotonic() < self.next_log:
            return
        logging.info("%s: %d %s (%.0f%%)", self.what, count, self.unit, 100 * position / self.total)
        self.next_log = time.monotonic() + PROGRESS_SECONDS


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


# --------------------------------------------------------------------------- first pass: check and index


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


def split_files(corpus: Corpus, tgt_lang: str, split: str) -> SplitFiles:
    """The files of one split of one corpus, each checked to exist."""
    directory = split_dir(corpus.root, tgt_lang, split)
    txt = directory / "txt"
    yaml_path = existing_file(txt / f"{split}.yaml")
    src, tgt = existing_file(txt / f"{split}.en"), existing_file(txt / f"{split}.{tgt_lang}")
    return SplitFiles(yaml_path, src, tgt, directory / "wav")


def check_yaml_entry(path: Path, number: int, entry: object) -> None:
    """Raise unless ``entry`` is ``{duration: >0, offset: >=0, wav: name, ...}``."""
    try:
        segment_definition(entry, f"{path}: entry {number}")
    except SegmentListError as err:
        raise DataPrepError(str(err)) from None


def check_sentence(path: Path, at: Position, text: str, yaml_path: Path) -> None:
    """Raise if line ``at`` of a text file is empty (after squeezing whitespace)."""
    if not text.strip():
        raise DataPrepError(f"{path}:{at.line}: empty sentence (segment {at.line} of {yaml_path})")


def segments_in_step(files: SplitFiles) -> Iterator[tuple[Entry, tuple[Position, str], tuple[Position, str]]]:
    """(yaml entry, source line, target line) of each segment, the three files read in step.

    Line i of each text file belongs to entry i of the yaml; when one file ends before
    the others, the rest of each is counted for the error.
    """
    streams = (read_entries(files.yaml), read_lines(files.src), read_lines(files.tgt))
    for number, items in enumerate(itertools.zip_longest(*streams), 1):
        if any(item is None for item in items):
            counts = [number - 1 + (item is not None) + sum(1 for _ in stream) for item, stream in zip(items, streams)]
            files_and_counts = f"{files.yaml}: {counts[0]} entries, {files.src}: {counts[1]} lines"
            details = f"{files_and_counts}, {files.tgt}: {counts[2]} lines"
            raise DataPrepError(
                f"segment counts disagree ({details}); line i of each text file must belong to entry i of the yaml"
            )
        yield items


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


def segment_times(entry: dict) -> tuple[float, float]:
    """(start, end) in seconds of a checked yaml entry."""
    return float(entry["offset"]), float(entry["offset"] + entry["duration"])


def add_talk(index: SplitIndex, recording: str, wav: Path, seconds: float) -> Talk:
    """The index's talk ``recording``, registered if new; two different wavs under one id are refused."""
    path = Path(os.path.abspath(wav))
    talk = index.talks.setdefault(recording, Talk(path, seconds))
    if talk.wav != path:
        raise DataPrepError(f"recording id {recording} would name both {talk.wav} and {path}; rename one of the wavs")
    return talk


def index_corpus_split(corpus: Corpus, files: SplitFiles, max_overshoot: float, index: SplitIndex, split: str) -> None:
    """First pass over one corpus's split: check every segment and wav header, and add to
    ``index`` where each talk's segments are, so the second pass can read them again."""
    progress = Progress(split, "segments checked", files.yaml.stat().st_size)
    talks: dict[str, tuple[str, Talk]] = {}  # wav name -> (recording id, talk)
    run: Run | None = None
    number = 0
    for entry, (src_at, src), (tgt_at, tgt) in segments_in_step(files):
        number = entry.position.number
        check_yaml_entry(files.yaml, number, entry.value)
        check_sentence(files.src, src_at, src, files.yaml)
        check_sentence(files.tgt, tgt_at, tgt, files.yaml)
        referrer = f"{files.yaml} entry {number}"
        name = entry.value["wav"]
        if name not in talks:
            recording, wav = corpus.prefix + safe_id(Path(name).stem), files.wav_dir / name
            talks[name] = recording, add_talk(index, recording, wav, wav_duration(wav, referrer))
        recording, talk = talks[name]
        start, end = segment_times(entry.value)
        if end > talk.seconds + max_overshoot:
            raise DataPrepError(
                f"{referrer} (utterance {utt_id(recording, start, end)}): segment {start:.3f}-{end:.3f} s ends past "
                f"the end of {files.wav_dir / name} ({talk.seconds:.3f} s; at most {max_overshoot} s overshoot "
                "is tolerated)"
            )
        index.clipped += end > talk.seconds
        if talk.runs and talk.runs[-1] is run:  # the previous segment's run, so this one continues it
            run.count += 1
        else:
            run = Run(files, entry.position, src_at, tgt_at)
            talk.runs.append(run)
        progress.update(number, entry.position.offset)
    if number == 0:
        raise DataPrepError(f"{files.yaml}: no segments")


def make_corpora(mustc_root: str, extra_train: str) -> list[Corpus]:
    """The main corpus (ids unprefixed) and the extra ones, each with a unique prefix."""
    corpora = [Corpus(Path(mustc_root), "")]
    for root in (part.strip() for part in extra_train.split(",")):
        if not root:
            continue
        path = Path(root)
        if any(os.path.abspath(c.root) == os.path.abspath(path) for c in corpora):
            raise DataPrepError(f"corpus {path} is given twice (--mustc_root/--extra_train)")
        prefix = safe_id(Path(os.path.abspath(path)).name) + "_"
        clash = next((c for c in corpora if c.prefix == prefix), None)
        if clash is not None:
            raise DataPrepError(
                f"extra corpora {clash.root} and {path} would share the id prefix {prefix!r}; rename or symlink one"
            )
        corpora.append(Corpus(path, prefix))
    return corpora


def index_all(args: argparse.Namespace) -> dict[str, SplitIndex]:
    """The first pass over every split of every corpus: all input checked before anything is written."""
    corpora = make_corpora(args.mustc_root, args.extra_train)
    indexes = {}
    for split in SPLITS:
        index = SplitIndex()
        for corpus in corpora if split == TRAIN_SPLIT else corpora[:1]:
            index_corpus_split(corpus, split_files(corpus, args.tgt_lang, split), args.max_overshoot, index, split)
        indexes[split] = index
    return indexes


# --------------------------------------------------------------------------- second pass: write


def talk_segments(recording: str, talk: Talk) -> Iterator[Segment]:
    """The talk's segments in corpus and file order, read again from where the first pass found them."""
    for run in talk.runs:
        streams = zip(
            read_entries(run.files.yaml, run.yaml_at), read_lines(run.files.src, run.src_at),
            read_lines(run.files.tgt, run.tgt_at),
        )
        for entry, (_, src), (_, tgt) in itertools.islice(streams, run.count):
            start, end = segment_times(entry.value)
            src = squeeze_whitespace(src)
            yield Segment(
                utt_id(recording, start, end), recording, start, min(end, talk.seconds), src,
                squeeze_whitespace(tgt), normalize_source(src),
            )


def unique_segments(recording: str, talk: Talk, stats: SplitStats) -> list[Segment]:
    """The talk's segments sorted by id; a repeated id keeps its first segment (and is counted)."""
    by_id: dict[str, Segment] = {}
    for segment in talk_segments(recording, talk):
        if segment.utt_id in by_id:
            stats.duplicates += 1
        else:
            by_id[segment.utt_id] = segment
    return [by_id[key] for key in sorted(by_id)]


def joined_segments(recording: str, segments: Sequence[Segment], most: int, max_pause: float) -> list[Segment]:
    """Runs of 2 to ``most`` consecutive segments, each joined into one utterance (the talk's
    audio from the first one's start to the last one's end, the texts joined by a space).

    For each length k the talk is cut into consecutive runs of k (the last, shorter one
    left out), so every length covers the talk once. A run whose segments overlap or are
    more than ``max_pause`` seconds apart is not joined. MuST-C's segments are often
    several sentences; a model that streams whole talks (StreamAtt) reads several at once.
    """
    joined = []
    for length in range(2, most + 1):
        for first in range(0, len(segments) - length + 1, length):
            run = segments[first : first + length]
            pauses = [b.start - a.end for a, b in itertools.pairwise(run)]
            if any(pause < 0 or pause > max_pause for pause in pauses):
                continue
            src = " ".join(s.src for s in run)
            joined.append(Segment(
                utt_id(recording, run[0].start, run[-1].end), recording, run[0].start, run[-1].end, src,
                " ".join(s.tgt for s in run), normalize_source(src),
            ))
    return joined


def kaldi_lines(recording: str, wav: Path, segments: Sequence[Segment], tgt_lang: str) -> dict[str, list[str]]:
    """File name -> the lines of one talk in each file of a Kaldi data dir (plus our text files)."""
    return {
        "wav.scp": [f"{recording} {wav}"],
        "segments": [f"{s.utt_id} {recording} {s.start:.6f} {s.end:.6f}" for s in segments],
        "utt2spk": [f"{s.utt_id} {recording}" for s in segments],
        "spk2utt": spk2utt_lines((s.utt_id, recording) for s in segments),
        "text.src": [f"{s.utt_id} {s.src}" for s in segments],
        "text.src.norm": [f"{s.utt_id} {s.src_norm}".rstrip() for s in segments],
        "text.tgt": [f"{s.utt_id} {s.tgt}" for s in segments],
        "text.tgt.tagged": [f"{s.utt_id} <lang:{tgt_lang}> {s.tgt}" for s in segments],
    }


def write_split(
    final: Path,
    index: SplitIndex,
    tgt_lang: str,
    ratio_range: tuple[float, float] | None,
    split: str,
    join: tuple[int, float] = (1, 0.0),
) -> SplitStats:
    """Second pass: the split's data dir, talk by talk in id order (so every file is sorted).

    The order by utterance id is the order by talk id, then by time within a talk
    (see the module docstring), so no file needs sorting as a whole. ``join``: the most
    consecutive segments joined into one more utterance, and the longest pause joined over.
    """
    stats = SplitStats(clipped=index.clipped)
    progress = Progress(split, "talks written", len(index.talks))
    with atomic_dir(final) as tmp, ExitStack() as files:
        outputs = {name: files.enter_context((tmp / name).open("w", encoding="utf-8", newline="\n"))
                   for name in KALDI_FILES}
        for number, recording in enumerate(sorted(index.talks), 1):
            talk = index.talks[recording]
            segments = unique_segments(recording, talk, stats)
            if join[0] > 1:
                by_id = {s.utt_id: s for s in segments}
                for extra in joined_segments(recording, sorted(segments, key=lambda s: s.start), *join):
                    by_id.setdefault(extra.utt_id, extra)
                    stats.joined += 1
                segments = [by_id[key] for key in sorted(by_id)]
            if ratio_range is not None:
                kept = [s for s in segments if ratio_range[0] <= char_ratio(s) <= ratio_range[1]]
                stats.ratio_filtered += len(segments) - len(kept)
                segments = kept
            if segments:
                for name, lines in kaldi_lines(recording, talk.wav, segments, tgt_lang).items():
                    outputs[name].writelines(f"{line}\n" for line in lines)
                stats.add(segments)
            progress.update(number, number)
    return stats


def log_summary(split: str, stats: SplitStats) -> None:
    """One line per split: the numbers to compare against the corpus documentation."""
    logging.info(
        "%s: %d talks, %d segments (%d of them joined runs), %.2f h; removed by char-ratio filter: %d, "
        "duplicate ids dropped: %d, ends clipped to wav length: %d, empty normalised source: %d",
        *(split, stats.talks, stats.segments, stats.joined, stats.seconds / 3600, stats.ratio_filtered),
        *(stats.duplicates, stats.clipped, stats.empty_source),
    )


# --------------------------------------------------------------------------- command line


def get_parser() -> ArgumentParser:
    """Options of the data stage; any of them may also come from ``--config``."""
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mustc_root", required=True, help="MuST-C root, holding en-<tgt>/data/")
    parser.add_argument("--tgt_lang", required=True, help="target language, e.g. de")
    parser.add_argument("--out", required=True, help="output dir; gets train/, dev/, tst-COMMON/")
    parser.add_argument(
        "--extra_train", default="", help="comma-separated roots of more corpora in MuST-C layout (train split used)"
    )
    parser.add_argument(
        "--char_ratio_filter", type=str2bool, default=True, help="drop train pairs whose char ratio is out of range"
    )
    parser.add_argument("--char_ratio_min", type=float, default=0.8, help="lowest target/source char ratio kept")
    parser.add_argument("--char_ratio_max", type=float, default=1.6, help="highest target/source char ratio kept")
    parser.add_argument(
        "--max_overshoot", type=float, default=0.05, help="seconds a segment may end past its wav (then clipped)"
    )
    parser.add_argument(
        "--join_segments", type=int, default=1,
        help="train also on runs of 2 to this many consecutive segments of a talk, each joined into one utterance",
    )
    parser.add_argument(
        "--join_max_pause", type=float, default=2.0, help="seconds between two segments that a joined run may span"
    )
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parsed options, with the checks argparse cannot make (YAML values keep their YAML type)."""
    args = get_parser().parse_args(argv)
    for name in ("mustc_root", "tgt_lang", "out", "extra_train"):
        if not isinstance(getattr(args, name), str) or (name != "extra_train" and not getattr(args, name)):
            raise DataPrepError(f"--{name} must be a non-empty string, got {getattr(args, name)!r}")
    if not isinstance(args.char_ratio_filter, bool):
        raise DataPrepError(f"--char_ratio_filter must be true or false, got {args.char_ratio_filter!r}")
    if isinstance(args.join_segments, bool) or not isinstance(args.join_segments, int) or args.join_segments < 1:
        raise DataPrepError(f"--join_segments must be an integer >= 1 (1: none joined), got {args.join_segments!r}")
    for name in ("char_ratio_min", "char_ratio_max", "max_overshoot", "join_max_pause"):
        value = getattr(args, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise DataPrepError(f"--{name} must be a number >= 0, got {value!r}")
    if args.char_ratio_min > args.char_ratio_max:
        low, high = args.char_ratio_min, args.char_ratio_max
        raise DataPrepError(f"--char_ratio_min ({low}) must not exceed --char_ratio_max ({high})")
    check_output_dir(args.out, "--out")
    return args


@command(SegmentListError, on_interrupt=HOW_TO_RESUME)
def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = parse_args(argv)
    indexes = index_all(args)
    out = Path(args.out)
    for split, index in indexes.items():
        filtered = split == TRAIN_SPLIT and args.char_ratio_filter
        ratio_range = (args.char_ratio_min, args.char_ratio_max) if filtered else None
        join = (args.join_segments, args.join_max_pause) if split == TRAIN_SPLIT else (1, 0.0)
        log_summary(split, write_split(out / split, index, args.tgt_lang, ratio_range, split, join))
    logging.info("wrote %s", ", ".join(str(out / split) for split in indexes))


if __name__ == "__main__":
    sys.exit(main())
