"""fairseq's Transformer decoder (as FBK's models use it) behind ESPnet's decoder interface.

ESPnet's ``TransformerDecoder`` has the same layers but not the same numbers:
measured against fairseq's decoder with the same weights, log-probabilities
differ by up to 1.6. What fairseq (hence FBK) computes, and this decoder too:

- token embeddings scaled by sqrt(D), plus fairseq's sinusoids: the first half
  of the channels sin(p w_k), the second half cos(p w_k), w_k =
  10000^(-k / (D/2 - 1)), positions numbered from 2 (padding index + 1);
- pre-norm layers with LayerNorm eps 1e-5 (ESPnet's: 1e-12), queries scaled by
  d_k^-0.5 before the dot product, softmax in float32;
- a final LayerNorm and an output projection without bias;
- decoding starts from ``</s>`` (ESPnet's ``<sos/eos>``, the same id here).

Decoding is incremental (:meth:`FBKTransformerDecoder.start` and
:meth:`FBKTransformerDecoder.step`): the encoder states are projected to
cross-attention keys and values once per utterance, not at every step, and
shared by its hypotheses; self-attention keeps the keys and values of earlier
tokens, so a step projects only the new one. A forced prefix is run in one
causal pass (:meth:`FBKTransformerDecoder.prime`) that leaves the same keys and
values as stepping through it.

Parameters map one to one onto fairseq's ``TransformerDecoder`` (``decoder.``
prefix there): ``embed_tokens`` -> ``embed``, ``layers.n.self_attn.{q,k,v,out}_proj``
-> ``decoders.n.self_attn.linear_{q,k,v,out}``, ``encoder_attn`` -> ``src_attn``,
``self_attn_layer_norm`` / ``encoder_attn_layer_norm`` / ``final_layer_norm`` ->
``norm1`` / ``norm2`` / ``norm3``, ``fc1`` / ``fc2`` -> ``feed_forward.w_1`` /
``w_2``, ``layer_norm`` -> ``after_norm``, ``output_projection`` -> ``output_layer``.
"""

import math
from typing import Any, NamedTuple

import torch
from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from torch import nn

from espnet2_ext.layers.masks import make_valid_mask

FAIRSEQ_FIRST_POSITION = 2  # fairseq numbers positions from padding_idx (1) + 1
LAYER_NORM_EPS = 1e-5


def fairseq_sinusoids(first: int, count: int, size: int, device: torch.device) -> torch.Tensor:
    """fairseq's ``SinusoidalPositionalEmbedding`` rows ``first..first+count-1`` (count, size).

    Computed with fairseq's float32 operations, element by element the same.
    """
    half = size // 2
    rate = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float, device=device) * -rate)
    angles = torch.arange(first, first + count, dtype=torch.float, device=device).unsqueeze(1) * freqs.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if size % 2 == 1:
        table = torch.cat([table, torch.zeros(count, 1, device=device)], dim=1)
    return table


class FBKDecoderState(NamedTuple):
    """Incremental decoding state of ``rows`` hypotheses over ``utts`` utterances.

    Rows are grouped by utterance, the same number per utterance (``rows = utts *
    beam``; the layers read that number off the shapes, so a search may prime one
    row per utterance and select ``beam`` copies of it afterwards). Cross-attention
    keys and values are per utterance, self-attention ones per row.
    """

    memory_keys: list[torch.Tensor]  # per layer (utts, H, T, d_k)
    memory_values: list[torch.Tensor]
    memory_valid: torch.Tensor  # (utts, 1, 1, T)
    self_keys: list[torch.Tensor]  # per layer (rows, H, L, d_k)
    self_values: list[torch.Tensor]

    def select(self, rows: torch.Tensor, utts: torch.Tensor | None = None) -> "FBKDecoderState":
        """Keep hypotheses ``rows`` (old row of each new one) of utterances ``utts`` (None: all)."""
        memory_keys, memory_values, memory_valid = self.memory_keys, self.memory_values, self.memory_valid
        if utts is not None:
            memory_keys = [k.index_select(0, utts) for k in memory_keys]
            memory_values = [v.index_select(0, utts) for v in memory_values]
            memory_valid = memory_valid.index_select(0, utts)
        return FBKDecoderState(
            memory_keys,
            memory_values,
            memory_valid,
            [k.index_select(0, rows) for k in self.self_keys],
            [v.index_select(0, rows) for v in self.self_values],
        )


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, L, D) -> (N, H, L, D / H)."""
    return x.view(x.size(0), x.size(1), heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(N, H, L, d_k) -> (N, L, H * d_k)."""
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """fairseq's attention on pre-scaled queries: -inf where not ``allowed``, float32 softmax.
    Returns the context and the weights (post-softmax, pre-dropout, as fairseq reports them)."""
    scores = torch.matmul(q, k.transpose(-2, -1)).masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(dropout(weights), v), weights


