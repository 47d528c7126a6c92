"""The pieces added to ESPnet's beam search."""

import math

import torch

from espnet2_ext.st.beam_search import NoRepeatNGramScorer


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
