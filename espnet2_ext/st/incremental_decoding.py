"""One stepping interface over decoders, so that a search never re-reads what it has computed.

:class:`~espnet2_ext.asr.decoder.fbk_transformer_decoder.FBKTransformerDecoder`
implements it natively (keys and values cached). ESPnet's decoders with
``forward_one_step`` (its ``TransformerDecoder``) get :class:`ESPnetDecoderSteps`,
which keeps ESPnet's own cache and repeats the encoder states per hypothesis.

A state holds ``utts * beam`` hypothesis rows grouped by utterance and has
``select(rows, utts)``: keep the rows ``rows`` (old row of each new one) of the
utterances ``utts`` (None: every utterance still there). A search that forces a
prefix may start with ``beam`` 1, ``prime`` the prefix and select ``beam`` copies
of each row.
"""

from typing import Any, NamedTuple, Protocol

import torch
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

from espnet2_ext.layers.masks import make_valid_mask


class IncrementalDecoder(Protocol):
    def start(self, memory: torch.Tensor, memory_lengths: torch.Tensor, beam: int) -> Any:
        """State for ``beam`` hypotheses per utterance of encoder states (B, T, D)."""

    def step(self, ys: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """float32 log-probabilities (N, V) of the next token after prefixes ``ys`` (N, L)."""

    def step_attending(self, ys: torch.Tensor, state: Any, layer: int | None) -> tuple[torch.Tensor, Any, Any]:
        """:meth:`step`, and decoder layer ``layer``'s cross-attention averaged over heads
        for the next token's query (N, T), float32 (None when ``layer`` is None)."""

    def prime(self, ys: torch.Tensor, state: Any, layer: int | None) -> tuple[torch.Tensor, Any, Any]:
        """Prefixes ``ys`` (N, L) (``ys[:, 0]`` is <sos>) in one causal pass from :meth:`start`'s
        state: float32 log-probabilities (N, L, V) of the token after each position, the state
        L calls of :meth:`step` would leave, and layer ``layer``'s cross-attention averaged over
        heads for every query (N, L, T), float32 (None when ``layer`` is None)."""


class ESPnetDecoderState(NamedTuple):
    memory: torch.Tensor  # (rows, T, D)
    memory_mask: torch.Tensor  # (rows, 1, T)
    cache: list[torch.Tensor] | None

    def select(self, rows: torch.Tensor, utts: torch.Tensor | None = None) -> "ESPnetDecoderState":
        cache = None if self.cache is None else [layer.index_select(0, rows) for layer in self.cache]
        return ESPnetDecoderState(self.memory.index_select(0, rows), self.memory_mask.index_select(0, rows), cache)


class ESPnetDecoderSteps:
    """:class:`IncrementalDecoder` over an ESPnet decoder's ``forward_one_step`` (and, to
    :meth:`prime`, the ``after_norm`` and ``output_layer`` it applies: ESPnet's Transformer decoders)."""

    def __init__(self, decoder: torch.nn.Module):
        self.decoder = decoder

    def start(self, memory: torch.Tensor, memory_lengths: torch.Tensor, beam: int) -> ESPnetDecoderState:
        mask = make_valid_mask(memory_lengths.to(memory.device), memory.size(1)).unsqueeze(1)
        return ESPnetDecoderState(memory.repeat_interleave(beam, 0), mask.repeat_interleave(beam, 0), None)

    def step(self, ys: torch.Tensor, state: ESPnetDecoderState) -> tuple[torch.Tensor, ESPnetDecoderState]:
        logp, state, _ = self.step_attending(ys, state, None)
        return logp, state

    def step_attending(
        self, ys: torch.Tensor, state: ESPnetDecoderState, layer: int | None
    ) -> tuple[torch.Tensor, ESPnetDecoderState, torch.Tensor | None]:
        """ESPnet's attention modules keep their last weights (``src_attn.attn``, (N, H, L, T)): read there."""
        self._check(layer)
        ys_mask = subsequent_mask(ys.size(1), device=ys.device).unsqueeze(0)
        logp, cache = self.decoder.forward_one_step(ys, ys_mask, state.memory, state.memory_mask, cache=state.cache)
        attention = None if layer is None else self.decoder.decoders[layer].src_attn.attn[:, :, -1].float().mean(1)
        return logp.float(), state._replace(cache=cache), attention

    def prime(
        self, ys: torch.Tensor, state: ESPnetDecoderState, layer: int | None
    ) -> tuple[torch.Tensor, ESPnetDecoderState, torch.Tensor | None]:
        """One ``forward_one_step`` over the whole prefix, without a cache: ESPnet's cache is
        every layer's outputs at every position, which is what that pass returns, and the
        log-probabilities of every position are the output head (what ``forward_one_step``
        applies to the last position) on the last layer's outputs."""
        if state.cache is not None:
            raise ValueError(f"prime needs a state that has seen no token; this one has seen {state.cache[0].size(1)}")
        self._check(layer)
        decoder = self.decoder
        ys_mask = subsequent_mask(ys.size(1), device=ys.device).unsqueeze(0)
        _, cache = decoder.forward_one_step(ys, ys_mask, state.memory, state.memory_mask, cache=None)
        x = decoder.after_norm(cache[-1]) if decoder.normalize_before else cache[-1]
        logp = torch.log_softmax(decoder.output_layer(x), dim=-1).float()
        attention = None if layer is None else decoder.decoders[layer].src_attn.attn.float().mean(1)
        return logp, state._replace(cache=cache), attention

    def _check(self, layer: int | None) -> None:
        """ESPnet's decoders would raise a bare IndexError, or none for a negative layer."""
        if layer is not None and not 0 <= layer < len(self.decoder.decoders):
            raise ValueError(f"attention layer {layer}: the decoder has layers 0 to {len(self.decoder.decoders) - 1}")


def incremental(decoder: torch.nn.Module) -> IncrementalDecoder:
    """The decoder itself when it steps natively, else ESPnet's stepping around it."""
    if hasattr(decoder, "start") and hasattr(decoder, "step_attending"):
        return decoder
    if hasattr(decoder, "forward_one_step"):
        return ESPnetDecoderSteps(decoder)
    raise TypeError(f"{type(decoder).__name__} can neither step incrementally nor run forward_one_step")