class FBKDecoderLayer(nn.Module):
    """Pre-norm layer: self-attention, cross-attention, ReLU feed-forward (fairseq's)."""

    def __init__(
        self,
        size: int,
        attention_heads: int,
        linear_units: int,
        dropout_rate: float,
        self_attention_dropout_rate: float,
        src_attention_dropout_rate: float,
    ):
        super().__init__()
        self.heads = attention_heads
        self.scaling = (size // attention_heads) ** -0.5
        self.self_attn = MultiHeadedAttention(attention_heads, size, self_attention_dropout_rate)
        self.src_attn = MultiHeadedAttention(attention_heads, size, src_attention_dropout_rate)
        self.feed_forward = PositionwiseFeedForward(size, linear_units, dropout_rate, nn.ReLU())
        self.norm1 = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.norm3 = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout_rate)

    def memory_keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values (B, H, T, d_k) of encoder states (B, T, D)."""
        attn = self.src_attn
        return _split_heads(attn.linear_k(memory), self.heads), _split_heads(attn.linear_v(memory), self.heads)

    def forward(
        self,
        x: torch.Tensor,
        past_keys: torch.Tensor,
        past_values: torch.Tensor,
        self_allowed: torch.Tensor,
        memory_keys: torch.Tensor,
        memory_values: torch.Tensor,
        memory_valid: torch.Tensor,
        keep_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs (N, L, D) -> outputs (N, L, D), the self-attention keys and values
        (N, H, L' + L, d_k) of the earlier tokens (``past_*``, L' of them) and these, and
        with ``keep_attention`` the cross-attention weights averaged over heads (N, L, T).

        ``memory_keys`` may hold one utterance for several rows (N = utts * beam):
        the beam's queries then attend together to their utterance's states.
        """
        h = self.norm1(x)
        attn = self.self_attn
        keys = torch.cat([past_keys, _split_heads(attn.linear_k(h), self.heads)], dim=2)
        values = torch.cat([past_values, _split_heads(attn.linear_v(h), self.heads)], dim=2)
        q = _split_heads(attn.linear_q(h) * self.scaling, self.heads)
        context, _ = _attend(q, keys, values, self_allowed, attn.dropout)
        x = x + self.dropout(attn.linear_out(_merge_heads(context)))

        h = self.norm2(x)
        q = _split_heads(self.src_attn.linear_q(h) * self.scaling, self.heads)
        utts, rows, length = memory_keys.size(0), q.size(0), q.size(2)
        beam = rows // utts
        if beam > 1:  # (utts * beam, H, L, d_k) -> (utts, H, beam * L, d_k)
            q = q.view(utts, beam, self.heads, length, -1).transpose(1, 2).reshape(utts, self.heads, beam * length, -1)
        context, weights = _attend(q, memory_keys, memory_values, memory_valid, self.src_attn.dropout)
        if beam > 1:
            context = context.view(utts, self.heads, beam, length, -1).transpose(1, 2)
            context = context.reshape(rows, self.heads, length, -1)
        x = x + self.dropout(self.src_attn.linear_out(_merge_heads(context)))
        attention = None
        if keep_attention:  # fairseq's alignment: the mean over heads of one layer's weights
            attention = weights.float().mean(dim=1)  # (utts, beam * L, T)
            attention = attention.view(utts, beam, length, -1).reshape(rows, length, -1)

        return x + self.dropout(self.feed_forward(self.norm3(x))), keys, values, attention


