"""FBK-fairseq's Conformer checkpoint in our terms: one description that ``import_fbk`` and ``export_fbk`` read both ways.

Three things differ between an FBK checkpoint and our model, each described once here:

- **Vocabularies** (:data:`TARGET`, :data:`SOURCE`). fairseq numbers ``<s> <pad> </s> <unk>``
  first, then its dictionary file's entries; the source dictionary gets ``<ctc_blank>``
  appended for the CTC. ESPnet wants the blank first and ``<sos/eos>`` last. A
  :class:`VocabularyLayout` says which of our tokens is which fairseq special and
  where each side puts them; rows of the embedding, output projection and CTC head
  are permuted accordingly.
- **Parameter names** (:data:`PARAMETER_NAMES`): FBK's name and ours as templates
  (``{n}`` a layer, ``{p}`` a parameter such as ``weight``, ``{x}`` one of q, k, v),
  matched and filled in either direction by :func:`rename`. FBK also stores a few
  constants we compute (:data:`CONSTANT_NAMES`, :func:`fbk_constants`).
- **Architecture arguments** (:data:`SAME_SETTINGS` and the few derived ones in
  :func:`our_model_settings` / :func:`fbk_model_arguments`).
"""

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from espnet2_ext.fileio.fairseq_checkpoint import FAIRSEQ_SPECIALS
from espnet2_ext.layers.fbk_rel_attention import fbk_sinusoids

FBK_ARCHS = ("conformer", "conformer_s")
CTC_BLANK = "<ctc_blank>"
ENTRIES = "{entries}"  # where a layout puts the dictionary file's entries
FBK_POSITIONS = 10000  # rows of FBK's PositionalEncoding buffer (conformer_attention.py)

# FBK-fairseq's defaults (base_architecture, conformer_base_architecture), for keys older checkpoints
# lack. Where import_fbk accepts only one value of a key (see fbk_import.fbk_args), it is this one,
# which is also what export_fbk writes.
FBK_DEFAULTS: dict[str, Any] = dict(
    conv_kernel_sizes="5,5",
    conv_channels=1024,
    encoder_embed_dim=512,
    encoder_layers=12,
    encoder_attention_heads=8,
    decoder_layers=6,
    decoder_attention_heads=8,
    decoder_ffn_embed_dim=2048,
    decoder_normalize_before=True,
    decoder_learned_pos=False,
    activation_fn="relu",
    dropout=0.1,
    attention_dropout=0.1,
    activation_dropout=0.1,
    share_decoder_input_output_embed=False,
    no_token_positional_embeddings=False,
    no_scale_embedding=False,
    adaptive_softmax_cutoff=None,
    layernorm_embedding=False,
    feed_forward_expansion_factor=4,
    conv_expansion_factor=2,
    conformer_feedforward_dropout=0.1,
    conformer_attention_dropout=0.1,
    conformer_conv_dropout=0.1,
    conformer_conv_kernel_size=31,
    conformer_half_step_residual=True,
    ctc_encoder_layer=6,
    ctc_compress_strategy="none",
    ctc_compress_max_out_size=-1,
    ctc_compress_fixed_ratio=4,
    ctc_weight=0.5,
    label_smoothing=0.1,
    ignore_prefix_size=0,
    input_feat_per_channel=80,
    input_channels=1,
    batch_unsafe_relative_shift=False,
)


# --------------------------------------------------------------------------- vocabularies


class VocabularyLayout(NamedTuple):
    """Where fairseq and we put one side's special symbols around the dictionary's entries.

    Both orders are spelled with fairseq's names and :data:`ENTRIES`; ``names`` gives our
    name of a fairseq special where it differs, ``aliases`` other names we accept for it.
    """

    fairseq_order: tuple[str, ...]
    our_order: tuple[str, ...]
    names: dict[str, str]
    aliases: dict[str, str]

    def ours(self, symbol: str) -> str:
        return self.names.get(symbol, symbol)

    def our_tokens(self, entries: Sequence[str]) -> list[str]:
        """Our token list for a fairseq dictionary's entries."""
        return [t for s in self.our_order for t in (entries if s == ENTRIES else [self.ours(s)])]

    def fairseq_ids(self, entries: Sequence[str]) -> list[int]:
        """For each of our ids (in :meth:`our_tokens` order), fairseq's id."""
        where, start = {}, 0
        for symbol in self.fairseq_order:
            size = len(entries) if symbol == ENTRIES else 1
            where[symbol] = range(start, start + size)
            start += size
        return [i for symbol in self.our_order for i in where[symbol]]

    def special_names(self) -> dict[str, str]:
        """Our names of fairseq's specials (aliases included) -> fairseq's."""
        names = {self.ours(s): s for s in self.fairseq_order if s != ENTRIES}
        return {**names, **{alias: s for s, alias in self.aliases.items()}}

    def split(self, tokens: Sequence[str]) -> tuple[list[str], list[int | None]]:
        """Our token list as a fairseq dictionary: its entries (our other tokens, in order),
        and for each fairseq id our row, None for a special we lack (``<s>`` in a recipe's lists).

        Raises:
            ValueError: a token twice, or two of our names for one fairseq special.
        """
        specials = self.special_names()
        rows: dict[str, int] = {}
        entries: list[tuple[str, int]] = []
        seen: dict[str, int] = {}
        for row, token in enumerate(tokens):
            if token in seen:
                raise ValueError(f"token {token!r} appears twice (rows {seen[token]} and {row})")
            seen[token] = row
            symbol = specials.get(token)
            if symbol is None:
                entries.append((token, row))
            elif symbol in rows:
                raise ValueError(f"tokens {tokens[rows[symbol]]!r} and {token!r} both stand for fairseq's {symbol}")
            else:
                rows[symbol] = row
        fairseq_rows: list[int | None] = []
        for symbol in self.fairseq_order:
            fairseq_rows.extend([row for _, row in entries] if symbol == ENTRIES else [rows.get(symbol)])
        return [token for token, _ in entries], fairseq_rows


