"""FBK's simultaneous policies as pure functions: what to commit given one hypothesis.

After each chunk of audio the agent re-encodes the whole input, runs a beam
search that forces the committed prefix, and asks a policy which of the new
tokens are safe to commit. Each function here takes what that search gives:

- ``tokens``: the winning hypothesis' ids, ``prefix_len`` forced ones first (the
  language tag, when the model has one, then the committed tokens), then the
  new tokens, then ``<eos>``;
- ``attention``: the cross-attention of one decoder layer averaged over its
  heads, along the winning beam's path, shape (S encoder positions, len(tokens)):
  column t is the attention of the query that predicted ``tokens[t]`` (fairseq's
  ``hypo["attention"]``).

and returns the ids the policy accepts, ``[]`` meaning READ. For AlignAtt and
EDAtt these still go through the word rule of :func:`.words.complete_words`
before they are committed, as in FBK's SimulEval-1.1 agents; wait-k and local
agreement accept whole words or agreed tokens by themselves (FBK's v1_0 agents).

Sources (FBK-fairseq ``examples/speech_to_text/simultaneous_translation/agents/``):
``v1_1/simul_offline_alignatt.py``, ``v1_1/simul_offline_edatt.py``,
``v1_0/simul_offline_local_agreement.py``, ``v1_0/simul_offline_waitk.py``.
"""

from collections.abc import Sequence
from itertools import accumulate

import torch
import torch.nn.functional as F

from espnet2_ext.simultaneous.options import FRAME_UNITS
from espnet2_ext.simultaneous.words import first_words

__all__ = [
    "FRAME_UNITS",
    "alignatt",
    "edatt",
    "first_banned_position",
    "local_agreement",
    "source_words_ctc",
    "source_words_fixed",
    "waitk",
    "waitk_words",
]


def _check(tokens: Sequence[int], attention: torch.Tensor, prefix_len: int) -> None:
    if attention.dim() != 2 or attention.shape[1] != len(tokens):
        raise ValueError(
            f"attention must be (encoder positions, {len(tokens)} tokens), got {tuple(attention.shape)}"
        )
    if not 0 <= prefix_len <= len(tokens):
        raise ValueError(f"prefix_len must be in [0, {len(tokens)}], got {prefix_len}")


def first_banned_position(
    positions: int, frame_num: int, frame_unit: str = "position", run_frames: Sequence[int] | None = None
) -> int:
    """The first encoder position AlignAtt may not align a token to (last one dropped).

    ``positions`` is S, the encoder length; position S-1 is never a candidate
    (FBK drops it before the argmax), so the answer lies in [0, S-1].

    - ``"position"`` (FBK): the last ``frame_num`` of positions 0..S-2 are
      banned, so the answer is ``S-1-frame_num`` (0 when that is negative).
      With a CTC-compressing encoder a position is a run of CTC frames, whose
      duration varies, so ``frame_num`` then bans a varying stretch of time.
    - ``"time"`` (ours): ``run_frames[p]`` is how many 40-ms frames position p
      covers (its CTC run's length times the CTC frame's duration over 40 ms:
      1x with 4x subsampling, 2x with 8x). Position p spans frames
      ``[start_p, end_p)``, ``end_p = run_frames[0] + ... + run_frames[p]``.
      With the last position dropped as FBK drops it, time ends at
      ``H = end_(S-2)``, and a position is banned when its span reaches into the
      last ``frame_num`` frames before H: ``end_p > H - frame_num``. A run that
      straddles that limit holds some of the speech that is still too recent,
      so it is banned as a whole, as FBK bans each recent position whole.
      With every run one frame long this is exactly FBK's rule; ``frame_num``
      keeps one meaning (``frame_num * 40`` ms) whatever the compression did.
    """
    if frame_num < 0:
        raise ValueError(f"frame_num must be >= 0, got {frame_num}")
    if frame_unit not in FRAME_UNITS:
        raise ValueError(f"frame_unit must be one of {FRAME_UNITS}, got {frame_unit!r}")
    if frame_unit == "position":
        if run_frames is not None:
            raise ValueError('run_frames is only read with frame_unit="time"')
        return max(positions - 1 - frame_num, 0)
    if run_frames is None or len(run_frames) != positions:
        raise ValueError(f'frame_unit="time" needs run_frames for each of the {positions} encoder positions')
    if any(n < 1 for n in run_frames):
        raise ValueError(f"run_frames must all be >= 1, got {list(run_frames)}")
    ends = list(accumulate(run_frames[:-1]))
    horizon = ends[-1] if ends else 0
    return sum(end <= horizon - frame_num for end in ends)  # ends grow: the positions kept come first


