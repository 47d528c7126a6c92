"""FBK's Conformer encoder with an intermediate CTC that compresses the sequence."""

import inspect
import math
from typing import Any, NamedTuple

import torch
from espnet.nets.pytorch_backend.transformer.attention import (
    RelPositionMultiHeadedAttention,
)
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import nn

from espnet2_ext.layers.conv1d_subsampling import Conv1dSubsampling
from espnet2_ext.layers.ctc_compression import COMPRESSION_STRATEGIES, ctc_compress
from espnet2_ext.layers.fbk_rel_attention import (
    FBKRelativePositions,
    FBKRelPositionMultiHeadedAttention,
)
from espnet2_ext.layers.masked_convolution import MaskedConvolutionModule
from espnet2_ext.layers.masks import ValidFrames

REL_POS_TYPES = ("fbk", "latest")
Positions = FBKRelativePositions | torch.Tensor


class CTCCompressEncoderOutput(NamedTuple):
    """Everything the model needs from one encoder pass.

    ``ctc_logits`` and ``ctc_lengths`` are taken before compression, which is
    what the CTC loss must see; ``hidden``/``lengths`` are the final, compressed
    states.
    """

    hidden: torch.Tensor  # (B, T', D)
    lengths: torch.Tensor  # (B,)
    ctc_logits: torch.Tensor  # (B, T, V_src)
    ctc_lengths: torch.Tensor  # (B,)


class ConformerBlock(nn.Module):
    """Macaron Conformer block: ½FFN, rel-pos MHSA, conv, ½FFN, LayerNorm.

    Pre-norm residual sub-layers. The valid frames (mask and indices, built once
    per forward) go to attention as keys mask and to the conv module, so no
    padded frame reaches a valid one. ``rel_pos_type`` picks FBK's relative attention or
    ESPnet's (see :class:`CTCCompressConformerEncoder`).
    """

    def __init__(
        self,
        size: int,
        attention_heads: int,
        linear_units: int,
        cnn_module_kernel: int,
        dropout_rate: float,
        attention_dropout_rate: float,
        rel_pos_type: str = "fbk",
    ):
        super().__init__()
        attention = FBKRelPositionMultiHeadedAttention if rel_pos_type == "fbk" else RelPositionMultiHeadedAttention
        self.ffn_macaron = PositionwiseFeedForward(size, linear_units, dropout_rate, nn.SiLU())
        self.self_attn = attention(attention_heads, size, attention_dropout_rate)
        self.conv = MaskedConvolutionModule(size, cnn_module_kernel)
        self.ffn = PositionwiseFeedForward(size, linear_units, dropout_rate, nn.SiLU())
        self.norm_ffn_macaron = nn.LayerNorm(size)
        self.norm_attn = nn.LayerNorm(size)
        self.norm_conv = nn.LayerNorm(size)
        self.norm_ffn = nn.LayerNorm(size)
        self.norm_final = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, pos_emb: Positions, frames: ValidFrames) -> torch.Tensor:
        """(B, T, D) -> (B, T, D); ``pos_emb`` as the attention needs it, ``frames`` the real ones."""
        x = x + 0.5 * self.dropout(self.ffn_macaron(self.norm_ffn_macaron(x)))
        h = self.norm_attn(x)
        x = x + self.dropout(self.self_attn(h, h, h, pos_emb, frames.mask.unsqueeze(1)))
        x = x + self.dropout(self.conv(self.norm_conv(x), frames))
        x = x + 0.5 * self.dropout(self.ffn(self.norm_ffn(x)))
        return self.norm_final(x)