# <pad> becomes <blank>, which the search never emits, as fairseq never emits <pad>;
# </s> is <sos/eos>, which both decoders start from.
TARGET = VocabularyLayout(
    fairseq_order=(*FAIRSEQ_SPECIALS, ENTRIES),
    our_order=("<pad>", "<unk>", ENTRIES, "<s>", "</s>"),
    names={"<pad>": "<blank>", "</s>": "<sos/eos>"},
    aliases={},
)
SOURCE = VocabularyLayout(
    fairseq_order=(*FAIRSEQ_SPECIALS, ENTRIES, CTC_BLANK),
    our_order=(CTC_BLANK, "<unk>", ENTRIES, "<s>", "<pad>", "</s>"),
    names={CTC_BLANK: "<blank>"},
    aliases={"</s>": "<sos/eos>"},  # a recipe's source token list ends with <sos/eos>
)


# --------------------------------------------------------------------------- parameter names

# FBK-fairseq's name <-> ours. Kernel-1 Conv1d weights (O, I, 1) in FBK are Linear weights (O, I)
# here (POINTWISE). The table of the encoder's docstring says the same in words.
_LAYER = "encoder.conformer_layers.{n}."
_BLOCK = "encoder.blocks.{n}."
_DEC = "decoder.layers.{n}."
_OURS_DEC = "decoder.decoders.{n}."
PARAMETER_NAMES: tuple[tuple[str, str], ...] = (
    ("encoder.subsample.conv_layers.{n}.{p}", "encoder.subsampling.convs.{n}.{p}"),
    (_LAYER + "first_feed_forward.layernorm.{p}", _BLOCK + "norm_ffn_macaron.{p}"),
    (_LAYER + "first_feed_forward.first_linear.{p}", _BLOCK + "ffn_macaron.w_1.{p}"),
    (_LAYER + "first_feed_forward.second_linear.{p}", _BLOCK + "ffn_macaron.w_2.{p}"),
    (_LAYER + "attention.layer_norm.{p}", _BLOCK + "norm_attn.{p}"),
    (_LAYER + "attention.attention.query_proj.{p}", _BLOCK + "self_attn.linear_q.{p}"),
    (_LAYER + "attention.attention.key_proj.{p}", _BLOCK + "self_attn.linear_k.{p}"),
    (_LAYER + "attention.attention.value_proj.{p}", _BLOCK + "self_attn.linear_v.{p}"),
    (_LAYER + "attention.attention.out_proj.{p}", _BLOCK + "self_attn.linear_out.{p}"),
    (_LAYER + "attention.attention.pos_proj.{p}", _BLOCK + "self_attn.linear_pos.{p}"),
    (_LAYER + "attention.attention.u_bias", _BLOCK + "self_attn.pos_bias_u"),
    (_LAYER + "attention.attention.v_bias", _BLOCK + "self_attn.pos_bias_v"),
    (_LAYER + "conv_module.layernorm.{p}", _BLOCK + "norm_conv.{p}"),
    (_LAYER + "conv_module.first_pointwise_conv1d.{p}", _BLOCK + "conv.pointwise_in.{p}"),
    (_LAYER + "conv_module.depthwise_conv1d.{p}", _BLOCK + "conv.depthwise.{p}"),
    (_LAYER + "conv_module.batchnorm.{p}", _BLOCK + "conv.norm.{p}"),
    (_LAYER + "conv_module.second_pointwise_conv1d.{p}", _BLOCK + "conv.pointwise_out.{p}"),
    (_LAYER + "second_feed_forward.layernorm.{p}", _BLOCK + "norm_ffn.{p}"),
    (_LAYER + "second_feed_forward.first_linear.{p}", _BLOCK + "ffn.w_1.{p}"),
    (_LAYER + "second_feed_forward.second_linear.{p}", _BLOCK + "ffn.w_2.{p}"),
    (_LAYER + "layernorm.{p}", _BLOCK + "norm_final.{p}"),
    ("encoder.ctc_fc.{p}", "encoder.ctc_head.{p}"),
    ("decoder.embed_tokens.weight", "decoder.embed.weight"),
    (_DEC + "self_attn.{x}_proj.{p}", _OURS_DEC + "self_attn.linear_{x}.{p}"),
    (_DEC + "self_attn.out_proj.{p}", _OURS_DEC + "self_attn.linear_out.{p}"),
    (_DEC + "encoder_attn.{x}_proj.{p}", _OURS_DEC + "src_attn.linear_{x}.{p}"),
    (_DEC + "encoder_attn.out_proj.{p}", _OURS_DEC + "src_attn.linear_out.{p}"),
    (_DEC + "self_attn_layer_norm.{p}", _OURS_DEC + "norm1.{p}"),
    (_DEC + "encoder_attn_layer_norm.{p}", _OURS_DEC + "norm2.{p}"),
    (_DEC + "final_layer_norm.{p}", _OURS_DEC + "norm3.{p}"),
    (_DEC + "fc1.{p}", _OURS_DEC + "feed_forward.w_1.{p}"),
    (_DEC + "fc2.{p}", _OURS_DEC + "feed_forward.w_2.{p}"),
    ("decoder.layer_norm.{p}", "decoder.after_norm.{p}"),
    ("decoder.output_projection.weight", "decoder.output_layer.weight"),
)
POINTWISE = re.compile(r"encoder\.conformer_layers\.\d+\.conv_module\.(first|second)_pointwise_conv1d\.weight")
# Constants FBK keeps in its state dict and we compute (encoder.version: none in FBK's Conformer, ignored all the same).
CONSTANT_NAMES = (
    _LAYER + "attention.positional_encoding.pe",
    "decoder.embed_positions._float_tensor",
    "decoder.version",
    "encoder.version",
)
# Rows of these follow a vocabulary (FBK's name, ours, the side).
VOCABULARY_ROWS = (
    ("decoder.embed_tokens.weight", "decoder.embed.weight", TARGET),
    ("decoder.output_projection.weight", "decoder.output_layer.weight", TARGET),
    ("encoder.ctc_fc.weight", "encoder.ctc_head.weight", SOURCE),
    ("encoder.ctc_fc.bias", "encoder.ctc_head.bias", SOURCE),
)
_FIELDS = {"n": r"\d+", "p": r"\w+", "x": "[qkv]"}


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w)\}", template)  # text, field, text, field, ...
    return re.compile(
        "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{_FIELDS[part]})" for i, part in enumerate(parts))
    )


