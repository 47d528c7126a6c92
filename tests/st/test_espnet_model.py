"""FBK's multi-loss: label-smoothed CE without the language tag + weighted CTC."""

import math

import pytest
import torch

from espnet2_ext.st.espnet_model import ctc_min_input_lengths, label_smoothed_nll
from tests.helpers import pad_batch, pad_tokens, small_model

LANG = 2  # id of <lang:de> in the small model's token list


def make_examples(n, seed):
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        frames = int(torch.randint(40, 160, (1,), generator=g))
        target = [LANG] + torch.randint(3, 14, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g).tolist()
        source = torch.randint(1, 12, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
        examples.append((torch.randn(frames, 20, generator=g), target, source))
    return examples


def batch_of(examples):
    speech, speech_lengths = pad_batch([e[0] for e in examples])
    text, text_lengths = pad_tokens([e[1] for e in examples])
    src, src_lengths = pad_tokens([e[2] for e in examples])
    return dict(
        speech=speech, speech_lengths=speech_lengths, text=text, text_lengths=text_lengths,
        src_text=src, src_text_lengths=src_lengths,
    )


def test_label_smoothed_nll_matches_the_formula():
    logits = torch.tensor([[[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]])
    targets = torch.tensor([[0, -1]])
    lprobs = logits.log_softmax(-1)
    eps = 0.1
    expected = (1 - eps - eps / 2) * -lprobs[0, 0, 0] + eps / 2 * -lprobs[0, 0].sum()
    out = label_smoothed_nll(logits, targets, eps, ignore_id=-1)
    assert out[0, 0].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out[0, 1].item() == 0.0
    plain = label_smoothed_nll(logits, targets, 0.0, ignore_id=-1)
    assert plain[0, 0].item() == pytest.approx(-lprobs[0, 0, 0].item(), rel=1e-6)


def test_ctc_min_input_lengths_counts_repeats():
    targets, lengths = pad_tokens([[1, 1, 2], [3, 4, 4, 4], [5]])
    assert ctc_min_input_lengths(targets.clamp(min=0), lengths).tolist() == [4, 6, 1]


@torch.no_grad()
def test_language_tag_is_fed_but_not_scored():
    model = small_model().eval()
    batch = batch_of(make_examples(3, seed=1))
    losses = model.utterance_losses(**batch)
    # Scored tokens: every target token but the tag, plus <eos>.
    assert losses.tokens.tolist() == batch["text_lengths"].tolist()
    # Recompute the CE by hand from the decoder, dropping position 0.
    enc = model.encode_with_ctc(batch["speech"], batch["speech_lengths"])
    for i in range(3):
        target = batch["text"][i, : batch["text_lengths"][i]].tolist()
        ys_in = torch.tensor([[model.sos] + target])
        logits, _ = model.decoder(enc.hidden[i : i + 1, : enc.lengths[i]], enc.lengths[i : i + 1], ys_in, torch.tensor([len(ys_in[0])]))
        ys_out = torch.tensor([target[1:] + [model.eos]])
        expected = label_smoothed_nll(logits[:, 1:], ys_out, 0.1, -1).sum()
        assert losses.ce[i].item() == pytest.approx(expected.item(), rel=1e-4)


@torch.no_grad()
def test_gradient_is_normalised_by_source_tokens_plus_one_and_logs_per_target_token():
    model = small_model(ctc_weight=0.5).eval()
    examples = make_examples(3, seed=2)
    sources = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]  # 3 + 1 + 5 tokens, each with its </s>: 12
    examples = [(speech, target, source) for (speech, target, _), source in zip(examples, sources)]
    batch = batch_of(examples)
    losses = model.utterance_losses(**batch)
    loss, stats, weight = model(**batch)
    total = losses.ce.sum() + 0.5 * losses.ctc.sum()
    assert loss.item() == pytest.approx(total.item() / 12, rel=1e-6)
    targets = sum(len(t) for _, t, _ in examples)  # tag not scored, </s> scored: one each
    assert losses.tokens.sum().item() == targets
    assert stats["loss"].item() == pytest.approx(total.item() / targets, rel=1e-6)
    assert stats["loss_ce"].item() == pytest.approx(losses.ce.sum().item() / targets, rel=1e-6)
    assert stats["loss_ctc"].item() == pytest.approx(losses.ctc.sum().item() / targets, rel=1e-6)
    assert stats["loss"].item() == pytest.approx(stats["loss_ce"].item() + 0.5 * stats["loss_ctc"].item(), rel=1e-6)
    assert 0 < stats["compression_ratio"].item() <= 1
    assert 0 <= stats["acc"].item() <= 1
    assert weight.item() == 3


@torch.no_grad()
def test_without_ctc_the_loss_is_per_target_token():
    model = small_model(ctc_weight=0.0).eval()
    batch = batch_of(make_examples(3, seed=2))
    losses = model.utterance_losses(**batch)
    loss, stats, _ = model(**batch)
    assert loss.item() == pytest.approx((losses.ce.sum() / losses.tokens.sum()).item(), rel=1e-6)


@pytest.mark.parametrize("batch_size", [10, 100])
@torch.no_grad()
def test_per_utterance_losses_do_not_depend_on_the_batch(batch_size):
    model = small_model().eval()
    examples = make_examples(batch_size, seed=3)
    together = model.utterance_losses(**batch_of(examples))
    for i, example in enumerate(examples):
        alone = model.utterance_losses(**batch_of([example]))
        for name in ("ce", "ctc"):
            a, b = getattr(alone, name)[0].item(), getattr(together, name)[i].item()
            assert a == pytest.approx(b, rel=1e-5, abs=1e-5), f"{name} of utterance {i}"
        assert int(alone.compressed_lengths[0]) == int(together.compressed_lengths[i])


def test_infeasible_ctc_target_counts_zero_and_is_reported_not_nan():
    model = small_model().train()
    examples = make_examples(3, seed=4)
    speech, target, _ = examples[0]
    examples[0] = (speech[:12], target, list(range(1, 11)))  # 3 CTC frames, 10 labels
    batch = batch_of(examples)
    loss, stats, _ = model(**batch)
    losses = model.utterance_losses(**batch)
    assert losses.ctc_feasible.tolist() == [False, True, True]
    assert losses.ctc[0].item() == 0.0
    assert stats["ctc_infeasible"].item() == 1
    assert math.isfinite(loss.item())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_ctc_loss_trains_the_head_and_the_blocks_below_it():
    model = small_model(ctc_weight=1.0).train()
    batch = batch_of(make_examples(2, seed=5))
    losses = model.utterance_losses(**batch)
    losses.ctc.sum().backward()
    assert model.encoder.ctc_head.weight.grad.abs().sum() > 0
    assert model.encoder.blocks[0].self_attn.linear_q.weight.grad.abs().sum() > 0
    # Blocks after the CTC head do not influence the CTC loss.
    assert model.encoder.blocks[-1].self_attn.linear_q.weight.grad is None


def test_ctc_weight_needs_a_source_transcript():
    model = small_model(ctc_weight=0.5)
    batch = batch_of(make_examples(2, seed=6))
    del batch["src_text"], batch["src_text_lengths"]
    with pytest.raises(ValueError, match="src_text"):
        model(**batch)
    loss, stats, _ = small_model(ctc_weight=0.0)(**batch)
    assert stats["loss_ctc"].item() == 0.0


def test_add_sos_eos_is_espnets_for_the_whole_batch_at_once():
    from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos as espnet_add_sos_eos

    from espnet2_ext.st.espnet_model import add_sos_eos

    for sequences in ([[5, 6, 7], [8], [9, 9, 9, 9]], [[3]], [[1, 2], [3, 4]]):
        text, lengths = pad_tokens(sequences)
        expected = espnet_add_sos_eos(text, 20, 21, -1)
        got = add_sos_eos(text, lengths, 20, 21, -1)
        assert all(torch.equal(g, e) for g, e in zip(got, expected)), sequences


@pytest.mark.parametrize("decoder", ["espnet", "fbk"])
@torch.no_grad()
def test_padding_beyond_the_longest_utterance_changes_no_loss(decoder):
    """The model reads no maximum length from the device (but for ESPnet's decoder's targets): a batch
    padded further (as a data-parallel split of a batch would be) gives the same terms."""
    from espnet2_ext.asr.decoder.fbk_transformer_decoder import FBKTransformerDecoder

    model = small_model().eval()
    if decoder == "fbk":
        model.decoder = FBKTransformerDecoder(15, 64, attention_heads=4, linear_units=128, num_blocks=2).eval()
    batch = batch_of(make_examples(3, seed=7))
    wider = dict(batch)
    wider["speech"] = torch.cat([batch["speech"], torch.randn(3, 23, 20) * 50], dim=1)
    for key in ("text", "src_text"):
        wider[key] = torch.cat([batch[key], torch.full((3, 4), -1)], dim=1)
    expected, got = model.utterance_losses(**batch), model.utterance_losses(**wider)
    for name in ("ce", "tokens", "correct", "ctc", "ctc_feasible", "compressed_lengths"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-5, atol=1e-5, msg=name)