class FBKTransformerDecoder(AbsDecoder, BatchScorerInterface):
    """Transformer decoder with fairseq's arithmetic (see the module docstring).

    Args:
        vocab_size: target vocabulary size.
        encoder_output_size: model dimension D (the encoder's).
        attention_heads: heads of both attentions.
        linear_units: hidden size of the feed-forward.
        num_blocks: layers.
        dropout_rate: dropout after sub-layers and after the ReLU.
        positional_dropout_rate: dropout on the embedded input.
        self_attention_dropout_rate: dropout on self-attention weights.
        src_attention_dropout_rate: dropout on cross-attention weights.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 8,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.1,
        src_attention_dropout_rate: float = 0.1,
    ):
        super().__init__()
        if encoder_output_size % attention_heads != 0:
            raise ValueError(
                f"attention_heads ({attention_heads}) must divide the encoder output size ({encoder_output_size})"
            )
        size = encoder_output_size
        self.size = size
        self.embed = nn.Embedding(vocab_size, size)
        nn.init.normal_(self.embed.weight, mean=0.0, std=size**-0.5)  # fairseq's initialisation
        self.embed_scale = math.sqrt(size)
        self.embed_dropout = nn.Dropout(positional_dropout_rate)
        self.decoders = nn.ModuleList(
            FBKDecoderLayer(
                size,
                attention_heads,
                linear_units,
                dropout_rate,
                self_attention_dropout_rate,
                src_attention_dropout_rate,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(size, eps=LAYER_NORM_EPS)
        self.output_layer = nn.Linear(size, vocab_size, bias=False)
        nn.init.normal_(self.output_layer.weight, mean=0.0, std=size**-0.5)

    def _embed(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        """Scaled embeddings plus positions (N, L, D) of tokens (N, L) starting at index ``first_position``."""
        positions = fairseq_sinusoids(
            FAIRSEQ_FIRST_POSITION + first_position, tokens.size(1), self.size, tokens.device
        )
        x = self.embed_scale * self.embed(tokens) + positions.to(self.embed.weight.dtype)
        return self.embed_dropout(x)

    def _memory(self, memory: torch.Tensor, memory_lengths: torch.Tensor):
        keys, values = zip(*(layer.memory_keys_values(memory) for layer in self.decoders))
        valid = make_valid_mask(memory_lengths.to(memory.device), memory.size(1))[:, None, None, :]
        return list(keys), list(values), valid

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits (B, L, V) of target prefixes (B, L) over encoder states (B, T, D)."""
        memory_keys, memory_values, memory_valid = self._memory(hs_pad, hlens)
        length = ys_in_pad.size(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=ys_in_pad.device).tril()
        allowed = causal[None, None] & make_valid_mask(ys_in_lens, length)[:, None, None, :]
        x = self._embed(ys_in_pad, 0)
        for layer, keys, values in zip(self.decoders, memory_keys, memory_values):
            past = x.new_zeros(x.size(0), layer.heads, 0, self.size // layer.heads)
            x, _, _, _ = layer(x, past, past, allowed, keys, values, memory_valid)
        return self.output_layer(self.after_norm(x)), ys_in_lens

    # ------------------------------------------------------------ incremental decoding

    def start(self, memory: torch.Tensor, memory_lengths: torch.Tensor, beam: int) -> FBKDecoderState:
        """State for ``beam`` hypotheses per utterance of encoder states (B, T, D); no token yet."""
        keys, values, valid = self._memory(memory, memory_lengths)
        rows = memory.size(0) * beam
        empty = [memory.new_zeros(rows, layer.heads, 0, self.size // layer.heads) for layer in self.decoders]
        return FBKDecoderState(keys, values, valid, empty, list(empty))

    def step(self, ys: torch.Tensor, state: FBKDecoderState) -> tuple[torch.Tensor, FBKDecoderState]:
        """Log-probabilities (N, V) in float32 of the token after prefixes ``ys`` (N, L).

        Only the tokens the state has not seen are computed (one per step; the
        whole prefix at the first step); the state holds the others' keys and values.
        """
        logp, state, _ = self.step_attending(ys, state, None)
        return logp, state

    def step_attending(
        self, ys: torch.Tensor, state: FBKDecoderState, layer: int | None
    ) -> tuple[torch.Tensor, FBKDecoderState, torch.Tensor | None]:
        """:meth:`step`, and the cross-attention of decoder layer ``layer`` (0-based, as
        fairseq's ``--extract-attn-from-layer``) averaged over heads, of the query that
        predicts the next token (N, T) in float32 (None when ``layer`` is None)."""
        x, state, attention = self._advance(ys, state, layer)
        logits = self.output_layer(self.after_norm(x[:, -1]))
        attention = None if attention is None else attention[:, -1]
        return torch.log_softmax(logits, dim=-1, dtype=torch.float32), state, attention

    def prime(
        self, ys: torch.Tensor, state: FBKDecoderState, layer: int | None
    ) -> tuple[torch.Tensor, FBKDecoderState, torch.Tensor | None]:
        """A whole prefix ``ys`` (N, L) (``ys[:, 0]`` is ``</s>``) in one causal pass from
        :meth:`start`'s state: log-probabilities (N, L, V) in float32 of the token after
        each position, the state that L calls of :meth:`step` would leave (the same
        self-attention keys and values), and the cross-attention of decoder layer
        ``layer`` averaged over heads for every query (N, L, T) in float32 (None when
        ``layer`` is None). A search forcing a prefix pays one pass instead of L steps."""
        seen = state.self_keys[0].size(2)
        if seen != 0:
            raise ValueError(f"prime needs a state that has seen no token; this one has seen {seen}")
        x, state, attention = self._advance(ys, state, layer)
        logits = self.output_layer(self.after_norm(x))
        return torch.log_softmax(logits, dim=-1, dtype=torch.float32), state, attention

    def _advance(
        self, ys: torch.Tensor, state: FBKDecoderState, layer: int | None
    ) -> tuple[torch.Tensor, FBKDecoderState, torch.Tensor | None]:
        """The tokens of ``ys`` (N, L) the state has not seen, causally: the last layer's
        outputs (N, new, D), the state with their keys and values, and layer ``layer``'s
        cross-attention averaged over heads (N, new, T) (None when ``layer`` is None)."""
        if layer is not None and not 0 <= layer < len(self.decoders):
            raise ValueError(f"attention layer {layer}: the decoder has layers 0 to {len(self.decoders) - 1}")
        seen, total = state.self_keys[0].size(2), ys.size(1)
        x = self._embed(ys[:, seen:], seen)
        positions = torch.arange(total, device=ys.device)
        allowed = (positions[None, :] <= positions[seen:, None])[None, None]
        self_keys, self_values, attention = [], [], None
        for n, decoder_layer in enumerate(self.decoders):
            x, keys, values, weights = decoder_layer(
                x,
                state.self_keys[n],
                state.self_values[n],
                allowed,
                state.memory_keys[n],
                state.memory_values[n],
                state.memory_valid,
                keep_attention=n == layer,
            )
            self_keys.append(keys)
            self_values.append(values)
            if weights is not None:
                attention = weights
        return x, state._replace(self_keys=self_keys, self_values=self_values), attention

    # ------------------------------------------------------------ ESPnet's scorer interface

    def score(self, ys: torch.Tensor, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """ESPnet's ``ScorerInterface``: log-probabilities (V,) after prefix ``ys`` (L,) over ``x`` (T, D)."""
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp[0], states[0]

    def batch_score(
        self, ys: torch.Tensor, states: list[Any], xs: torch.Tensor
    ) -> tuple[torch.Tensor, list[Any]]:
        """ESPnet's ``BatchScorerInterface``, recomputing the prefix (ESPnet's searches keep
        no per-utterance memory state; ours use :meth:`start` / :meth:`step`)."""
        lengths = torch.full((xs.size(0),), xs.size(1), dtype=torch.long, device=xs.device)
        ys_lens = torch.full((ys.size(0),), ys.size(1), dtype=torch.long, device=ys.device)
        logits, _ = self.forward(xs, lengths, ys, ys_lens)
        return torch.log_softmax(logits[:, -1], dim=-1, dtype=torch.float32), [None] * ys.size(0)
