"""What FBK's decoding adds to ESPnet's beam search."""

import math

import pytest
import torch
from espnet.nets.batch_beam_search import BatchBeamSearch, BatchHypothesis
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet2_ext.st.beam_search import NoRepeatNGramScorer, UtteranceBatchBeamSearch


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
    from espnet2_ext.st.beam_search import FairseqBeamSearch

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
