"""FBK's relative attention: the vectorised per-utterance shift against FBK's loop."""

import math

import pytest
import torch

from espnet2_ext.layers.fbk_rel_attention import (
    FBKRelativePositions,
    FBKRelPositionMultiHeadedAttention,
    fbk_sinusoids,
)

DIM, HEADS = 32, 4


def fbk_attention_alone(att: FBKRelPositionMultiHeadedAttention, x: torch.Tensor) -> torch.Tensor:
    """FBK-fairseq's RelativeMultiHeadAttention on one unpadded utterance (T, D), as written there."""
    length, d_head = x.size(0), DIM // HEADS
    query = att.linear_q(x).view(length, HEADS, d_head)
    key = att.linear_k(x).view(length, HEADS, d_head).permute(1, 0, 2)
    value = att.linear_v(x).view(length, HEADS, d_head).permute(1, 0, 2)
    table = torch.zeros(length, DIM)  # FBK's PositionalEncoding
    position = torch.arange(length, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, DIM, 2).float() * -(math.log(10000.0) / DIM))
    table[:, 0::2], table[:, 1::2] = torch.sin(position * div_term), torch.cos(position * div_term)
    pos = att.linear_pos(table).view(length, HEADS, d_head)
    content = torch.matmul((query + att.pos_bias_u).transpose(0, 1), key.transpose(1, 2))
    pos_score = torch.matmul((query + att.pos_bias_v).transpose(0, 1), pos.permute(1, 2, 0))
    padded = torch.cat([pos_score.new_zeros(HEADS, length, 1), pos_score], dim=-1)
    pos_score = padded.reshape(HEADS, length + 1, length)[:, 1:]  # Transformer-XL's shift
    weights = ((content + pos_score) / math.sqrt(DIM)).softmax(-1)
    return att.linear_out(torch.matmul(weights, value).transpose(0, 1).reshape(length, DIM))


def test_table_is_fbks_sin_on_even_cos_on_odd_channels():
    table = fbk_sinusoids(50, DIM, torch.device("cpu"))
    p, k = 37, 5
    assert table[p, 2 * k].item() == pytest.approx(math.sin(p / 10000 ** (2 * k / DIM)), abs=1e-5)
    assert table[p, 2 * k + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * k / DIM)), abs=1e-5)


def test_shifted_term_follows_the_formula_per_utterance():
    """Key j <= i: table row L-1-(i-j); j = i+1: zero row; j >= i+2: next query's row j-i-2."""
    lengths, time = torch.tensor([6, 3]), 6
    positions = FBKRelativePositions.build(lengths, time, DIM, torch.float)
    for b, length in enumerate(lengths.tolist()):
        rows = positions.rows[b]
        flat = torch.arange(time * (2 * time + 1)).view(time, 2 * time + 1)  # (query, table row) of the scores
        for i in range(length):
            for j in range(length):
                query, column = divmod(2 * time - 1 + 2 * time * i + j, 2 * time + 1)
                assert flat[query, column] == 2 * time - 1 + 2 * time * i + j
                row = int(rows[column])
                if j <= i:
                    assert (query, row) == (i, length - 1 - (i - j))
                elif j == i + 1:
                    assert row == time  # the zero row
                else:
                    assert (query, row) == (i + 1, j - i - 2)


@torch.no_grad()
def test_batched_attention_equals_fbks_loop_on_each_utterance_alone():
    torch.manual_seed(0)
    att = FBKRelPositionMultiHeadedAttention(HEADS, DIM, 0.0).eval()
    utterances = [torch.randn(n, DIM) for n in (7, 1, 12, 3, 9)]
    time = max(len(u) for u in utterances)
    batch = torch.randn(len(utterances), time, DIM) * 100  # padding made of large noise
    for b, u in enumerate(utterances):
        batch[b, : len(u)] = u
    lengths = torch.tensor([len(u) for u in utterances])
    valid = torch.arange(time)[None] < lengths[:, None]
    out = att(batch, batch, batch, FBKRelativePositions.build(lengths, time, DIM, batch.dtype), valid.unsqueeze(1))
    for b, u in enumerate(utterances):
        assert (out[b, : len(u)] - fbk_attention_alone(att, u)).abs().max() <= 1e-5


def test_gradients_flow_through_the_strided_shift():
    torch.manual_seed(1)
    att = FBKRelPositionMultiHeadedAttention(HEADS, DIM, 0.0)
    x = torch.randn(2, 5, DIM, requires_grad=True)
    lengths = torch.tensor([5, 3])
    valid = (torch.arange(5)[None] < lengths[:, None]).unsqueeze(1)
    out = att(x, x, x, FBKRelativePositions.build(lengths, 5, DIM, x.dtype), valid)
    (out[0].sum() + out[1, :3].sum()).backward()  # the valid outputs
    assert att.linear_pos.weight.grad.abs().sum() > 0 and att.pos_bias_v.grad.abs().sum() > 0
    assert torch.count_nonzero(x.grad[1, 3:]) == 0  # padded frames influence no valid output


def test_gradients_repeat_bit_for_bit_on_several_cpu_threads():
    """Training with ``seed: 1`` must repeat itself: the per-utterance gather of the projected
    position table must sum its gradients in a fixed order, whatever the threads do
    (``table[rows]`` did not: the recipe's demo ended 3 BLEU apart from one run to the next)."""
    torch.manual_seed(1)
    dim, batch, time = 256, 8, 200
    att = FBKRelPositionMultiHeadedAttention(HEADS, dim, 0.0)
    x = torch.randn(batch, time, dim)
    lengths = torch.randint(time // 2, time + 1, (batch,))
    lengths[0] = time
    valid = (torch.arange(time)[None] < lengths[:, None]).unsqueeze(1)
    positions = FBKRelativePositions.build(lengths, time, dim, x.dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gradients = []
        for _ in range(6):
            att.zero_grad(set_to_none=True)
            att(x, x, x, positions, valid).sum().backward()
            gradients.append(att.linear_pos.weight.grad)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(gradients[0], other) for other in gradients[1:])


def test_weights_as_espnet_computes_them_without_keeping_them(monkeypatch):
    """Our forward_attention drops ESPnet's post-softmax fill and its ``self.attn`` copy:
    outputs and gradients stay ESPnet's exactly, and no (B, H, T, T) tensor outlives the step."""
    from espnet.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention

    torch.manual_seed(0)
    att = FBKRelPositionMultiHeadedAttention(HEADS, DIM, 0.0).double()
    x = torch.randn(3, 17, DIM, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([17, 11, 4])
    valid = (torch.arange(17)[None] < lengths[:, None]).unsqueeze(1)
    positions = FBKRelativePositions.build(lengths, 17, DIM, torch.double)
    weights = torch.randn(3, 17, DIM, dtype=torch.double) * valid.transpose(1, 2)

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        att.zero_grad()
        x.grad = None
        out = att(x, x, x, positions, valid)
        (out * weights).sum().backward()
        return out.detach(), [x.grad.clone(), *(p.grad.clone() for p in att.parameters())]

    out, grads = run()
    assert att.attn is None
    monkeypatch.setattr(FBKRelPositionMultiHeadedAttention, "forward_attention",
                        RelPositionMultiHeadedAttention.forward_attention)
    espnet_out, espnet_grads = run()
    assert att.attn is not None  # ESPnet's keeps the weights
    assert torch.equal(out, espnet_out)
    assert all(torch.equal(a, b) for a, b in zip(grads, espnet_grads))
