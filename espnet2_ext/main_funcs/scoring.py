"""Corpus BLEU and chrF of one test set, with sacreBLEU signatures.

Hypotheses and references are Kaldi-style ``utt-id text`` files (``utt-id`` alone is
an empty text). The hypotheses must cover exactly the reference ids, so a decode
that silently dropped utterances cannot report a score. BLEU uses sacreBLEU's
default 13a tokenizer, or the one sacreBLEU picks for the target language (``zh``,
``ja``, ``ko``); the signatures make the numbers comparable with published ones.
:func:`score_lines` is the one place that computes them: gold-segmented decodes
(:func:`score_files`) and re-segmented talks (:mod:`espnet2_ext.main_funcs.talk_scoring`)
both go through it, so their numbers are comparable.
"""

from collections.abc import Sequence
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from espnet2_ext.fileio.kaldi_table import read_text
from espnet2_ext.main_funcs.experiment import ScoreResult, TalkSegmentation

_SHOWN_IDS = 5


class ScoringError(ValueError):
    """Hypotheses and references that do not pair up, or a tokenizer sacreBLEU lacks."""


def some_ids(ids: set[str]) -> str:
    """At most ``_SHOWN_IDS`` sorted ids, then how many more there are."""
    shown = sorted(ids)[:_SHOWN_IDS]
    more = f" and {len(ids) - len(shown)} more" if len(ids) > len(shown) else ""
    return ", ".join(shown) + more


def id_mismatch(expected: set[str], found: set[str], missing: str, extra: str) -> str | None:
    """How two sets of ids differ ("2 <missing> (a, b); 1 <extra> (c)"), or None when they are the same."""
    problems = []
    if expected - found:
        problems.append(f"{len(expected - found)} {missing} ({some_ids(expected - found)})")
    if found - expected:
        problems.append(f"{len(found - expected)} {extra} ({some_ids(found - expected)})")
    return "; ".join(problems) or None


def paired(hyp_path: Path, ref_path: Path) -> tuple[list[str], list[str]]:
    """Hypotheses and references in reference order, checked to share exactly the same ids."""
    hyps, refs = read_text(hyp_path), read_text(ref_path)
    if not refs:
        raise ScoringError(f"no references in {ref_path}")
    problem = id_mismatch(
        set(refs), set(hyps), "reference ids have no hypothesis", "hypothesis ids are not in the references"
    )
    if problem:
        raise ScoringError(f"{hyp_path} does not match {ref_path}: {problem}")
    return [hyps[utt_id] for utt_id in refs], list(refs.values())


def score_lines(
    hyps: Sequence[str],
    refs: Sequence[str],
    tgt_lang: str,
    hyp: str,
    ref: str,
    talks: TalkSegmentation | None = None,
    tokenize: str | None = None,
) -> ScoreResult:
    """Corpus BLEU (tokenizer chosen by sacreBLEU from ``tgt_lang``) and chrF of ``hyps``
    against the one reference ``refs``, line i with line i; ``hyp`` and ``ref`` say what
    was scored, ``talks`` how talk-level hypotheses were re-segmented. ``tokenize`` names
    the BLEU tokenizer instead (SimulEval's ``--sacrebleu-tokenizer``)."""
    hyps, refs = list(hyps), list(refs)
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ScoringError(f"BLEU tokenizer {tokenize}: not one of sacreBLEU's ({', '.join(BLEU.TOKENIZERS)})")
    try:
        bleu = BLEU(trg_lang=tgt_lang, tokenize=tokenize)
        bleu_score = bleu.corpus_score(hyps, [refs])
    except RuntimeError as err:  # e.g. sacrebleu[ja] not installed for tgt_lang ja
        raise ScoringError(f"BLEU tokenizer for --tgt_lang {tgt_lang}: {' '.join(str(err).split())}") from None
    chrf = CHRF()
    chrf_score = chrf.corpus_score(hyps, [refs])
    bleu_signature, chrf_signature = str(bleu.get_signature()), str(chrf.get_signature())
    return ScoreResult(
        bleu=bleu_score.score,
        chrf=chrf_score.score,
        n_segments=len(refs),
        bleu_signature=bleu_signature,
        chrf_signature=chrf_signature,
        bleu_line=bleu_score.format(signature=bleu_signature),
        chrf_line=chrf_score.format(signature=chrf_signature),
        tgt_lang=tgt_lang or None,
        hyp=hyp,
        ref=ref,
        talks=talks,
    )


def score_files(hyp_path: Path, ref_path: Path, tgt_lang: str = "") -> ScoreResult:
    """:func:`score_lines` of ``hyp_path`` against ``ref_path``, paired by id (see :func:`paired`)."""
    hyps, refs = paired(hyp_path, ref_path)
    return score_lines(hyps, refs, tgt_lang, hyp=str(hyp_path), ref=str(ref_path))
