#!/usr/bin/env python3
"""Train the target and source SentencePiece unigram models and their ESPnet token lists.

From a data dir: the target model on ``text.tgt.tagged`` (raw truecased text,
language tag first), the source model for the CTC on ``text.src.norm``
(lowercased, no punctuation). Writes ``<out>/{tgt,src}.model`` and
``<out>/{tgt,src}_tokens.txt``. Inputs are Kaldi-style (``utt-id text``). Language tags (``<lang:xx>``)
found as first tokens become user-defined symbols, so each stays one piece
and is the first piece of its sentence.
The token list follows ESPnet's convention: ``<blank>`` (id 0, the CTC blank),
``<unk>``, the model's pieces, and ``<sos/eos>`` last.
"""

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import sentencepiece as spm
from espnet2.utils.config_argparse import ArgumentParser

LANG_TAG = re.compile(r"^<lang:[^>\s]+>$")
SPM_CONTROL_PIECES = 3  # <unk>, <s>, </s>: replaced by ESPnet's own symbols


def read_sentences(path: Path) -> List[str]:
    """Text after the utterance id of every line; an empty sentence is an error."""
    sentences = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip("\n").split(maxsplit=1)
            if len(fields) < 2 or not fields[1].strip():
                raise ValueError(f"{path}:{number}: expected '<utt-id> <text>', got {line.rstrip()!r}")
            sentences.append(fields[1])
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def language_tags(sentences: List[str]) -> List[str]:
    return sorted({s.split()[0] for s in sentences if LANG_TAG.match(s.split()[0])})


def train(sentences: List[str], vocab_size: int, model_prefix: Path, token_list: Path) -> List[str]:
    """Train into temporary files, then rename: a killed run leaves nothing half-written."""
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    token_list.parent.mkdir(parents=True, exist_ok=True)
    tags = language_tags(sentences)
    with tempfile.TemporaryDirectory(dir=model_prefix.parent) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        tmp_prefix = Path(tmp) / "spm"
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(tmp_prefix),
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
        pieces = [line.split("\t")[0] for line in (tmp_prefix.with_suffix(".vocab")).read_text(encoding="utf-8").splitlines()]
        tokens = ["<blank>", "<unk>"] + pieces[SPM_CONTROL_PIECES:] + ["<sos/eos>"]
        tmp_tokens = Path(tmp) / "tokens.txt"
        tmp_tokens.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        for suffix in (".model", ".vocab"):
            os.replace(tmp_prefix.with_suffix(suffix), model_prefix.with_name(model_prefix.name + suffix))
        os.replace(tmp_tokens, token_list)
    return tokens


SIDES = {"tgt": "text.tgt.tagged", "src": "text.src.norm"}


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="training data dir")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--tgt-vocab-size", type=int, default=8000, help="target pieces (an upper bound)")
    parser.add_argument("--src-vocab-size", type=int, default=5000, help="source pieces for the CTC")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    sizes = {"tgt": args.tgt_vocab_size, "src": args.src_vocab_size}
    for side, text in SIDES.items():
        try:
            sentences = read_sentences(args.data_dir / text)
            tokens = train(sentences, sizes[side], args.out_dir / side, args.out_dir / f"{side}_tokens.txt")
        except (OSError, ValueError) as e:
            print(f"ERROR: {e}", file=sys.stderr)
            return 1
        print(f"{args.out_dir / side}.model: {len(tokens)} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
