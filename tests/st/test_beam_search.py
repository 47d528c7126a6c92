"""What FBK's decoding adds to ESPnet's beam search."""

import math

import pytest
import torch
from espnet.nets.batch_beam_search import BatchBeamSearch, BatchHypothesis
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet2_ext.asr.decoder.fbk_transformer_decoder import FBKDecoderState, FBKTransformerDecoder
from espnet2_ext.st.beam_search import FairseqBeamSearch, NoRepeatNGramScorer, UtteranceBatchBeamSearch
from espnet2_ext.st.incremental_decoding import ESPnetDecoderSteps, incremental


def banned(scorer, prefix):
    scores, _ = scorer.batch_score(torch.tensor([prefix]), [None], torch.zeros(1, 1, 1))
    return sorted(torch.nonzero(scores[0] == -math.inf).flatten().tolist())


def test_no_repeat_ngram_bans_only_tokens_closing_a_seen_ngram():
    trigram = NoRepeatNGramScorer(3, vocab_size=10)
    assert banned(trigram, [1, 2, 3, 1, 2]) == [3]
    assert banned(trigram, [1, 2, 3, 4, 1, 2, 5, 1, 2]) == [3, 5]
    assert banned(trigram, [1, 2, 3, 4]) == []
    assert banned(trigram, [7, 7]) == []
    bigram = NoRepeatNGramScorer(2, vocab_size=10)
    assert banned(bigram, [5, 6, 5]) == [6]
    assert banned(bigram, [7, 7]) == [7]


def test_no_repeat_ngram_scores_each_hypothesis_separately():
    scorer = NoRepeatNGramScorer(2, vocab_size=6)
    ys = torch.tensor([[1, 2, 1], [3, 4, 5]])
    scores, _ = scorer.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    assert torch.isinf(scores[0, 2]) and torch.isfinite(scores[0]).sum() == 5
    assert torch.isfinite(scores[1]).all()
    single, _ = scorer.score(ys[0], None, torch.zeros(1, 1))
    assert torch.equal(single, scores[0])


# --------------------------------------------------------------------------- utterance batches


class _EarlyStopBatchBeamSearch(BatchBeamSearch):
    """The reference: ESPnet's per-utterance search with fairseq's stopping rule added."""

    def post_process(self, i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps):
        running = super().post_process(i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps)
        return BatchHypothesis() if len(ended_hyps) >= self.beam_size else running


def espnet_search(decoder, memory, primer, beam, ngram, maxlen, vocab):
    scorers = {"decoder": decoder}
    if ngram:
        scorers["no_repeat_ngram"] = NoRepeatNGramScorer(ngram, vocab)
    search = _EarlyStopBatchBeamSearch(
        scorers=scorers, weights={k: 1.0 for k in scorers}, beam_size=beam, vocab_size=vocab,
        sos=vocab - 1, eos=vocab - 1, hyp_primer=primer, normalize_length=True,
    )
    with torch.no_grad():
        hyps = search(memory, maxlenratio=-float(maxlen))
    return [(h.yseq.tolist(), float(h.score)) for h in hyps]


@pytest.mark.parametrize("beam, ngram", [(1, 0), (3, 2), (5, 3)])
def test_utterance_batches_search_as_espnet_searches_each_utterance(beam, ngram):
    vocab, dim = 12, 16
    torch.manual_seed(beam)
    decoder = TransformerDecoder(vocab, dim, attention_heads=2, linear_units=32, num_blocks=2).eval()
    with torch.no_grad():  # make <eos> likely enough that searches end at different steps
        decoder.output_layer.bias[vocab - 1] += 1.5
    lengths = [7, 3, 11, 5, 9]
    memory = torch.randn(len(lengths), max(lengths), dim) * 10  # padding made of large noise
    maxlens = [6, 9, 4, 12, 8]
    primer = [vocab - 1, 2]
    search = UtteranceBatchBeamSearch(decoder, vocab, vocab - 1, vocab - 1, primer, beam, ngram)
    batched = search(memory, torch.tensor(lengths), maxlens)
    for i, (length, maxlen) in enumerate(zip(lengths, maxlens)):
        reference = espnet_search(decoder, memory[i, :length], primer, beam, ngram, maxlen, vocab)
        assert [h.tokens for h in batched[i]] == [yseq for yseq, _ in reference], i
        assert [h.score for h in batched[i]] == pytest.approx([s for _, s in reference], abs=1e-4)
        alone = search(memory[i : i + 1, :length], torch.tensor([length]), [maxlen])[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batched[i]]
    assert any(len(h.tokens) - len(primer) < maxlen for hyps in batched for h in hyps), "some end early"


