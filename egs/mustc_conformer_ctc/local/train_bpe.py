#!/usr/bin/env python3
"""Train the target and source SentencePiece unigram models and their ESPnet token lists.

From a data dir: the target model on ``text.tgt.tagged`` (raw truecased text,
language tag first), the source model for the CTC on ``text.src.norm``
(lowercased, no punctuation). Writes ``<out_dir>/{tgt,src}.{model,vocab}`` and
``<out_dir>/{tgt,src}_tokens.txt``, all four models trained in a temporary dir
swapped in whole, so a failed or killed run leaves the previous ones.
Inputs are Kaldi-style (``utt-id text``). Language tags (``<lang:xx>``) found as
first tokens become user-defined symbols, so each stays one piece and is the
first piece of its sentence. The token list follows ESPnet's convention:
``<blank>`` (id 0, the CTC blank), ``<unk>``, the model's pieces, ``<sos/eos>`` last.

Usage:
    python local/train_bpe.py --data_dir dump/train --out_dir data/spm \
        [--tgt_vocab_size 8000] [--src_vocab_size 5000] [--config conf/bpe.yaml]
"""

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from espnet2_ext.fileio.atomic import atomic_dir
from espnet2_ext.fileio.kaldi_table import TableError, read_text
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_dir, command

LANG_TAG = re.compile(r"^<lang:[^>\s]+>$")
SPM_CONTROL_PIECES = 3  # <unk>, <s>, </s>: replaced by ESPnet's own symbols
SIDES = {"tgt": "text.tgt.tagged", "src": "text.src.norm"}


def read_sentences(path: Path) -> list[str]:
    """The texts of a Kaldi text file; an empty one is an error naming its utterance."""
    texts = read_text(path)
    empty = next((utt_id for utt_id, text in texts.items() if not text.strip()), None)
    if empty is not None:
        raise CommandError(f"{path}: utterance {empty} has an empty text")
    if not texts:
        raise CommandError(f"{path}: no sentences")
    return list(texts.values())


def language_tags(sentences: Sequence[str]) -> list[str]:
    return sorted({s.split()[0] for s in sentences if LANG_TAG.match(s.split()[0])})


def train(sentences: Sequence[str], vocab_size: int, out_dir: Path, name: str) -> list[str]:
    """``<out_dir>/<name>.{model,vocab}`` and ``<name>_tokens.txt``; returns the token list."""
    tags = language_tags(sentences)
    corpus = out_dir / f"{name}.corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out_dir / name),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        user_defined_symbols=tags,
        # With a dummy prefix a leading tag would encode as ["▁", "<lang:xx>", ...];
        # without it the tag is the first piece, as the model expects.
        add_dummy_prefix=not tags,
        hard_vocab_limit=False,  # small corpora get fewer pieces instead of an error
        input_sentence_size=10_000_000,
        shuffle_input_sentence=True,
        minloglevel=2,
    )
    corpus.unlink()
    vocab = (out_dir / f"{name}.vocab").read_text(encoding="utf-8").splitlines()
    tokens = ["<blank>", "<unk>", *[line.split("\t")[0] for line in vocab][SPM_CONTROL_PIECES:], "<sos/eos>"]
    (out_dir / f"{name}_tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return tokens


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="training data dir")
    parser.add_argument("--out_dir", type=Path, required=True, help="where the models and token lists go")
    parser.add_argument("--tgt_vocab_size", type=int, default=8000, help="target pieces (an upper bound)")
    parser.add_argument("--src_vocab_size", type=int, default=5000, help="source pieces for the CTC")
    return parser


@command(TableError, OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    check_output_dir(args.out_dir, "--out_dir")
    sizes = {"tgt": args.tgt_vocab_size, "src": args.src_vocab_size}
    sentences = {side: read_sentences(args.data_dir / text) for side, text in SIDES.items()}
    with atomic_dir(args.out_dir) as tmp:
        tokens = {side: train(sentences[side], sizes[side], tmp, side) for side in SIDES}
    for side in SIDES:
        print(f"{args.out_dir / side}.model: {len(tokens[side])} tokens")


if __name__ == "__main__":
    sys.exit(main())
