"""Beam searches over batches of utterances: fairseq's rules (FBK's decoding) or ESPnet's.

Both score the hypotheses of every utterance of a batch in one decoder step
(:mod:`espnet2_ext.st.incremental_decoding`), with padded encoder states masked,
so an utterance gets the same hypotheses alone or in any batch. Both return, per
utterance, :class:`Hypothesis` tuples best first: token ids starting with <sos>
(which fairseq calls ``</s>``) and ending with <eos>, the score, and, when asked
of :class:`FairseqBeamSearch`, the cross-attention along the hypothesis' path
(what FBK's simultaneous policies read).

- :class:`FairseqBeamSearch` (default): FBK decodes with fairseq's
  ``SequenceGenerator``, and these are its rules.
- :class:`UtteranceBatchBeamSearch`: ESPnet's ``BatchBeamSearch`` with a
  language-tag primer and fairseq's stopping rule.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from espnet.nets.scorer_interface import BatchScorerInterface

from espnet2_ext.st import SEARCHES  # noqa: F401 (re-exported)
from espnet2_ext.st.incremental_decoding import IncrementalDecoder, incremental


class Hypothesis(NamedTuple):
    """A finished hypothesis: ``<sos> + tokens + <eos>``, its score, and (when asked)
    the cross-attention of one decoder layer averaged over heads along its path, shape
    (valid encoder states, tokens after <sos> incl. <eos>): column t is the attention of
    the query that predicted token t + 1 (fairseq's ``hypo["attention"]``)."""

    tokens: list[int]
    score: float
    attention: torch.Tensor | None = None


Hypotheses = list[list[Hypothesis]]


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

    def score(self, y: torch.Tensor, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        scores, _ = self.batch_score(y.unsqueeze(0), [state], x.unsqueeze(0))
        return scores[0], state

    def batch_score(
        self, ys: torch.Tensor, states: list[Any], xs: torch.Tensor
    ) -> tuple[torch.Tensor, list[Any]]:
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


class _BatchedSearch(torch.nn.Module):
    """What both searches share: the decoder, the tokens never emitted, the n-gram rule."""

    def __init__(
        self,
        decoder: torch.nn.Module,
        vocab_size: int,
        sos: int,
        eos: int,
        beam_size: int,
        no_repeat_ngram_size: int = 0,
        never: Sequence[int] = (),
    ):
        super().__init__()
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.decoder = decoder
        self.vocab_size = vocab_size
        self.sos = sos
        self.eos = eos
        self.beam_size = beam_size
        self.never = list(never)
        self.no_repeat = NoRepeatNGramScorer(no_repeat_ngram_size, vocab_size) if no_repeat_ngram_size > 0 else None

    def _ban(self, logp: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """-inf for NaNs, never-emitted tokens and tokens closing a seen n-gram."""
        logp = logp.masked_fill(torch.isnan(logp), float("-inf"))
        if self.never:
            logp[:, self.never] = float("-inf")
        if self.no_repeat is not None:
            logp = logp + self.no_repeat.batch_score(ys, [], ys)[0]
        return logp


class FairseqBeamSearch(_BatchedSearch):
    """fairseq's ``SequenceGenerator`` (beam search, as FBK decodes) over utterance batches.

    Its rules, which decide FBK's n-best:

    - decoding starts from <sos> (fairseq's ``</s>``); the ``prefix`` tokens (the
      language tag) are forced one per step, and their log-probabilities count
      in the score; without a prefix, <eos> is forbidden at the first step
      (``min_len`` 1);
    - each step takes the best ``2 * beam`` candidates of all the beam's
      extensions (at the first step, of the first hypothesis only); the <eos>
      candidates among the best ``beam`` end their hypotheses, scored by the sum
      of log-probabilities (the <eos> included) over the number of tokens after
      <sos> (prefix and <eos> included); the best ``beam`` other candidates go
      on, so the beam stays full;
    - an utterance is done when ``beam`` hypotheses have ended or when it reaches
      its maximum length, where only <eos> may follow (``maxlen`` counts the
      prefix);
    - ``never`` tokens (fairseq's ``<pad>``, our ``<blank>``) are never chosen.

    fairseq sets the maximum length from the padded length of the whole batch;
    here it is each utterance's own (the same with ``maxlen_a`` 0, FBK's setting).

    A call may force its own prefix per utterance (``prefixes``: the language tag
    and the tokens a simultaneous policy has committed), and record the
    cross-attention of decoder layer ``attention_layer`` along each hypothesis'
    path (:class:`Hypothesis`), as FBK's ``SequenceGenerator`` fork does for its
    simultaneous agents.

    A simultaneous agent forces every token it has committed, call after call, so
    the forced tokens that every utterance of the call has (up to the shortest
    prefix, the lowest ``maxlens`` and the first forced <eos>) are scored in one
    teacher-forced decoder pass (``prime_prefix``) rather than one step each: while
    forcing, only the first hypothesis of an utterance lives (the others score
    -inf), so the pass runs on one row per utterance and the search goes on from
    there as if it had stepped.

    Args:
        decoder: a decoder :func:`~espnet2_ext.st.incremental_decoding.incremental` can step.
        vocab_size, sos, eos: the target vocabulary.
        prefix: tokens forced after <sos> (the language tag, or none).
        beam_size: hypotheses per utterance (at most ``vocab_size - 1``, as in fairseq).
        no_repeat_ngram_size: forbid repeating n-grams of this size (0: off).
        never: token ids never emitted.
        prime_prefix: score the forced tokens shared by the call in one decoder pass
            (False: one step per token, as fairseq does; the same hypotheses).
    """

    def __init__(
        self,
        decoder: torch.nn.Module,
        vocab_size: int,
        sos: int,
        eos: int,
        prefix: Sequence[int],
        beam_size: int,
        no_repeat_ngram_size: int = 0,
        never: Sequence[int] = (),
        prime_prefix: bool = True,
    ):
        super().__init__(decoder, vocab_size, sos, eos, min(beam_size, vocab_size - 1), no_repeat_ngram_size, never)
        self.prefix = list(prefix)
        self.prime_prefix = prime_prefix

    @torch.no_grad()
    def forward(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        maxlens: Sequence[int],
        prefixes: Sequence[Sequence[int]] | None = None,
        attention_layer: int | None = None,
    ) -> Hypotheses:
        """N-best :class:`Hypothesis` per utterance, best first.

        Args:
            memory: encoder states (B, T, D), padded.
            memory_lengths: valid states per utterance (B,).
            maxlens: most tokens per utterance after <sos>, not counting <eos>.
            prefixes: tokens forced after <sos>, per utterance (default: ``prefix`` for each).
            attention_layer: record this decoder layer's cross-attention (0-based).
        """
        batch, beam, vocab = memory.size(0), self.beam_size, self.vocab_size
        device = memory.device
        decoder = incremental(self.decoder)
        finalized: Hypotheses = [[] for _ in range(batch)]
        utts = torch.arange(batch, device=device)  # the utterances still searching
        limits = torch.tensor(list(maxlens), device=device)
        forced, forced_len = self._forced(prefixes, batch, device)
        step = self._shared_forced_steps(forced, forced_len, limits) if self.prime_prefix else 0
        if step > 0:  # one row per utterance through the forced tokens all utterances have
            state = decoder.start(memory, memory_lengths, 1)
            ys, scores, attention, state = self._prime(decoder, state, forced[:, :step], attention_layer)
        else:
            state = decoder.start(memory, memory_lengths, beam)
            ys = torch.full((batch * beam, 1), self.sos, dtype=torch.long, device=device)
            scores = torch.zeros(batch * beam, device=device)
            attention = None
        if attention is None:  # (rows, steps, T); no steps recorded without attention_layer
            attention = memory.new_zeros(batch * beam, 0, memory.size(1), dtype=torch.float32)
        while utts.numel() > 0:
            logp, state, step_attention = decoder.step_attending(ys, state, attention_layer)
            logp = self._ban(logp, ys)
            at_limit = (limits[utts] <= step).repeat_interleave(beam)
            logp[at_limit] = self._only(logp[at_limit], self.eos)
            forcing = (forced_len[utts] > step).repeat_interleave(beam) & ~at_limit
            if bool(forcing.any()):
                tokens = forced[utts, min(step, forced.size(1) - 1)].repeat_interleave(beam)
                logp[forcing] = self._only_each(logp[forcing], tokens[forcing])
            if step == 0:
                logp[(forced_len[utts] == 0).repeat_interleave(beam), self.eos] = float("-inf")
            if step_attention is not None:
                attention = torch.cat([attention, step_attention.unsqueeze(1)], dim=1)
            active = utts.numel()
            if step == 0:  # every hypothesis is <sos> alone: extend the first
                candidates = logp.view(active, beam, vocab)[:, 0]
            else:
                candidates = (logp + scores.unsqueeze(1)).view(active, beam * vocab)
            cand_scores, cand_ids = candidates.topk(min(2 * beam, candidates.size(1) - 1), dim=1)
            cand_rows = torch.arange(active, device=device).unsqueeze(1) * beam + cand_ids // vocab
            cand_tokens = cand_ids % vocab
            ends = (cand_tokens == self.eos) & (cand_scores != float("-inf"))

            for u, c in torch.nonzero(ends[:, :beam]).tolist():
                utt, row = int(utts[u]), int(cand_rows[u, c])
                hyps = finalized[utt]
                if len(hyps) < beam:
                    path = attention[row, :, : int(memory_lengths[utt])].T if attention_layer is not None else None
                    hyps.append(Hypothesis(ys[row].tolist() + [self.eos], float(cand_scores[u, c]) / (step + 1), path))
            counts = torch.tensor([len(finalized[u]) for u in utts.tolist()], device=device)
            keep = (counts < beam) & (limits[utts] > step)

            # the first `beam` candidates that do not end go on (fairseq's active_hypos)
            order = ends.long() * ends.size(1) + torch.arange(ends.size(1), device=device)
            chosen = order.topk(beam, dim=1, largest=False).indices[keep]
            rows = cand_rows[keep].gather(1, chosen).view(-1)
            ys = torch.cat([ys[rows], cand_tokens[keep].gather(1, chosen).view(-1, 1)], dim=1)
            scores = cand_scores[keep].gather(1, chosen).view(-1)
            attention = attention[rows]
            kept = torch.nonzero(keep).flatten()
            state = state.select(rows, None if bool(keep.all()) else kept)
            utts = utts[kept]
            step += 1
        return [sorted(hyps, key=lambda h: h.score, reverse=True) for hyps in finalized]

    def _forced(
        self, prefixes: Sequence[Sequence[int]] | None, batch: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The forced tokens (B, longest, padded) and how many each utterance has (B,)."""
        if prefixes is None:
            prefixes = [self.prefix] * batch
        if len(prefixes) != batch:
            raise ValueError(f"{len(prefixes)} prefixes for {batch} utterances")
        longest = max(1, max(len(p) for p in prefixes))
        forced = torch.zeros(batch, longest, dtype=torch.long, device=device)
        for u, prefix in enumerate(prefixes):
            forced[u, : len(prefix)] = torch.tensor(list(prefix), dtype=torch.long)
        return forced, torch.tensor([len(p) for p in prefixes], device=device)

    def _shared_forced_steps(self, forced: torch.Tensor, forced_len: torch.Tensor, limits: torch.Tensor) -> int:
        """How many steps force a token in every utterance: up to the shortest prefix or
        limit, and before any forced <eos> (which ends a hypothesis: the loop's work)."""
        positions = torch.arange(forced.size(1), device=forced.device)
        eos = (forced == self.eos) & (positions < forced_len.unsqueeze(1))
        first_eos = torch.where(eos, positions, forced.size(1)).min(1).values
        return int(torch.minimum(torch.minimum(forced_len, limits), first_eos).min())

    def _prime(
        self, decoder: IncrementalDecoder, state: Any, forced: torch.Tensor, attention_layer: int | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Any]:
        """ys, scores, attention (None without ``attention_layer``) and state of the search
        after the forced tokens ``forced`` (B, k), as k forced steps leave them, from a
        state of one row per utterance.

        Stepping, the first step extends the first hypothesis only, and each later one
        its one finite candidate, so the first row of an utterance holds the prefix and
        the sum of its tokens' log-probabilities, after the same bans as a step applies
        (a banned forced token kills the hypothesis), and the other rows score -inf.
        """
        batch, steps = forced.shape
        beam = self.beam_size
        ys = torch.cat([forced.new_full((batch, 1), self.sos), forced], dim=1)  # (B, k + 1)
        logp, state, attention = decoder.prime(ys[:, :steps], state, attention_layer)
        score = logp.new_zeros(batch)
        for step in range(steps):  # summed in the order the steps add them
            banned = self._ban(logp[:, step], ys[:, : step + 1])
            score = score + banned.gather(1, ys[:, step + 1 : step + 2]).squeeze(1)
        scores = torch.full((batch, beam), float("-inf"), device=score.device)
        scores[:, 0] = score
        rows = torch.arange(batch, device=ys.device).repeat_interleave(beam)
        attention = None if attention is None else attention[rows]
        return ys[rows], scores.view(-1), attention, state.select(rows)

    @staticmethod
    def _only(logp: torch.Tensor, token: int) -> torch.Tensor:
        """Rows of ``logp`` with -inf everywhere but ``token``."""
        forced = torch.full_like(logp, float("-inf"))
        forced[:, token] = logp[:, token]
        return forced

    @staticmethod
    def _only_each(logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Rows of ``logp`` with -inf everywhere but each row's own token of ``tokens`` (N,)."""
        forced = torch.full_like(logp, float("-inf"))
        rows = torch.arange(logp.size(0), device=logp.device)
        forced[rows, tokens] = logp[rows, tokens]
        return forced


class UtteranceBatchBeamSearch(_BatchedSearch):
    """ESPnet's beam search over several utterances at once.

    Per utterance it is ESPnet's ``BatchBeamSearch`` with full scorers decoder +
    :class:`NoRepeatNGramScorer` (weights 1), a ``hyp_primer`` (<sos>, language
    tag), ``normalize_length`` and a constant maximum length, and with fairseq's
    stopping rule: stop once ``beam_size`` hypotheses have ended. As in ESPnet,
    the beam shrinks as hypotheses end, hypotheses still running at the maximum
    length get <eos> appended (unscored), and the n-best are sorted by
    score / (length - 1).

    Args:
        decoder: a decoder :func:`~espnet2_ext.st.incremental_decoding.incremental` can step.
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
        primer: Sequence[int],
        beam_size: int,
        no_repeat_ngram_size: int = 0,
    ):
        super().__init__(decoder, vocab_size, sos, eos, beam_size, no_repeat_ngram_size)
        self.primer = list(primer)

    @torch.no_grad()
    def forward(self, memory: torch.Tensor, memory_lengths: torch.Tensor, maxlens: Sequence[int]) -> Hypotheses:
        """N-best :class:`Hypothesis` (token ids incl. primer and <eos>, score) per utterance, best first.

        Args:
            memory: encoder states (B, T, D), padded.
            memory_lengths: valid states per utterance (B,).
            maxlens: most tokens generated per utterance (ESPnet's ``maxlen``).
        """
        batch, beam, vocab = memory.size(0), self.beam_size, self.vocab_size
        device = memory.device
        decoder = incremental(self.decoder)
        state = decoder.start(memory, memory_lengths, beam)
        ended: Hypotheses = [[] for _ in range(batch)]
        utts = torch.arange(batch, device=device)
        ys = torch.tensor(self.primer, device=device).repeat(batch * beam, 1)
        scores = torch.full((batch, beam), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one initial hypothesis per utterance
        scores = scores.view(-1)
        limits = torch.tensor(list(maxlens), device=device)
        step = 0
        while utts.numel() > 0:
            logp, state = decoder.step(ys, state)
            weighted = self._ban(logp, ys) + scores.unsqueeze(1)
            top_scores, top_ids = weighted.view(utts.numel(), beam * vocab).topk(beam, dim=1)
            rows = (torch.arange(utts.numel(), device=device) * beam).unsqueeze(1) + top_ids // vocab
            rows = rows.view(-1)
            ys = torch.cat([ys[rows], (top_ids % vocab).view(-1, 1)], dim=1)
            scores = top_scores.view(-1)
            state = state.select(rows)

            last = (limits[utts] - 1 == step).repeat_interleave(beam)
            ended_rows = (ys[:, -1] == self.eos) | last
            for row in torch.nonzero(ended_rows & torch.isfinite(scores)).flatten().tolist():
                yseq = ys[row].tolist() + ([self.eos] if bool(last[row]) else [])
                ended[int(utts[row // beam])].append(Hypothesis(yseq, float(scores[row])))
            scores = scores.masked_fill(ended_rows, float("-inf"))

            counts = torch.tensor([len(ended[int(u)]) for u in utts], device=device)
            running = torch.isfinite(scores.view(-1, beam)).any(1)
            keep = running & (counts < beam) & ~last.view(-1, beam)[:, 0]
            if not bool(keep.all()):
                keep_rows = keep.repeat_interleave(beam)
                kept = torch.nonzero(keep).flatten()
                ys, scores = ys[keep_rows], scores[keep_rows]
                state = state.select(torch.nonzero(keep_rows).flatten(), kept)
                utts = utts[kept]
            step += 1
        return [sorted(hyps, key=lambda h: h.score / (len(h.tokens) - 1), reverse=True) for hyps in ended]