def test_fairseq_search_over_espnet_decoder_records_attention_and_forces_prefixes():
    """ESPnet's decoder steps too: the attention along each path is what teacher forcing gives,
    and each utterance starts with its own forced prefix."""
    vocab, dim = 12, 16
    torch.manual_seed(0)
    decoder = TransformerDecoder(vocab, dim, attention_heads=2, linear_units=32, num_blocks=2).eval()
    lengths = [7, 4]
    memory = torch.randn(len(lengths), max(lengths), dim)
    prefixes = [[3, 5], [4]]
    search = FairseqBeamSearch(decoder, vocab, vocab - 1, vocab - 1, prefix=[], beam_size=3)
    nbests = search(memory, torch.tensor(lengths), [6, 6], prefixes=prefixes, attention_layer=1)
    for b, hyps in enumerate(nbests):
        for hyp in hyps:
            assert hyp.tokens[1 : 1 + len(prefixes[b])] == prefixes[b]
            ys = torch.tensor([hyp.tokens[:-1]])
            with torch.no_grad():
                decoder(memory[b : b + 1, : lengths[b]], torch.tensor([lengths[b]]), ys, torch.tensor([ys.size(1)]))
            expected = decoder.decoders[1].src_attn.attn[0].mean(0).T  # (T, tokens)
            assert hyp.attention.shape == (lengths[b], len(hyp.tokens) - 1)
            assert torch.allclose(hyp.attention, expected, atol=1e-5)


# --------------------------------------------------------------------------- forced prefixes in one pass

VOCAB, DIM = 20, 16
EOS = VOCAB - 1  # also <sos>
LENGTHS = [7, 3, 11, 5]  # encoder states per utterance: padded in a batch


def small_decoder(kind: str) -> torch.nn.Module:
    """2 layers of each kind, <eos> likely enough that hypotheses end at several lengths."""
    torch.manual_seed(3)
    if kind == "fbk":
        decoder = FBKTransformerDecoder(VOCAB, DIM, attention_heads=2, linear_units=32, num_blocks=2)
        with torch.no_grad():
            decoder.output_layer.weight[EOS] *= 2.0
    else:
        decoder = TransformerDecoder(VOCAB, DIM, attention_heads=2, linear_units=32, num_blocks=2)
        with torch.no_grad():
            decoder.output_layer.bias[EOS] += 1.5
    return decoder.eval()


