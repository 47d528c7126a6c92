"""fairseq's decoder arithmetic, and incremental steps that equal the full forward."""

import math

import pytest
import torch

from espnet2_ext.asr.decoder.fbk_transformer_decoder import FBKTransformerDecoder, fairseq_sinusoids

VOCAB, DIM = 30, 32


def small_decoder() -> FBKTransformerDecoder:
    torch.manual_seed(0)
    return FBKTransformerDecoder(VOCAB, DIM, attention_heads=4, linear_units=64, num_blocks=2).eval()


def test_positions_are_fairseqs_sinusoids_from_two():
    """fairseq: first half sin(p w_k), second half cos(p w_k), w_k = 10000^(-k/(D/2-1)), p from 2."""
    table = fairseq_sinusoids(2, 5, DIM, torch.device("cpu"))
    half = DIM // 2
    for row, p in enumerate(range(2, 7)):
        for k in (0, 3, half - 1):
            w = math.exp(-k * math.log(10000) / (half - 1))
            assert table[row, k].item() == pytest.approx(math.sin(p * w), abs=1e-6)
            assert table[row, half + k].item() == pytest.approx(math.cos(p * w), abs=1e-6)


def test_fairseq_details():
    decoder = small_decoder()
    assert decoder.output_layer.bias is None
    assert all(norm.eps == 1e-5 for norm in decoder.modules() if isinstance(norm, torch.nn.LayerNorm))


@torch.no_grad()
def test_incremental_steps_equal_the_full_forward_for_beams_of_each_utterance():
    decoder = small_decoder()
    memory, lengths = torch.randn(3, 9, DIM), torch.tensor([9, 4, 6])
    ys = torch.randint(0, VOCAB, (3, 6))
    ys[:, 0] = VOCAB - 1
    full = decoder(memory, lengths, ys, torch.full((3,), 6))[0].log_softmax(-1)
    beam = 2
    rows = ys.repeat_interleave(beam, 0)
    state = decoder.start(memory, lengths, beam)
    logp, state = decoder.step(rows[:, :2], state)  # a two-token primer, then one token a step
    assert (logp - full[:, 1].repeat_interleave(beam, 0)).abs().max() <= 1e-5
    for t in range(2, 6):
        logp, state = decoder.step(rows[:, : t + 1], state)
        assert (logp - full[:, t].repeat_interleave(beam, 0)).abs().max() <= 1e-5
    # dropping utterance 1 and swapping the beams of the others keeps every row's history
    keep = torch.tensor([0, 2])
    order = torch.tensor([1, 0, 5, 4])
    longer = torch.cat([ys, ys[:, :1]], 1)
    logp, _ = decoder.step(longer.repeat_interleave(beam, 0)[order], state.select(order, keep))
    step = decoder(memory, lengths, longer, torch.full((3,), 7))[0].log_softmax(-1)
    assert (logp - step[keep, 6].repeat_interleave(beam, 0)).abs().max() <= 1e-5


@torch.no_grad()
def test_padded_encoder_states_are_never_attended_to():
    decoder = small_decoder()
    memory, lengths = torch.randn(2, 8, DIM), torch.tensor([8, 3])
    noisy = memory.clone()
    noisy[1, 3:] = 1000.0
    ys = torch.randint(0, VOCAB, (2, 5))
    a = decoder(memory, lengths, ys, torch.full((2,), 5))[0]
    b = decoder(noisy, lengths, ys, torch.full((2,), 5))[0]
    alone = decoder(memory[1:, :3], lengths[1:], ys[1:], torch.full((1,), 5))[0]
    assert torch.equal(a, b) and (a[1] - alone[0]).abs().max() <= 1e-5


@torch.no_grad()
def test_espnet_scorer_interface_gives_the_last_positions_log_probabilities():
    decoder = small_decoder()
    memory = torch.randn(1, 5, DIM)
    ys = torch.tensor([VOCAB - 1, 3, 4])
    logp, _ = decoder.score(ys, None, memory[0])
    full = decoder(memory, torch.tensor([5]), ys[None], torch.tensor([3]))[0].log_softmax(-1)
    assert (logp - full[0, -1]).abs().max() <= 1e-6
