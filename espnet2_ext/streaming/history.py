"""StreamAtt's history selection as pure functions: what text and audio the next step keeps.

A talk streamed whole never ends, so the forced prefix (the text history) and the
encoder's input (the audio history) must be cut as it goes. After every policy
call FBK's ``StreamingSTAgent`` (FBK-fairseq ``agents/v1_1/streaming/
text_first_history_selection.py``; STREAMATT_FBK.md §1) first chooses the text to
keep, then drops the audio that no kept token still needs:

- :func:`words_history` (``words``, FBK's ``FixedWordsHistorySelection``): the tokens
  of the last N words;
- :func:`punctuation_history` (``punctuation``): what follows the last token holding
  one of ``. ! ? : ;``, at most ``max_tokens`` of it;
- :func:`attended_frames_to_cut` (both): the feature frames before the earliest
  encoder position that the kept text and the tokens not yet written attend to most
  (FBK's rule), or, ``past_discarded`` (ours), at least those up to the last position
  the discarded text attended to most: when a sentence ends, FBK's rule reads where
  the next, barely begun one attends, and a model that attends back to the old
  sentence's audio keeps it, then translates it again;
- :func:`fixed_audio_frames_to_cut` (``audio``, FBK's ``FixedAudioHistorySelection``,
  the paper's baseline): 280 ms per word of text discarded.

Token ids index ``pieces`` (the model's token list; SentencePiece's ``▁`` starts a
word). Only the tests of membership FBK makes are made here (a substring test for
``▁`` and for the punctuation marks), so the same pieces give the same cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from espnet2_ext.simultaneous.words import WORD_START
from espnet2_ext.streaming.options import AUDIO_CUTS, HISTORIES

if TYPE_CHECKING:
    import torch

__all__ = [
    "AUDIO_CUTS",
    "FIXED_WORD_MS",
    "STRONG_PUNCTUATION",
    "attended_frames_to_cut",
    "fixed_audio_frames_to_cut",
    "punctuation_history",
    "select_text",
    "words_history",
]

STRONG_PUNCTUATION = (".", "!", "?", ":", ";")
FIXED_WORD_MS = 280  # a word's duration for FixedAudio (Ma et al., 2021, as FBK's)
FRAME_MS = 10  # one fbank frame


def words_history(ids: Sequence[int], pieces: Sequence[str], words: int) -> list[int]:
    """The tokens of the last ``words`` words: walking back, up to and including the
    ``words``-th token that holds ``▁``; everything when there are fewer.

    Example: ``▁I ▁am ▁a ▁quo kka`` with 2 words gives ``▁a ▁quo kka``.
    """
    if words < 1:
        raise ValueError(f"words must be >= 1, got {words}")
    left = words
    for start in range(len(ids) - 1, -1, -1):
        if WORD_START in pieces[ids[start]]:
            left -= 1
            if left == 0:
                return list(ids[start:])
    return list(ids)


def punctuation_history(ids: Sequence[int], pieces: Sequence[str], max_tokens: int) -> list[int]:
    """The tokens after the last one holding a strong punctuation mark, at most the last
    ``max_tokens`` of them (FBK's ``--history-max-len``, 100).

    Example: ``▁I . ▁am ▁a`` gives ``▁am ▁a``; ``▁I ▁am .`` gives nothing.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    start = 0
    for position in range(len(ids) - 1, -1, -1):
        if any(mark in pieces[ids[position]] for mark in STRONG_PUNCTUATION):
            start = position + 1
            break
    kept = list(ids[start:])
    return kept[-max_tokens:]


def select_text(history: str, ids: Sequence[int], pieces: Sequence[str], words: int, max_tokens: int) -> list[int]:
    """The text history ``history`` keeps of ``ids`` (``audio`` keeps words as ``words`` does)."""
    if history in ("words", "audio"):
        return words_history(ids, pieces, words)
    if history == "punctuation":
        return punctuation_history(ids, pieces, max_tokens)
    raise ValueError(f"history must be one of {', '.join(HISTORIES[1:])}, got {history!r}")


def attended_frames_to_cut(
    attention: torch.Tensor,
    tag_len: int,
    discarded: int,
    run_lengths: Sequence[int] | None,
    subsampling: int,
    rule: str = "fbk",
) -> int:
    """Feature frames no token of the next step attends to, once ``discarded`` tokens left the text.

    ``attention`` is the last search's cross-attention along its best hypothesis,
    (S encoder positions, tokens), columns for the forced prefix (``tag_len`` tag
    tokens, then the text history), the new tokens and ``</s>``. As FBK's
    ``audio_history``: the tag's and the discarded tokens' columns go, then the last
    encoder position and the ``</s>`` column; the rows left are the kept text and the
    tokens not written yet. The earliest of their most attended positions, k, is
    where the audio the next step needs begins. With ``rule="past_discarded"`` k is
    at least one past the latest position a discarded token attends to most. k is
    mapped back through the CTC compression's runs (``run_lengths[p]``: the CTC frames
    position p merged; None when nothing was merged) to CTC frames, then times the
    model's subsampling (FBK hard-codes 4) to feature frames.

    Example: positions aligned ``[1, 1, 3]``, runs ``[2, 3, 1, 1]``, 4x subsampling:
    k = 1, one run of 2 CTC frames before it, 8 feature frames cut.
    """
    if rule not in AUDIO_CUTS:
        raise ValueError(f"rule must be one of {', '.join(AUDIO_CUTS)}, got {rule!r}")
    if discarded == 0:
        return 0
    scores = attention[:-1, :-1].float()
    if scores.numel() == 0:
        return 0
    aligned = scores.argmax(dim=0)  # each token's most attended position
    kept = aligned[tag_len + discarded :]
    earliest = int(kept.min()) if kept.numel() else 0
    if rule == "past_discarded":
        earliest = max(earliest, int(aligned[tag_len : tag_len + discarded].max()) + 1)
    frames = sum(run_lengths[:earliest]) if run_lengths is not None else earliest
    return frames * subsampling


def fixed_audio_frames_to_cut(discarded_ids: Sequence[int], pieces: Sequence[str]) -> int:
    """FixedAudio: 280 ms (28 frames) for each word among the discarded tokens.

    Words are counted as FBK counts them: the pieces joined by spaces, ``▁`` stripped
    from both ends, then split at ``▁`` (so a piece continuing a word counts as one).
    """
    if not discarded_ids:
        return 0
    text = " ".join(pieces[i] for i in discarded_ids)
    words = len(text.strip(WORD_START).split(WORD_START))
    return words * FIXED_WORD_MS // FRAME_MS