def alignatt(
    tokens: Sequence[int],
    attention: torch.Tensor,
    prefix_len: int,
    frame_num: int,
    frame_unit: str = "position",
    run_frames: Sequence[int] | None = None,
) -> list[int]:
    """AlignAtt (Papi et al., Interspeech 2023): new tokens up to the first one aligned too late.

    As FBK's ``v1_1/simul_offline_alignatt.py``: the candidates are
    ``tokens[prefix_len:-1]`` (``<eos>`` is never proposed); their attention
    columns lose the last encoder position; each candidate is aligned to its
    most attended position (argmax in float32, the first one on ties); the
    candidates before the first one aligned at or after
    :func:`first_banned_position` are accepted. ``frame_num=0`` bans nothing;
    ``S-1 <= frame_num`` (positions) bans everything.

    Example: S=6, ``frame_num=2``: positions 3 and 4 are banned (5 is dropped);
    candidates aligned to ``[0, 0, 4, 3]`` give the first two.

    Args:
        tokens: the winning hypothesis, forced prefix first, ``<eos>`` last.
        attention: its cross-attention (S, len(tokens)).
        prefix_len: forced tokens at the start of ``tokens`` (language tag included).
        frame_num: f, how much recent input no token may be aligned to.
        frame_unit: what f counts: ``"position"`` or ``"time"`` (40-ms frames).
        run_frames: with ``"time"``: the 40-ms frames each encoder position covers (S values).

    Returns:
        the accepted candidate ids (``[]``: READ), before the word rule.
    """
    _check(tokens, attention, prefix_len)
    banned = first_banned_position(attention.shape[0], frame_num, frame_unit, run_frames)
    candidates = list(tokens[prefix_len:-1])
    scores = attention[:-1, prefix_len:-1].transpose(0, 1).float()
    if scores.numel() == 0:
        return []
    late = torch.nonzero(scores.argmax(dim=1) >= banned)
    return candidates[: int(late[0])] if len(late) else candidates


def edatt(
    tokens: Sequence[int],
    attention: torch.Tensor,
    prefix_len: int,
    frame_num: int,
    threshold: float,
    has_lang_tag: bool = False,
) -> list[int]:
    """EDAtt (Papi et al., ACL 2023): new tokens up to the first one attending too much to the end.

    As FBK's ``v1_1/simul_offline_edatt.py``: the candidates are
    ``tokens[prefix_len:]``, ``<eos>`` included (the word rule drops it later);
    the last encoder position is dropped; each token's attention over the
    remaining positions is L2-normalised (``F.normalize``, float32; not summed
    to 1); a candidate's score is the sum of its last ``frame_num`` (lambda)
    normalised values, over all positions when ``frame_num`` is 0 (FBK's
    ``[-0:]``), which is then at least 1 for any non-zero row. The candidates
    before the first one scoring ``>= threshold`` (alpha) are accepted.

    FBK's off-by-one with a language tag, kept here: ``has_lang_tag`` removes
    the tag's attention column, but the rows are still taken from
    ``prefix_len``, which counts the tag. So candidate i is scored with the
    attention of candidate i+1 (a token waits when the next one looks too far
    ahead), the first candidate's own attention is never read, and the last
    score, ``<eos>``'s, stops the last real token.

    Args:
        tokens: the winning hypothesis, forced prefix first, ``<eos>`` last.
        attention: its cross-attention (S, len(tokens)).
        prefix_len: forced tokens at the start of ``tokens`` (language tag included).
        frame_num: lambda, the encoder positions summed (0: all).
        threshold: alpha.
        has_lang_tag: ``tokens[0]`` is a language tag (FBK's ``prefix_token_idx``).

    Returns:
        the accepted candidate ids (``[]``: READ), before the word rule.
    """
    _check(tokens, attention, prefix_len)
    if frame_num < 0:
        raise ValueError(f"frame_num must be >= 0, got {frame_num}")
    if has_lang_tag and prefix_len < 1:
        raise ValueError("has_lang_tag: the tag is forced, so prefix_len must count it (>= 1)")
    candidates = list(tokens[prefix_len:])
    columns = attention[:, 1:] if has_lang_tag else attention
    normalised = F.normalize(columns[:-1, :].transpose(0, 1).float(), dim=1)
    if normalised.numel() == 0:
        return []
    scores = normalised[prefix_len:, -frame_num:].sum(dim=1)
    late = torch.nonzero(scores >= threshold)
    return candidates[: int(late[0])] if len(late) else candidates


