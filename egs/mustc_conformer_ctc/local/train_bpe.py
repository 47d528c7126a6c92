#!/usr/bin/env python3
"""Train a SentencePiece unigram model and write its ESPnet token list.

Input is a Kaldi-style text file (``utt-id text``). Language tags (``<lang:xx>``)
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


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="Kaldi-style text file")
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--model-prefix", type=Path, required=True, help="writes PREFIX.model and PREFIX.vocab")
    parser.add_argument("--token-list", type=Path, required=True)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        tokens = train(read_sentences(args.input), args.vocab_size, args.model_prefix, args.token_list)
    except (OSError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    print(f"{args.token_list}: {len(tokens)} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
