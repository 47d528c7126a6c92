#!/usr/bin/env python3
"""Generate a small synthetic English->German speech-translation corpus in MuST-C layout.

The real MuST-C corpus is far too large to exercise the recipe on a laptop, so this
builds a stand-in with the same directory layout and file formats:

    <out>/en-de/data/{train,dev,tst-COMMON}/wav/ted_<n>.wav
    <out>/en-de/data/{train,dev,tst-COMMON}/txt/<split>.{yaml,en,de}

Sentences come from :mod:`mini_corpus.grammar` (German translations correct by
construction, words from :mod:`mini_corpus.lexicon`); :mod:`mini_corpus.speech`
speaks them with espeak-ng and writes the files. Everything is deterministic for a
given seed, and a re-run with the same options skips the splits already written.

Usage:
    python local/make_mini_corpus.py --out downloads/mini_corpus [--seed 1] \\
        [--n_train 1200] [--n_dev 100] [--n_test 150] [--talk_size 20] [--workers 2]
"""

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mini_corpus.grammar import GrammarError
from mini_corpus.speech import SpeechError, build_corpus, corpus_summary

from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output root directory")
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same corpus)")
    parser.add_argument("--n_train", type=int, default=1200, help="number of training sentences")
    parser.add_argument("--n_dev", type=int, default=100, help="number of dev sentences")
    parser.add_argument("--n_test", type=int, default=150, help="number of tst-COMMON sentences")
    parser.add_argument("--tgt", default="de", choices=["de"], help="target language (the grammar's only one)")
    parser.add_argument("--talk_size", type=int, default=20, help="sentences per talk (wav file)")
    parser.add_argument("--workers", type=int, default=2, help="parallel espeak-ng processes")
    return parser


@command(SpeechError, GrammarError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    sizes = {name: getattr(args, name) for name in ("n_train", "n_dev", "n_test", "talk_size", "workers")}
    small = [f"--{name}" for name, value in sizes.items() if value < 1]
    if small:
        raise CommandError(f"{', '.join(small)} must be at least 1")
    check_output_dir(args.out, "--out")
    start = time.monotonic()
    generated = build_corpus(args.out, args.seed, **sizes)
    for split, (segments, hours) in corpus_summary(args.out, args.tgt).items():
        status = "generated" if generated[split] else "up to date"
        print(f"{split}: {segments} segments, {hours:.3f} h ({status})")
    print(f"done in {time.monotonic() - start:.1f} s: {args.out / f'en-{args.tgt}' / 'data'}")


if __name__ == "__main__":
    sys.exit(main())
