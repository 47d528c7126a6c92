"""FBK-fairseq's relative-position self-attention, vectorised over the batch.

FBK's Conformer (``examples/speech_to_text/modules/conformer_attention.py``)
differs from ESPnet's ``RelPositionMultiHeadedAttention`` (``rel_pos_type:
latest``) in three ways, all kept here so that FBK's checkpoints give FBK's
numbers:

- scores are divided by the square root of the model dimension, not of the
  head dimension;
- the position term scores each query against an *absolute* sinusoid table of
  positions ``0..T-1`` (sine on even, cosine on odd channels, no dropout);
- Transformer-XL's zero-pad-and-reshape shift is applied to that term per
  utterance, over its own valid length ``L``. For query ``i`` and key ``j``
  (both ``< L``) the term is::

      j <= i:      (q_i + v) . P[L - 1 - (i - j)]
      j == i + 1:  0
      j >= i + 2:  (q_{i+1} + v) . P[j - i - 2]

  where ``P`` is the projected table. FBK loops over utterances in Python;
  here one table per utterance, ``[P_0..P_{T-1}, P_{L-T}..P_{L-1}, 0]``
  (rows before ``P_0`` clamped, never read), makes the shift a single strided
  view for the whole batch: element ``(i, j)`` of the shifted term is element
  ``2T - 1 + 2T i + j`` of the flattened ``(T, 2T + 1)`` scores. Nothing is
  copied and nothing depends on the padding.
"""

import math
from typing import NamedTuple

import torch
from espnet.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention


def fbk_sinusoids(length: int, size: int, device: torch.device) -> torch.Tensor:
    """FBK's position table (length, size): sin(p w_k) on channel 2k, cos on 2k + 1.

    Computed with FBK's float32 operations, so the values are FBK's bit for bit.
    """
    position = torch.arange(0, length, dtype=torch.float, device=device).unsqueeze(1)
    div_term = torch.exp(
        torch.arange(0, size, 2, device=device).float() * -(math.log(10000.0) / size)
    )
    table = torch.zeros(length, size, device=device)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class FBKRelativePositions(NamedTuple):
    """What every FBK attention layer of one forward needs, built once per sequence length.

    ``table`` holds the sinusoids of positions ``0..T-1`` and a zero row (T + 1, D);
    ``rows`` (B, 2T + 1) says which table rows form each utterance's own table.
    """

    table: torch.Tensor
    rows: torch.Tensor

    @classmethod
    def build(cls, lengths: torch.Tensor, time: int, size: int, dtype: torch.dtype) -> "FBKRelativePositions":
        device = lengths.device
        table = torch.cat([fbk_sinusoids(time, size, device), torch.zeros(1, size, device=device)])
        steps = torch.arange(time, device=device)
        reversed_rows = (steps[None, :] - time + lengths[:, None]).clamp(min=0)  # P[L-T+m]
        rows = torch.cat(
            [
                steps.expand(lengths.size(0), time),
                reversed_rows,
                torch.full((lengths.size(0), 1), time, device=device, dtype=steps.dtype),
            ],
            dim=1,
        )
        return cls(table.to(dtype), rows)


class FBKRelPositionMultiHeadedAttention(RelPositionMultiHeadedAttention):
    """FBK's relative-position attention with ESPnet's parameters and masking.

    Parameters are ESPnet's (``linear_q/k/v/out``, ``linear_pos`` without bias,
    ``pos_bias_u/v`` of shape (heads, d_k)); they map one to one onto FBK's
    ``query_proj/key_proj/value_proj/out_proj``, ``pos_proj``, ``u_bias/v_bias``.
    Padded keys get no weight (the lowest float before the softmax; FBK's -1e9
    fill gives the same zeros).

    Args:
        n_head: attention heads.
        n_feat: model dimension D.
        dropout_rate: dropout on the attention weights.
    """

    def __init__(self, n_head: int, n_feat: int, dropout_rate: float):
        super().__init__(n_head, n_feat, dropout_rate)
        self.sqrt_dim = math.sqrt(n_feat)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        pos_emb: FBKRelativePositions,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Self-attention (B, T, D) -> (B, T, D); ``mask`` (B, 1, T) is True on valid keys."""
        q, k, v = self.forward_qkv(query, key, value)  # (B, H, T, d_k)
        batch, heads, time, d_k = q.shape
        # index_select, not table[rows]: its backward (index_add) sums each row's gradients
        # in a fixed order, where advanced indexing's (accumulating index_put) sums them in
        # whatever order the CPU threads finish: training would not repeat itself (and is
        # 20x slower on that step)
        positions = self.linear_pos(pos_emb.table).index_select(0, pos_emb.rows.flatten())  # (B (2T + 1), D)
        positions = positions.view(batch, 2 * time + 1, heads, d_k).transpose(1, 2)
        # FBK divides the summed scores by sqrt(D); dividing the (T, d_k) queries instead
        # is the same up to rounding and spares a pass over the (T, T) scores
        scale = 1.0 / self.sqrt_dim
        content = torch.matmul((q + self.pos_bias_u.unsqueeze(1)) * scale, k.transpose(-2, -1))
        position = torch.matmul((q + self.pos_bias_v.unsqueeze(1)) * scale, positions.transpose(-2, -1))
        position = position.contiguous()  # a fresh product: its storage starts at its first element
        row = time * (2 * time + 1)
        shifted = position.as_strided((batch, heads, time, time), (heads * row, row, 2 * time, 1), 2 * time - 1)
        return self.forward_attention(v, content.add_(shifted), mask)

    def forward_attention(self, value: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Weights (B, H, T, T) from ``scores`` (overwritten), applied to ``value`` (B, H, T, d_k).

        ESPnet's, less two (B, H, T, T) tensors per layer: padded keys get the lowest
        score in place, and the softmax then gives them exactly zero (every utterance
        has a valid key), so ESPnet's second fill after the softmax, and the copy of the
        weights it keeps in ``self.attn`` until the next forward, are not needed.
        """
        scores.masked_fill_(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(weights, value).transpose(1, 2)
        return self.linear_out(context.reshape(value.size(0), -1, self.h * self.d_k))