def padded_memory(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Encoder states (B, T, D) with large noise as padding: it must never count."""
    generator = torch.Generator().manual_seed(seed)
    memory = torch.randn(len(lengths), max(lengths), DIM, generator=generator) * 10
    for b, length in enumerate(lengths):
        memory[b, :length] /= 10
    return memory


def cached(state) -> list[torch.Tensor]:
    """The self-attention cache of either decoder's state."""
    return state.self_keys + state.self_values if isinstance(state, FBKDecoderState) else state.cache


@pytest.mark.parametrize("kind", ["fbk", "espnet"])
@pytest.mark.parametrize("layer", [None, 0, 1])
def test_prime_gives_what_stepping_gives(kind, layer):
    """Log-probabilities and attention at every position, and a state from which the next
    step is the same, for two rows per utterance (different prefixes) and padded memory."""
    decoder = incremental(small_decoder(kind))
    memory, lengths = padded_memory(LENGTHS), torch.tensor(LENGTHS)
    beam, length = 2, 6
    ys = torch.randint(0, VOCAB - 1, (len(LENGTHS) * beam, length + 1), generator=torch.Generator().manual_seed(1))
    ys[:, 0] = EOS
    with torch.no_grad():
        start = decoder.start(memory, lengths, beam)
        primed_logp, primed, primed_attention = decoder.prime(ys[:, :length], start, layer)
        stepped = decoder.start(memory, lengths, beam)
        logps, attentions = [], []
        for i in range(1, length + 1):
            logp, stepped, attention = decoder.step_attending(ys[:, :i], stepped, layer)
            logps.append(logp)
            attentions.append(attention)
        assert primed_logp.shape == (len(ys), length, VOCAB) and primed_logp.dtype == torch.float32
        assert torch.allclose(primed_logp, torch.stack(logps, 1), atol=1e-5)
        if layer is None:
            assert primed_attention is None
        else:
            assert primed_attention.shape == (len(ys), length, max(LENGTHS))
            assert torch.allclose(primed_attention, torch.stack(attentions, 1), atol=1e-5)
        for a, b in zip(cached(primed), cached(stepped), strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
        next_primed = decoder.step_attending(ys, primed, layer)
        next_stepped = decoder.step_attending(ys, stepped, layer)
        assert torch.allclose(next_primed[0], next_stepped[0], atol=1e-5)
        for b, valid in enumerate(LENGTHS):  # an utterance alone: as in the padded batch
            alone = decoder.start(memory[b : b + 1, :valid], lengths[b : b + 1], beam)
            alone_logp, _, alone_attention = decoder.prime(ys[b * beam : (b + 1) * beam, :length], alone, layer)
            assert torch.allclose(alone_logp, primed_logp[b * beam : (b + 1) * beam], atol=1e-5)
            if layer is not None:
                batched = primed_attention[b * beam : (b + 1) * beam]
                assert torch.allclose(alone_attention, batched[:, :, :valid], atol=1e-5)
                assert not batched[:, :, valid:].any()


@pytest.mark.parametrize("kind", ["fbk", "espnet"])
def test_prime_needs_a_fresh_state(kind):
    decoder = incremental(small_decoder(kind))
    memory, lengths = padded_memory([3]), torch.tensor([3])
    ys = torch.full((1, 2), EOS)
    with torch.no_grad():
        _, state = decoder.step(ys[:, :1], decoder.start(memory, lengths, 1))
        with pytest.raises(ValueError, match="seen no token; this one has seen 1"):
            decoder.prime(ys, state, None)


def primed_lengths(monkeypatch, kind) -> list[int]:
    """Records the prefix length of every ``prime`` call of the decoder kind."""
    cls = FBKTransformerDecoder if kind == "fbk" else ESPnetDecoderSteps
    calls, prime = [], cls.prime

    def recording(self, ys, state, layer):
        calls.append(ys.size(1))
        return prime(self, ys, state, layer)

    monkeypatch.setattr(cls, "prime", recording)
    return calls


def search_both_ways(decoder, memory, lengths, maxlens, prefixes, ngram=0, never=()):
    """The n-best of one call, priming the shared forced tokens and stepping through them."""
    nbests = []
    for prime_prefix in (True, False):
        search = FairseqBeamSearch(decoder, VOCAB, EOS, EOS, prefix=[], beam_size=3, no_repeat_ngram_size=ngram,
                                   never=never, prime_prefix=prime_prefix)
        nbests.append(search(memory, lengths, maxlens, prefixes=prefixes, attention_layer=1))
    return nbests


def assert_same_nbests(ours, theirs):
    assert len(ours) == len(theirs)
    for b, (hyps, expected) in enumerate(zip(ours, theirs)):
        assert [h.tokens for h in hyps] == [h.tokens for h in expected], b
        assert [h.score for h in hyps] == pytest.approx([h.score for h in expected], abs=1e-5), b
        for hyp, other in zip(hyps, expected):
            assert hyp.attention.shape == other.attention.shape
            assert torch.allclose(hyp.attention, other.attention, atol=1e-5), b


@pytest.mark.parametrize("kind", ["fbk", "espnet"])
def test_primed_prefixes_search_as_stepped_ones(kind, monkeypatch):
    """Prefixes of different lengths in one call, one longer than its maximum length and one
    with a forced <eos>: the same n-best either way, and alone as in the batch."""
    decoder = small_decoder(kind)
    lengths = [7, 3, 11, 5, 9]
    memory = padded_memory(lengths)
    prefixes = [[3, 5, 7, 2], [4, 8], [6, 1, 2, 9, 10, 11, 12, 13], [3, 5, EOS, 7], [2, 2, 4, 6, 8, 10]]
    maxlens = [7, 6, 5, 8, 7]  # utterance 2 reaches its limit inside its prefix
    calls = primed_lengths(monkeypatch, kind)
    primed, stepped = search_both_ways(decoder, memory, torch.tensor(lengths), maxlens, prefixes, ngram=2, never=[0])
    assert calls == [2]  # the shortest prefix; the rest of the longer ones is stepped
    assert_same_nbests(primed, stepped)
    assert [h.tokens for h in primed[3]] == [[EOS, 3, 5, EOS]]  # the forced <eos> ends the only hypothesis
    assert {len(h.tokens) for hyps in primed for h in hyps} >= {4, 7, 8}, "hypotheses end at several lengths"
    primed_alone = [4, 2, 5, 2, 6]  # the prefix, up to the limit or the forced <eos>
    for b, (prefix, primed_length) in enumerate(zip(prefixes, primed_alone)):
        calls.clear()
        alone, _ = search_both_ways(decoder, memory[b : b + 1, : lengths[b]], torch.tensor(lengths[b : b + 1]),
                                    maxlens[b : b + 1], [prefix], ngram=2, never=[0])
        assert calls == [primed_length]
        assert_same_nbests(alone, primed[b : b + 1])
    calls.clear()
    with_empty, stepped = search_both_ways(decoder, memory, torch.tensor(lengths), maxlens, [[]] + prefixes[1:])
    assert calls == []  # an empty prefix: nothing shared to prime
    assert_same_nbests(with_empty, stepped)
    assert all(EOS not in h.tokens[1:-1] for h in with_empty[0]) and len(with_empty[0]) == 3


@pytest.mark.parametrize("kind", ["fbk", "espnet"])
def test_a_primed_prefix_that_repeats_an_ngram_kills_its_hypothesis(kind, monkeypatch):
    """Forcing a token that closes a seen bigram gives it -inf: no hypothesis survives, as when stepping."""
    decoder = small_decoder(kind)
    lengths = [7, 4]
    memory = padded_memory(lengths)
    prefixes = [[3, 5, 3, 5, 7], [4, 6, 8, 2, 1]]
    calls = primed_lengths(monkeypatch, kind)
    primed, stepped = search_both_ways(decoder, memory, torch.tensor(lengths), [8, 8], prefixes, ngram=2)
    assert calls == [5]
    assert primed[0] == [] and stepped[0] == []
    assert len(primed[1]) == 3 and all(h.tokens[1:6] == prefixes[1] for h in primed[1])
    assert_same_nbests(primed, stepped)
    calls.clear()
    without_rule, _ = search_both_ways(decoder, memory, torch.tensor(lengths), [8, 8], prefixes)
    assert calls == [5] and len(without_rule[0]) == 3
