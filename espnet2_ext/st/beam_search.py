"""What FBK's decoding has and ESPnet's beam search lacks, as pieces that plug into it."""

from typing import Any, List, Tuple

import torch
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
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


class UtteranceBatchBeamSearch(torch.nn.Module):
    """Beam search over several utterances at once: FBK's (fairseq's) decoding on ESPnet's decoder.

    ESPnet's ``BatchBeamSearch`` batches the hypotheses of one utterance; on a CPU
    its per-step overhead then dominates, and batching utterances only helps the
    encoder. Here the decoder scores all utterances' hypotheses in one
    ``forward_one_step`` call, with a memory mask so padded encoder frames are
    never attended to: an utterance gets the same hypotheses alone or in a batch.

    Per utterance it is ESPnet's ``BatchBeamSearch`` with full scorers decoder +
    :class:`NoRepeatNGramScorer` (weights 1), a ``hyp_primer`` (<sos>, language
    tag), ``normalize_length`` and a constant maximum length, and with fairseq's
    stopping rule: stop once ``beam_size`` hypotheses have ended. As in ESPnet,
    hypotheses still running at the maximum length get <eos> appended, and the
    n-best are sorted by score / (length - 1).

    Args:
        decoder: an ESPnet decoder with ``forward_one_step`` (Transformer).
        vocab_size, sos, eos: as in ESPnet's beam search.
        primer: the tokens every hypothesis starts with.
        beam_size: hypotheses kept per utterance.
        no_repeat_ngram_size: forbid repeating n-grams of this size (0: off).
    """

    def __init__(
        self,
        decoder: torch.nn.Module,
        vocab_size: int,
        sos: int,
        eos: int,
        primer: List[int],
        beam_size: int,
        no_repeat_ngram_size: int = 0,
    ):
        super().__init__()
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.decoder = decoder
        self.vocab_size = vocab_size
        self.sos = sos
        self.eos = eos
        self.primer = list(primer)
        self.beam_size = beam_size
        self.no_repeat = NoRepeatNGramScorer(no_repeat_ngram_size, vocab_size) if no_repeat_ngram_size > 0 else None

    @torch.no_grad()
    def forward(
        self, memory: torch.Tensor, memory_lengths: torch.Tensor, maxlens: List[int]
    ) -> List[List[Tuple[List[int], float]]]:
        """N-best ``(token ids incl. primer and <eos>, score)`` per utterance, best first.

        Args:
            memory: encoder states (B, T, D), padded.
            memory_lengths: valid states per utterance (B,).
            maxlens: most tokens generated per utterance (ESPnet's ``maxlen``).
        """
        batch, beam, vocab = memory.size(0), self.beam_size, self.vocab_size
        device = memory.device
        ended: List[List[Tuple[List[int], float]]] = [[] for _ in range(batch)]
        # The running state covers the utterances still searching, beam rows each.
        utts = torch.arange(batch, device=device)
        ys = torch.tensor(self.primer, device=device).repeat(batch * beam, 1)
        scores = torch.full((batch, beam), float("-inf"), dtype=memory.dtype, device=device)
        scores[:, 0] = 0.0  # one initial hypothesis per utterance
        scores = scores.view(-1)
        rows_memory = memory.repeat_interleave(beam, dim=0)
        rows_mask = (torch.arange(memory.size(1), device=device)[None, :] < memory_lengths[:, None].to(device))
        rows_mask = rows_mask.repeat_interleave(beam, dim=0).unsqueeze(1)
        limits = torch.tensor(maxlens, device=device)
        cache = None
        step = 0
        while utts.numel() > 0:
            ys_mask = subsequent_mask(ys.size(1), device=device).unsqueeze(0)
            logp, cache = self.decoder.forward_one_step(ys, ys_mask, rows_memory, rows_mask, cache=cache)
            weighted = logp.to(scores.dtype) + scores.unsqueeze(1)
            if self.no_repeat is not None:
                weighted = weighted + self.no_repeat.batch_score(ys, [], rows_memory)[0].to(scores.dtype)
            top_scores, top_ids = weighted.view(utts.numel(), beam * vocab).topk(beam, dim=1)
            rows = (torch.arange(utts.numel(), device=device) * beam).unsqueeze(1) + top_ids // vocab
            rows = rows.view(-1)
            ys = torch.cat([ys[rows], (top_ids % vocab).view(-1, 1)], dim=1)
            scores = top_scores.view(-1)
            cache = [layer[rows] for layer in cache]

            last = (limits[utts] - 1 == step).repeat_interleave(beam)
            ended_rows = (ys[:, -1] == self.eos) | last
            for row in torch.nonzero(ended_rows & torch.isfinite(scores)).flatten().tolist():
                yseq = ys[row].tolist() + ([self.eos] if bool(last[row]) else [])
                ended[int(utts[row // beam])].append((yseq, float(scores[row])))
            scores = scores.masked_fill(ended_rows, float("-inf"))

            counts = torch.tensor([len(ended[int(u)]) for u in utts], device=device)
            running = torch.isfinite(scores.view(-1, beam)).any(1)
            keep = running & (counts < beam) & ~last.view(-1, beam)[:, 0]
            if not bool(keep.all()):
                keep_rows = keep.repeat_interleave(beam)
                utts, ys, scores = utts[keep], ys[keep_rows], scores[keep_rows]
                rows_memory, rows_mask = rows_memory[keep_rows], rows_mask[keep_rows]
                cache = [layer[keep_rows] for layer in cache]
            step += 1
        return [sorted(hyps, key=lambda h: h[1] / (len(h[0]) - 1), reverse=True) for hyps in ended]