_PATTERNS = {
    "to_ours": [(_pattern(fbk), ours) for fbk, ours in PARAMETER_NAMES],
    "to_fbk": [(_pattern(ours), fbk) for fbk, ours in PARAMETER_NAMES],
}
IS_CONSTANT = [_pattern(name) for name in CONSTANT_NAMES]


def rename(name: str, direction: str) -> str | None:
    """``name`` in the other model's terms (``direction``: ``to_ours`` or ``to_fbk``), None if unknown."""
    for pattern, template in _PATTERNS[direction]:
        match = pattern.fullmatch(name)
        if match:
            return template.format(**match.groupdict())
    return None


def is_constant(fbk_name: str) -> bool:
    return any(pattern.fullmatch(fbk_name) for pattern in IS_CONSTANT)


def to_our_tensor(fbk_name: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.squeeze(-1) if POINTWISE.fullmatch(fbk_name) and tensor.dim() == 3 else tensor


def to_fbk_tensor(fbk_name: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor.unsqueeze(-1) if POINTWISE.fullmatch(fbk_name) and tensor.dim() == 2 else tensor


def fbk_constants(encoder_layers: int, dim: int) -> dict[str, torch.Tensor]:
    """The constant buffers FBK's modules register, as they compute them (float32)."""
    table = fbk_sinusoids(FBK_POSITIONS, dim, torch.device("cpu")).unsqueeze(0)
    constants = {CONSTANT_NAMES[0].format(n=n): table.clone() for n in range(encoder_layers)}
    constants["decoder.embed_positions._float_tensor"] = torch.zeros(1)
    constants["decoder.version"] = torch.tensor([3.0])  # fairseq's TransformerDecoder
    return constants


# --------------------------------------------------------------------------- architecture

# Our config key (section, key) <-> FBK's argument, the same value both ways. Where several of
# ours map to one of FBK's (its one dropout), the first is what an export writes.
SAME_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("encoder_conf", "output_size", "encoder_embed_dim"),
    ("encoder_conf", "attention_heads", "encoder_attention_heads"),
    ("encoder_conf", "num_blocks", "encoder_layers"),
    ("encoder_conf", "cnn_module_kernel", "conformer_conv_kernel_size"),
    ("encoder_conf", "dropout_rate", "conformer_feedforward_dropout"),
    ("encoder_conf", "positional_dropout_rate", "dropout"),
    ("encoder_conf", "attention_dropout_rate", "conformer_attention_dropout"),
    ("encoder_conf", "subsampling_channels", "conv_channels"),
    ("encoder_conf", "ctc_block", "ctc_encoder_layer"),
    ("encoder_conf", "compression", "ctc_compress_strategy"),
    ("encoder_conf", "compression_fixed_ratio", "ctc_compress_fixed_ratio"),
    ("decoder_conf", "attention_heads", "decoder_attention_heads"),
    ("decoder_conf", "linear_units", "decoder_ffn_embed_dim"),
    ("decoder_conf", "num_blocks", "decoder_layers"),
    ("decoder_conf", "dropout_rate", "dropout"),
    ("decoder_conf", "positional_dropout_rate", "dropout"),
    ("decoder_conf", "self_attention_dropout_rate", "attention_dropout"),
    ("decoder_conf", "src_attention_dropout_rate", "attention_dropout"),
    ("model_conf", "ctc_weight", "ctc_weight"),
    ("model_conf", "lsm_weight", "label_smoothing"),
    ("model_conf", "ignore_prefix_size", "ignore_prefix_size"),
)
OUR_ENCODER, OUR_DECODER, OUR_REL_POS = "ctc_compress_conformer", "fbk_transformer", "fbk"


def our_model_settings(args: dict[str, Any]) -> dict[str, Any]:
    """Our training config's model keys for FBK's (checked, defaults filled in) arguments."""
    settings: dict[str, Any] = {
        "input_size": args["input_feat_per_channel"] * args["input_channels"],
        "encoder": OUR_ENCODER,
        "encoder_conf": {},
        "decoder": OUR_DECODER,
        "decoder_conf": {},
        "model_conf": {},
    }
    for section, key, fbk in SAME_SETTINGS:
        settings[section][key] = args[fbk]
    kernels = args["conv_kernel_sizes"]
    max_out = args["ctc_compress_max_out_size"]
    settings["encoder_conf"].update(
        linear_units=args["encoder_embed_dim"] * args["feed_forward_expansion_factor"],
        subsampling_kernel_size=kernels[0],
        subsampling_layers=len(kernels),
        compression_max_out_size=max_out if max_out > 0 else None,
        rel_pos_type=OUR_REL_POS,
    )
    return settings


def fbk_model_arguments(settings: dict[str, Any]) -> dict[str, Any]:
    """FBK's model arguments for our model keys (every key filled in, values FBK can represent:
    see :func:`espnet2_ext.main_funcs.fbk_export.unrepresentable`)."""
    args = dict(FBK_DEFAULTS)
    written: set[str] = set()
    for section, key, fbk in SAME_SETTINGS:
        if fbk not in written:
            args[fbk] = settings[section][key]
            written.add(fbk)
    encoder, decoder = settings["encoder_conf"], settings["decoder_conf"]
    dim = encoder["output_size"]
    max_out = encoder["compression_max_out_size"]
    args.update(
        input_feat_per_channel=settings["input_size"],
        input_channels=1,
        feed_forward_expansion_factor=encoder["linear_units"] // dim,
        conv_kernel_sizes=",".join([str(encoder["subsampling_kernel_size"])] * encoder["subsampling_layers"]),
        ctc_compress_max_out_size=-1 if max_out is None else max_out,
        conformer_conv_dropout=encoder["dropout_rate"],
        activation_dropout=decoder["dropout_rate"],
        decoder_embed_dim=dim,
        decoder_input_dim=dim,
        decoder_output_dim=dim,
        encoder_ffn_embed_dim=encoder["linear_units"],  # unused by the Conformer; s2t_transformer's meaning
    )
    return args


def settings_lost_in_fbk(settings: dict[str, Any]) -> list[str]:
    """Our keys sharing one FBK argument with different values (dropouts: training only), as text."""
    first: dict[str, tuple[str, Any]] = {}
    lost = []
    for section, key, fbk in SAME_SETTINGS:
        value = settings[section][key]
        if fbk in first and not math.isclose(float(first[fbk][1]), float(value)):
            lost.append(f"{section}.{key} {value} (FBK's {fbk} is {first[fbk][0]}'s {first[fbk][1]})")
        first.setdefault(fbk, (f"{section}.{key}", value))
    return lost