def local_agreement(
    previous_tokens: Sequence[int] | None, current_tokens: Sequence[int], prefix_len: int, eos: int
) -> list[int]:
    """Local agreement, n=2 (Liu et al. 2020): what the last two hypotheses agree on.

    As FBK's ``v1_0/simul_offline_local_agreement.py``: both hypotheses lose
    their first ``prefix_len`` tokens (the prefix now forced: the previous one
    was searched with a shorter prefix, but it ends with what was committed
    since), then the longest common prefix is taken, stopping before ``<eos>``.
    ``previous_tokens`` is None for the first hypothesis of an utterance (READ).
    """
    if previous_tokens is None:
        return []
    agreed = []
    for old, new in zip(previous_tokens[prefix_len:], current_tokens[prefix_len:]):
        if old != new or new == eos:
            break
        agreed.append(new)
    return agreed


def source_words_fixed(ctc_length: int, segment_factor: int) -> int:
    """Wait-k's source words without a transcript: one per ``segment_factor`` encoder frames.

    ``ctc_length`` is the encoder length before CTC compression (FBK's
    ``encoder_out["ctc_lengths"]``, one frame per 40 ms); FBK's
    ``segment_factor`` is its ``--speech-segment-factor`` (8: a word per 320 ms).
    """
    if segment_factor < 1:
        raise ValueError(f"segment_factor must be >= 1, got {segment_factor}")
    return ctc_length // segment_factor


def source_words_ctc(transcript: str) -> int:
    """Wait-k's source words in adaptive mode: the words of the greedy CTC transcript.

    FBK counts ``len(text.split(" "))`` of fairseq's SentencePiece decoding; our
    transcript (``Speech2Translation``'s) has single spaces, where that equals
    ``len(text.split())``.
    """
    return len(transcript.split())


def waitk_words(source_words: int, written_words: int, k: int) -> int:
    """How many more target words wait-k may write: ``source_words - (written_words + k)``, or 0.

    The agent adds this number to ``written_words`` when it writes, even when
    the hypothesis had fewer words (FBK's ``n_predicted_words`` accounting);
    0 means READ without running the search.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return max(source_words - (written_words + k), 0)


def waitk(
    tokens: Sequence[int],
    prefix_len: int,
    pieces: Sequence[str],
    source_words: int,
    written_words: int,
    k: int,
) -> list[int]:
    """Wait-k over an offline model (FBK v1_0 ``simul_offline_waitk.py``): the next whole words.

    Writes the first :func:`waitk_words` words of ``tokens[prefix_len:]``,
    words counted by their ``▁`` piece (:func:`.words.first_words`), so the
    result ends where a word ends and needs no word rule. When the hypothesis
    has no more words than that, ``<eos>`` comes with them, as in FBK's agent,
    which then ends the translation before the input ends.

    Args:
        tokens: the winning hypothesis, forced prefix first, ``<eos>`` last.
        prefix_len: forced tokens at the start of ``tokens``.
        pieces: the target token list (id -> piece).
        source_words: :func:`source_words_fixed` or :func:`source_words_ctc` of the input so far.
        written_words: the words wait-k has written so far (see :func:`waitk_words`).
        k: the lag in words.
    """
    if not 0 <= prefix_len <= len(tokens):
        raise ValueError(f"prefix_len must be in [0, {len(tokens)}], got {prefix_len}")
    n = waitk_words(source_words, written_words, k)
    return first_words(tokens[prefix_len:], pieces, n) if n > 0 else []

