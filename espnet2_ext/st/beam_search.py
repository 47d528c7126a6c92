"""What FBK's decoding has and ESPnet's beam search lacks, as pieces that plug into it."""

from typing import Any, List, Optional, Tuple

import torch
from espnet.nets.batch_beam_search import BatchBeamSearch, BatchHypothesis
from espnet.nets.beam_search import Hypothesis
from espnet.nets.scorer_interface import BatchScorerInterface


class NoRepeatNGramScorer(BatchScorerInterface):
    """Forbid any token that would repeat an n-gram already in the hypothesis.

    A full scorer returning 0 or -inf per vocabulary entry, given weight 1 in
    ESPnet's beam search (fairseq's ``--no-repeat-ngram-size``).
    """

    def __init__(self, ngram_size: int, vocab_size: int):
        if ngram_size < 1:
            raise ValueError(f"no_repeat_ngram_size must be >= 1, got {ngram_size}")
        self.ngram_size = ngram_size
        self.vocab_size = vocab_size

    def score(self, y: torch.Tensor, state: Any, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        scores, _ = self.batch_score(y.unsqueeze(0), [state], x.unsqueeze(0))
        return scores[0], state

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Any]]:
        """Scores (n_hyps, V): -inf where the next token would close a seen n-gram."""
        scores = torch.zeros(ys.size(0), self.vocab_size, device=ys.device)
        n = self.ngram_size
        if ys.size(1) < n:
            return scores, states
        windows = ys.unfold(1, n, 1)  # (n_hyps, L - n + 1, n): every n-gram so far
        prefix = ys[:, ys.size(1) - n + 1 :]  # the last n - 1 tokens
        seen = (windows[:, :, : n - 1] == prefix.unsqueeze(1)).all(-1)
        hyp, window = torch.nonzero(seen, as_tuple=True)
        scores[hyp, windows[hyp, window, n - 1]] = float("-inf")
        return scores, states


class EarlyStopBatchBeamSearch(BatchBeamSearch):
    """ESPnet's batch beam search that stops once ``beam_size`` hypotheses ended.

    ESPnet otherwise runs to the maximum length (or uses a heuristic end
    detection tied to the encoder length, too short for compressed encoder
    states); fairseq, whose search FBK used, stops here.
    """

    def post_process(
        self,
        i: int,
        maxlen: int,
        minlen: int,
        maxlenratio: float,
        running_hyps: BatchHypothesis,
        ended_hyps: List[Hypothesis],
    ) -> BatchHypothesis:
        running = super().post_process(i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps)
        if len(ended_hyps) >= self.beam_size:
            return BatchHypothesis()
        return running
