"""Which committed target tokens make whole words, as FBK's SimulEval-1.1 agents decide.

A simultaneous agent writes words, not SentencePiece pieces: a word is only known
to be finished once the piece after it starts a new word (``▁``), so the pieces of
the last word stay uncommitted and are generated again at the next step
(FBK-fairseq ``agents/v1_1/base_simulst_agent.py``, ``get_words``). At the end of
the input everything left is written (``policy``, ``_emit_remaining_tokens``).

Text is made as fairseq's ``Dictionary.string(ids, "sentencepiece")`` makes it:
``<eos>`` left out, the pieces joined, ``▁`` turned into a space, the ends
stripped. That is not always SentencePiece's own decoding (which treats pieces
such as ``<unk>`` or byte pieces specially); FBK's rule is kept so that the words
and their number, which the latency metrics count, are FBK's.
"""

from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["WORD_START", "Words", "all_words", "complete_words", "detokenize", "first_words"]

WORD_START = "\u2581"  # SentencePiece's "▁": the piece begins a word


class Words(NamedTuple):
    """Token ids to commit to the forced prefix, and the text they make."""

    ids: list[int]
    text: str


def detokenize(ids: Sequence[int], pieces: Sequence[str], eos: int) -> str:
    """fairseq's ``Dictionary.string(ids, bpe_symbol="sentencepiece")`` on ESPnet's token list.

    Args:
        ids: target token ids.
        pieces: the token list (id -> piece).
        eos: the ``<sos/eos>`` id, left out of the text.
    """
    return "".join(pieces[i] for i in ids if i != eos).replace(WORD_START, " ").strip()


def complete_words(candidates: Sequence[int], pieces: Sequence[str], eos: int) -> Words:
    """The candidates up to the start of their last word (FBK v1_1 ``get_words``).

    Everything from the last piece that starts with ``▁`` to the end is dropped,
    and only the last token when that one starts with ``▁`` (a lone ``▁x`` may
    still continue). Without any ``▁`` piece nothing is committed. ``<eos>``
    never starts a word, so it always goes with the dropped tail: a policy's
    ``<eos>`` is never committed before the end of the input.

    Example: pieces ``▁I ▁am ▁S ara ▁and`` give ids of ``▁I ▁am ▁S ara`` and
    ``"I am Sara"``; ``▁I ▁am ▁S ara`` give ``"I am"``; ``Hi ,`` give nothing.

    Args:
        candidates: the token ids a policy accepted (after the forced prefix).
        pieces: the token list (id -> piece).
        eos: the ``<sos/eos>`` id.

    Returns:
        the ids to commit and their text; ``Words([], "")`` means READ.
    """
    starts = [n for n, i in enumerate(candidates) if pieces[i].startswith(WORD_START)]
    if not starts:
        return Words([], "")
    kept = list(candidates[: starts[-1]])
    return Words(kept, detokenize(kept, pieces, eos))


def all_words(candidates: Sequence[int], pieces: Sequence[str], eos: int) -> Words:
    """Everything left at the end of the input (FBK v1_1 ``_emit_remaining_tokens``).

    ``candidates`` is the final hypothesis after the forced prefix, ``<eos>``
    included or not; ``<eos>`` is left out of both the ids and the text.
    """
    kept = [i for i in candidates if i != eos]
    return Words(kept, detokenize(kept, pieces, eos))


def first_words(candidates: Sequence[int], pieces: Sequence[str], n: int) -> list[int]:
    """The candidates before the ``▁`` piece of word ``n + 1`` (FBK v1_0 wait-k ``_select_words``).

    Pieces before the first ``▁`` (the end of a word the prefix began) come
    with the first word; ``<eos>`` comes too when the hypothesis has ``n``
    words or fewer.
    """
    words = 0
    for position, i in enumerate(candidates):
        if pieces[i].startswith(WORD_START):
            words += 1
            if words > n:
                return list(candidates[:position])
    return list(candidates)
