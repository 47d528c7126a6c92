"""Decode stage scoring: corpus BLEU and chrF of one test set, with sacreBLEU signatures.

Hypotheses and references are Kaldi-style ``utt-id text`` files (``utt-id`` alone is
an empty text). The hypotheses must cover exactly the reference ids, so a decode
that silently dropped utterances cannot report a score. BLEU uses sacreBLEU's
default 13a tokenizer, or the one sacreBLEU picks for ``--tgt-lang`` (``zh``,
``ja``, ``ko``); the signatures make the numbers comparable with published ones.

Writes, under ``--out``, ``result.json`` (read by ``make_results`` and
``plot_curves``) and ``result.txt`` (sacreBLEU's own ``METRIC|signature = score``
lines first, then the segment count and the files), and prints the latter.

Usage:
    python -m espnet2_ext.bin.score_st --hyp DECODE_DIR/1best_recog/text \
        --ref dump/tst-COMMON/text.tgt --out DECODE_DIR/score [--tgt-lang de]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from espnet2_ext.utils.cli import CommandError, command
from espnet2_ext.utils.fileio import write_text_atomically

RESULT_JSON = "result.json"
RESULT_TXT = "result.txt"
_SHOWN_IDS = 5


class ScoreError(CommandError):
    """Missing, empty or mismatched hypothesis and reference files."""


@dataclass(frozen=True)
class Scores:
    """Corpus scores of one test set and how sacreBLEU computed them."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_line: str  # sacreBLEU's "BLEU|<signature> = 25.31 58.1/31.0/... (BP = ...)"
    chrf_line: str
    n_segments: int


def read_texts(path: Path) -> dict[str, str]:
    """Utterance id -> text of a Kaldi-style text file, in file order; blank lines are skipped."""
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                fields = line.rstrip("\r\n").split(maxsplit=1)
                if not fields:
                    continue
                utt_id = fields[0]
                if utt_id in texts:
                    raise ScoreError(f"{path}:{number}: duplicate id {utt_id} (first on line {first_line[utt_id]})")
                texts[utt_id] = fields[1] if len(fields) == 2 else ""
                first_line[utt_id] = number
    except FileNotFoundError:
        raise ScoreError(f"missing file {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScoreError(f"cannot read {path}: {err}") from None
    return texts


def _some(ids: set[str]) -> str:
    """At most ``_SHOWN_IDS`` sorted ids, then how many more there are."""
    shown = sorted(ids)[:_SHOWN_IDS]
    more = f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else ""
    return ", ".join(shown) + more


def paired(hyp_path: Path, ref_path: Path) -> tuple[list[str], list[str]]:
    """Hypotheses and references in reference order, checked to share exactly the same ids."""
    hyps, refs = read_texts(hyp_path), read_texts(ref_path)
    if not refs:
        raise ScoreError(f"no references in {ref_path}")
    missing, extra = set(refs) - set(hyps), set(hyps) - set(refs)
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} reference ids have no hypothesis ({_some(missing)})")
        if extra:
            problems.append(f"{len(extra)} hypothesis ids are not in the references ({_some(extra)})")
        raise ScoreError(f"{hyp_path} does not match {ref_path}: {'; '.join(problems)}")
    return [hyps[utt_id] for utt_id in refs], list(refs.values())


def score(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str = "") -> Scores:
    """Corpus BLEU (tokenizer chosen by sacreBLEU from ``tgt_lang``) and chrF of one reference."""
    try:
        bleu = BLEU(trg_lang=tgt_lang)
        bleu_score = bleu.corpus_score(list(hyps), [list(refs)])
    except RuntimeError as err:  # e.g. sacrebleu[ja] not installed for --tgt-lang ja
        raise ScoreError(f"BLEU tokenizer for --tgt-lang {tgt_lang}: {' '.join(str(err).split())}") from None
    chrf = CHRF()
    chrf_score = chrf.corpus_score(list(hyps), [list(refs)])
    bleu_signature, chrf_signature = str(bleu.get_signature()), str(chrf.get_signature())
    return Scores(
        bleu=bleu_score.score,
        chrf=chrf_score.score,
        bleu_signature=bleu_signature,
        chrf_signature=chrf_signature,
        bleu_line=bleu_score.format(signature=bleu_signature),
        chrf_line=chrf_score.format(signature=chrf_signature),
        n_segments=len(refs),
    )


def result_json(scores: Scores, hyp_path: Path, ref_path: Path, tgt_lang: str) -> str:
    """The machine-readable result; scores at full precision, rounding is left to readers."""
    result = {
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "signatures": {"bleu": scores.bleu_signature, "chrf": scores.chrf_signature},
        "sacrebleu": {"bleu": scores.bleu_line, "chrf": scores.chrf_line},
        "n_segments": scores.n_segments,
        "tgt_lang": tgt_lang or None,
        "hyp": str(hyp_path),
        "ref": str(ref_path),
    }
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


def result_text(scores: Scores, hyp_path: Path, ref_path: Path) -> str:
    """The two score lines first (run.sh logs ``head -n 2``), then what was scored."""
    return (
        f"{scores.bleu_line}\n{scores.chrf_line}\n"
        f"segments: {scores.n_segments}\nhyp: {hyp_path}\nref: {ref_path}\n"
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hyp", type=Path, required=True, help="decoded text, e.g. DECODE_DIR/1best_recog/text")
    parser.add_argument("--ref", type=Path, required=True, help="reference text, e.g. dump/tst-COMMON/text.tgt")
    parser.add_argument("--out", type=Path, required=True, help="directory for result.json and result.txt")
    parser.add_argument("--tgt-lang", default="", help="target language; picks BLEU's tokenizer for zh, ja, ko")
    return parser


@command(OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    scores = score(*paired(args.hyp, args.ref), tgt_lang=args.tgt_lang)
    write_text_atomically(args.out / RESULT_JSON, result_json(scores, args.hyp, args.ref, args.tgt_lang))
    text = result_text(scores, args.hyp, args.ref)
    write_text_atomically(args.out / RESULT_TXT, text)
    print(text, end="")


if __name__ == "__main__":
    sys.exit(main())