class CTCCompressConformerEncoder(AbsEncoder):
    """Conformer encoder that shortens its own sequence with an intermediate CTC.

    Features (B, T, F) go through a Conv1d subsampler (4x with two layers),
    are scaled by sqrt(D), then pass ``num_blocks`` Conformer blocks. After block
    ``ctc_block`` (1-based) a linear CTC head over the source vocabulary predicts
    a label per frame; its argmax splits each utterance into runs of equal labels
    and ``ctc_compress`` turns every run into one vector. The remaining blocks run
    on that shorter sequence. Defaults are FBK's IWSLT 2022 sizes.

    ``rel_pos_type`` chooses the self-attention:

    - ``fbk`` (default): FBK-fairseq's, so that a model trained here and one of
      FBK's checkpoints compute the same thing: scores over sqrt(D), FBK's
      absolute sinusoid table shifted per utterance over its own length
      (:mod:`espnet2_ext.layers.fbk_rel_attention`), no dropout on positions.
    - ``latest``: ESPnet's ``RelPositionMultiHeadedAttention`` with
      ``RelPositionalEncoding`` (relative positions -(T-1)..T-1, scores over
      sqrt(d_k), dropout on the position embeddings).

    Both have the same parameters. The output is padding-invariant: an utterance
    gives the same states alone or in any padded batch (in eval mode; in
    training, BatchNorm statistics are taken over valid frames only).

    Parameters map one to one onto FBK-fairseq's ``ConformerEncoder``
    (``encoder.`` prefix there):

    ========================================  ==============================================
    FBK-fairseq                               here
    ========================================  ==============================================
    ``subsample.conv_layers.i``               ``subsampling.convs.i``
    ``conformer_layers.n.first_feed_forward``  ``blocks.n.norm_ffn_macaron`` (``layernorm``),
                                              ``blocks.n.ffn_macaron.w_1/w_2``
                                              (``first_linear/second_linear``)
    ``...attention.layer_norm``               ``blocks.n.norm_attn``
    ``...attention.attention.{query,key,      ``blocks.n.self_attn.linear_{q,k,v,out}``,
    value,out}_proj``, ``pos_proj``,          ``linear_pos``, ``pos_bias_u``, ``pos_bias_v``
    ``u_bias``, ``v_bias``
    ``...conv_module.layernorm``              ``blocks.n.norm_conv``
    ``...conv_module.first_pointwise_conv1d``  ``blocks.n.conv.pointwise_in`` (kernel (O, I, 1)
                                              is the Linear weight (O, I))
    ``...conv_module.depthwise_conv1d``       ``blocks.n.conv.depthwise`` (no bias in either)
    ``...conv_module.batchnorm``              ``blocks.n.conv.norm``
    ``...conv_module.second_pointwise_conv1d`` ``blocks.n.conv.pointwise_out`` (as above)
    ``...second_feed_forward``                ``blocks.n.norm_ffn``, ``blocks.n.ffn``
    ``...layernorm``                          ``blocks.n.norm_final``
    ``ctc_fc``                                ``ctc_head``
    ========================================  ==============================================

    FBK's position table (``attention.positional_encoding.pe``) is a constant
    buffer, computed here instead.

    Args:
        input_size: input feature dimension (80 for fbank).
        ctc_vocab_size: source vocabulary size of the CTC head (blank = index 0).
        output_size: model dimension D.
        attention_heads: heads of self-attention (must divide ``output_size``).
        linear_units: hidden size of the feed-forward modules.
        num_blocks: Conformer blocks.
        cnn_module_kernel: depthwise kernel of the conv module (odd).
        dropout_rate: dropout after sub-layers and inside the feed-forwards.
        positional_dropout_rate: dropout on the scaled input (and, for
            ``latest``, on the position embeddings).
        attention_dropout_rate: dropout on attention weights.
        subsampling_channels: hidden channels of the subsampler.
        subsampling_kernel_size: kernel of each subsampling Conv1d (odd).
        subsampling_layers: stride-2 Conv1d layers (reduction ``2**layers``).
        ctc_block: block (1-based) after which the CTC head and compression sit.
        compression: ``none``, ``avg``, ``weighted``, ``softmax`` or ``fixed``.
        compression_fixed_ratio: group size of ``fixed``.
        compression_max_out_size: cap on the compressed length (None: no cap).
        rel_pos_type: ``fbk`` or ``latest`` (see above).
    """

    def __init__(
        self,
        input_size: int,
        ctc_vocab_size: int,
        output_size: int = 512,
        attention_heads: int = 8,
        linear_units: int = 2048,
        num_blocks: int = 12,
        cnn_module_kernel: int = 31,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.1,
        subsampling_channels: int = 1024,
        subsampling_kernel_size: int = 5,
        subsampling_layers: int = 2,
        ctc_block: int = 8,
        compression: str = "avg",
        compression_fixed_ratio: int = 4,
        compression_max_out_size: int | None = None,
        rel_pos_type: str = "fbk",
    ):
        super().__init__()
        if output_size % attention_heads != 0:
            raise ValueError(
                f"output_size ({output_size}) must be divisible by attention_heads ({attention_heads})"
            )
        if not 1 <= ctc_block <= num_blocks:
            raise ValueError(f"ctc_block must be in 1..num_blocks ({num_blocks}), got {ctc_block}")
        if compression not in COMPRESSION_STRATEGIES:
            raise ValueError(
                f"compression: unknown strategy {compression!r}, expected one of {COMPRESSION_STRATEGIES}"
            )
        if compression_fixed_ratio < 1:
            raise ValueError(f"compression_fixed_ratio must be >= 1, got {compression_fixed_ratio}")
        if ctc_vocab_size < 2:
            raise ValueError(f"ctc_vocab_size must be >= 2 (blank + tokens), got {ctc_vocab_size}")
        if compression_max_out_size is not None and compression_max_out_size < 1:
            raise ValueError(f"compression_max_out_size must be >= 1 or None (no cap), got {compression_max_out_size}")
        if rel_pos_type not in REL_POS_TYPES:
            raise ValueError(f"rel_pos_type: unknown {rel_pos_type!r}, expected one of {REL_POS_TYPES}")
        self._output_size = output_size
        self.rel_pos_type = rel_pos_type
        self.subsampling = Conv1dSubsampling(
            input_size, output_size, subsampling_channels, subsampling_kernel_size, subsampling_layers
        )
        if rel_pos_type == "latest":
            self.pos_enc = RelPositionalEncoding(output_size, positional_dropout_rate)
        else:
            self.input_dropout = nn.Dropout(positional_dropout_rate)
        self.blocks = nn.ModuleList(
            ConformerBlock(
                output_size,
                attention_heads,
                linear_units,
                cnn_module_kernel,
                dropout_rate,
                attention_dropout_rate,
                rel_pos_type,
            )
            for _ in range(num_blocks)
        )
        self.ctc_head = nn.Linear(output_size, ctc_vocab_size)
        self.ctc_block = ctc_block
        self.compression = compression
        self.compression_fixed_ratio = compression_fixed_ratio
        self.compression_max_out_size = compression_max_out_size

    def output_size(self) -> int:
        return self._output_size

    @property
    def min_input_length(self) -> int:
        """Fewest feature frames an utterance may have."""
        return self.subsampling.min_input_length

    @classmethod
    def min_input_length_for(cls, encoder_conf: dict[str, Any]) -> int:
        """``min_input_length`` of the encoder ``encoder_conf`` would build, without building it."""
        default = inspect.signature(cls).parameters["subsampling_kernel_size"].default
        return Conv1dSubsampling.min_input_length_of(encoder_conf.get("subsampling_kernel_size", default))

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """ESPnet's encoder interface: compressed states (B, T', D) and lengths."""
        out = self.encode(xs_pad, ilens)
        return out.hidden, out.lengths, None

    def encode(self, xs_pad: torch.Tensor, ilens: torch.Tensor) -> CTCCompressEncoderOutput:
        """Encode features (B, T, F) with lengths (B,), keeping the CTC logits."""
        self._check_input_lengths(ilens)
        x, lengths = self.subsampling(xs_pad, ilens)
        x, pos_emb = self._scale_and_position(x, lengths)
        frames = ValidFrames.of(lengths, x.size(1))  # once per length: every block uses it
        for block in self.blocks[: self.ctc_block]:
            x = block(x, pos_emb, frames)
        ctc_logits = self.ctc_head(x)
        ctc_lengths = lengths
        if self.compression != "none":
            x, lengths = self._compress(x, lengths, ctc_logits)
            pos_emb = self._positions(x, lengths)
            frames = ValidFrames.of(lengths, x.size(1))
        for block in self.blocks[self.ctc_block :]:
            x = block(x, pos_emb, frames)
        x = x.masked_fill(~frames.mask.unsqueeze(-1), 0.0)
        return CTCCompressEncoderOutput(x, lengths, ctc_logits, ctc_lengths)

    def _check_input_lengths(self, ilens: torch.Tensor) -> None:
        """Refuse utterances shorter than the subsampler's kernel, without waiting for the device.

        The check is queued on the device (``torch._assert_async``): on the CPU it
        fails here, and the error then names the utterances; on a GPU, where the
        data loader's length check (:class:`~espnet2_ext.train.preprocessor.SpeechLengthCheck`)
        and the translators' own have already refused them, a failure stops the
        process with this message.
        """
        message = f"input too short for the subsampler (needs >= {self.min_input_length} frames)"
        long_enough = (ilens >= self.min_input_length).all()
        if torch.compiler.is_compiling():
            torch._assert_async(long_enough, message)
            return
        try:
            torch._assert_async(long_enough, message)
        except RuntimeError:
            too_short = torch.nonzero(ilens < self.min_input_length).flatten().tolist()
            details = ", ".join(f"#{i}: {int(ilens[i])} frames" for i in too_short)
            raise ValueError(f"{message}: batch utterance {details}") from None

    def _compress(
        self, x: torch.Tensor, lengths: torch.Tensor, ctc_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The shorter sequence the blocks after the CTC head run on (a subclass may change how).

        Compiled, its width is the most runs the shapes allow, padded (``static_size``): the
        graph then needs nothing from the device. Eager, it is the longest compressed length.
        """
        return ctc_compress(
            x,
            lengths,
            ctc_logits,
            self.compression,
            self.compression_fixed_ratio,
            self.compression_max_out_size,
            static_size=torch.compiler.is_compiling(),
        )

    def _scale_and_position(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, Positions]:
        """Subsampler output scaled by sqrt(D) (with dropout), and its positions."""
        if self.rel_pos_type == "latest":
            return self.pos_enc(x)
        x = self.input_dropout(x * math.sqrt(self._output_size))
        return x, self._positions(x, lengths)

    def _positions(self, x: torch.Tensor, lengths: torch.Tensor) -> Positions:
        """Positions for the attention of every block over ``x`` (B, T, D), built once.

        For ``latest`` these are ESPnet's (1, 2T-1, D) embeddings; a feature-less
        view of ``x`` keeps ESPnet's module from rescaling ``x`` again.
        """
        if self.rel_pos_type == "latest":
            return self.pos_enc(x[..., :0])[1]
        return FBKRelativePositions.build(lengths, x.size(1), self._output_size, x.dtype)

