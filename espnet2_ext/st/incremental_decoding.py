"""One stepping interface over decoders, so that a search never re-reads what it has computed.

:class:`~espnet2_ext.asr.decoder.fbk_transformer_decoder.FBKTransformerDecoder`
implements it natively (keys and values cached). ESPnet's decoders with
``forward_one_step`` (its ``TransformerDecoder``) get :class:`ESPnetDecoderSteps`,
which keeps ESPnet's own cache and repeats the encoder states per hypothesis.

A state holds ``utts * beam`` hypothesis rows grouped by utterance and has
``select(rows, utts)``: keep the rows ``rows`` (old row of each new one) of the
utterances ``utts`` (None: every utterance still there).
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


class ESPnetDecoderState(NamedTuple):
    memory: torch.Tensor  # (rows, T, D)
    memory_mask: torch.Tensor  # (rows, 1, T)
    cache: list[torch.Tensor] | None

    def select(self, rows: torch.Tensor, utts: torch.Tensor | None = None) -> "ESPnetDecoderState":
        cache = None if self.cache is None else [layer.index_select(0, rows) for layer in self.cache]
        return ESPnetDecoderState(self.memory.index_select(0, rows), self.memory_mask.index_select(0, rows), cache)


class ESPnetDecoderSteps:
    """:class:`IncrementalDecoder` over an ESPnet decoder's ``forward_one_step``."""

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
        if layer is not None and not 0 <= layer < len(self.decoder.decoders):
            raise ValueError(f"attention layer {layer}: the decoder has layers 0 to {len(self.decoder.decoders) - 1}")
        ys_mask = subsequent_mask(ys.size(1), device=ys.device).unsqueeze(0)
        logp, cache = self.decoder.forward_one_step(ys, ys_mask, state.memory, state.memory_mask, cache=state.cache)
        attention = None if layer is None else self.decoder.decoders[layer].src_attn.attn[:, :, -1].float().mean(1)
        return logp.float(), state._replace(cache=cache), attention


def incremental(decoder: torch.nn.Module) -> IncrementalDecoder:
    """The decoder itself when it steps natively, else ESPnet's stepping around it."""
    if hasattr(decoder, "start") and hasattr(decoder, "step_attending"):
        return decoder
    if hasattr(decoder, "forward_one_step"):
        return ESPnetDecoderSteps(decoder)
    raise TypeError(f"{type(decoder).__name__} can neither step incrementally nor run forward_one_step")
