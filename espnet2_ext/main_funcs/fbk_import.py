"""Turn an FBK-fairseq Conformer checkpoint into a model zip that ``translate`` runs.

What FBK publishes per model (``fbk_works/BUGFREE_CONFORMER.md``,
``IWSLT_2022.md``): ``ckp.pt``, the data ``config.yaml``, and the SentencePiece
models and fairseq dictionaries of both sides. From them this module builds our
training config (architecture from the checkpoint's arguments), our weights
(FBK's parameters renamed one to one, vocabulary rows permuted) and packs both
with the SentencePiece models, exactly as recipe stage 8 packs a trained model.
FBK's ``gcmvn.npz`` (``mean``, ``std``), which its simultaneous agents normalise
with, is packed too when given, as ``gcmvn.npz`` named by ``meta.yaml``'s ``global_cmvn``
(``PackedModel.global_cmvn`` once opened).

Vocabularies. fairseq numbers ``<s> <pad> </s> <unk>`` first, then the
dictionary file's entries; the source dictionary gets ``<ctc_blank>`` appended
for the CTC. ESPnet wants the blank first and ``<sos/eos>`` last, so:

- target: ``<blank>`` (fairseq's ``<pad>``, never emitted), ``<unk>``, the
  entries, ``<s>``, ``<sos/eos>`` (fairseq's ``</s>``, which also starts decoding);
- source: ``<blank>`` (``<ctc_blank>``), ``<unk>``, the entries, ``<s>``,
  ``<pad>``, ``</s>``.

The embedding, output-projection and CTC rows are permuted accordingly, so every
score, the CTC argmax (hence the compressed lengths) and the search are FBK's.

Checkpoints trained before FBK's padding fixes (the 🪲 rows of
``BUGFREE_CONFORMER.md``, or ``--batch-unsafe-relative-shift``) are accepted: at
batch size 1 there is no padding, so FBK's code computes what ours computes at
any batch size, which is how these models decode here.
"""

import argparse
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.fileio.fairseq_checkpoint import (
    FAIRSEQ_SPECIALS,
    FairseqCheckpointError,
    read_fairseq_checkpoint,
    read_fairseq_dictionary,
)
from espnet2_ext.fileio.input_file import not_a_file
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.main_funcs.model_packing import global_cmvn_problem, pack_model
from espnet2_ext.tasks.model_building import ModelLoadError, load_st_model

FBK_ARCHS = ("conformer", "conformer_s")
TARGET_SPECIALS = ("<blank>", "<unk>", "<s>", "<sos/eos>")
SOURCE_SPECIALS = ("<blank>", "<unk>", "<s>", "<pad>", "</s>")
CTC_BLANK = "<ctc_blank>"
# FBK-fairseq's defaults (base_architecture, conformer_base_architecture), for keys older checkpoints lack.
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


class FBKImportError(Exception):
    """Something in FBK's files that cannot be turned into our model; the message says what."""


# --------------------------------------------------------------------------- architecture


def fbk_args(args: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's arguments with FBK's defaults filled in, checked to be a model we can build."""
    args = {**FBK_DEFAULTS, **{k: v for k, v in args.items() if v is not None or k == "adaptive_softmax_cutoff"}}
    arch = args.get("arch", args.get("_name"))
    if arch not in FBK_ARCHS:
        raise FBKImportError(f"{checkpoint}: architecture {arch!r} is not FBK's Conformer ({', '.join(FBK_ARCHS)})")
    kernels = [int(k) for k in str(args["conv_kernel_sizes"]).split(",")]
    unsupported = {
        "conv_kernel_sizes": (len(set(kernels)) == 1, "the same kernel for every subsampling layer"),
        "conv_expansion_factor": (args["conv_expansion_factor"] == 2, "2"),
        "conformer_half_step_residual": (bool(args["conformer_half_step_residual"]), "true"),
        "decoder_normalize_before": (bool(args["decoder_normalize_before"]), "true (pre-norm)"),
        "decoder_learned_pos": (not args["decoder_learned_pos"], "false (sinusoidal positions)"),
        "no_token_positional_embeddings": (not args["no_token_positional_embeddings"], "false"),
        "no_scale_embedding": (not args["no_scale_embedding"], "false"),
        "activation_fn": (args["activation_fn"] == "relu", "relu"),
        "adaptive_softmax_cutoff": (args["adaptive_softmax_cutoff"] is None, "none"),
        "layernorm_embedding": (not args["layernorm_embedding"], "false"),
        "decoder_embed_dim": (
            args.get("decoder_embed_dim", args["encoder_embed_dim"]) == args["encoder_embed_dim"],
            f"the encoder's dimension ({args['encoder_embed_dim']})",
        ),
        "ctc_compress_strategy": (
            args["ctc_compress_strategy"] in ("none", "avg", "weighted", "softmax", "fixed"),
            "none, avg, weighted, softmax or fixed",
        ),
    }
    for key, (ok, expected) in unsupported.items():
        if not ok:
            raise FBKImportError(f"{checkpoint}: {key} = {args[key]!r} cannot be represented here (expected {expected})")
    if args["batch_unsafe_relative_shift"]:
        logging.warning(
            f"{checkpoint} was trained with FBK's batch-unsafe relative shift: it decodes as FBK's code at batch size 1"
        )
    return {**args, "conv_kernel_sizes": kernels}


def model_settings(args: dict[str, Any]) -> dict[str, Any]:
    """Our training config's model keys for FBK's arguments."""
    dim = args["encoder_embed_dim"]
    return dict(
        input_size=args["input_feat_per_channel"] * args["input_channels"],
        encoder="ctc_compress_conformer",
        encoder_conf=dict(
            output_size=dim,
            attention_heads=args["encoder_attention_heads"],
            linear_units=dim * args["feed_forward_expansion_factor"],
            num_blocks=args["encoder_layers"],
            cnn_module_kernel=args["conformer_conv_kernel_size"],
            dropout_rate=args["conformer_feedforward_dropout"],
            positional_dropout_rate=args["dropout"],
            attention_dropout_rate=args["conformer_attention_dropout"],
            subsampling_channels=args["conv_channels"],
            subsampling_kernel_size=args["conv_kernel_sizes"][0],
            subsampling_layers=len(args["conv_kernel_sizes"]),
            ctc_block=args["ctc_encoder_layer"],
            compression=args["ctc_compress_strategy"],
            compression_fixed_ratio=args["ctc_compress_fixed_ratio"],
            compression_max_out_size=args["ctc_compress_max_out_size"] if args["ctc_compress_max_out_size"] > 0 else None,
            rel_pos_type="fbk",
        ),
        decoder="fbk_transformer",
        decoder_conf=dict(
            attention_heads=args["decoder_attention_heads"],
            linear_units=args["decoder_ffn_embed_dim"],
            num_blocks=args["decoder_layers"],
            dropout_rate=args["dropout"],
            positional_dropout_rate=args["dropout"],
            self_attention_dropout_rate=args["attention_dropout"],
            src_attention_dropout_rate=args["attention_dropout"],
        ),
        model_conf=dict(
            ctc_weight=args["ctc_weight"],
            lsm_weight=args["label_smoothing"],
            ignore_prefix_size=args["ignore_prefix_size"],
        ),
    )


# --------------------------------------------------------------------------- data config


def data_settings(config_path: Path) -> dict[str, Any]:
    """Our normalisation and SpecAugment keys for FBK's data ``config.yaml``."""
    problem = not_a_file(config_path, "data config", "FBK's data config file (config.yaml)")
    if problem:
        raise FBKImportError(problem)
    try:
        config = read_yaml_mapping(config_path)
    except YamlFileError as err:
        raise FBKImportError(f"{err} (not a fairseq data config)") from None
    transforms = config.get("transforms") or {}
    evaluation = transforms.get("_eval", transforms.get("*", [])) if isinstance(transforms, dict) else None
    if evaluation not in ([], ["utterance_cmvn"]):
        raise FBKImportError(
            f"{config_path}: evaluation transforms {evaluation!r} are not supported (only utterance_cmvn, or none)"
        )
    settings: dict[str, Any] = {"normalize": "utterance_cmvn" if evaluation else None, "normalize_conf": {}}
    cmvn = config.get("utterance_cmvn") or {}
    if evaluation and isinstance(cmvn, dict):
        settings["normalize_conf"] = dict(
            norm_means=bool(cmvn.get("norm_means", True)), norm_vars=bool(cmvn.get("norm_vars", True))
        )
    specaug = config.get("specaugment")
    if isinstance(specaug, dict):
        settings["specaug"] = "specaug"
        settings["specaug_conf"] = dict(
            apply_time_warp=bool(specaug.get("time_wrap_W", 0)),
            apply_freq_mask=bool(specaug.get("freq_mask_N", 0)),
            freq_mask_width_range=[0, int(specaug.get("freq_mask_F", 0))],
            num_freq_mask=int(specaug.get("freq_mask_N", 0)),
            apply_time_mask=bool(specaug.get("time_mask_N", 0)),
            time_mask_width_range=[0, int(specaug.get("time_mask_T", 0))],
            num_time_mask=int(specaug.get("time_mask_N", 0)),
        )
    feat_dim = config.get("input_feat_per_channel")
    if feat_dim is not None:
        settings["input_size"] = int(feat_dim) * int(config.get("input_channels", 1))
    return settings


# --------------------------------------------------------------------------- vocabularies


def target_vocabulary(entries: Sequence[str]) -> tuple[list[str], list[int]]:
    """Our target token list and, for each of our ids, fairseq's id."""
    tokens = ["<blank>", "<unk>", *entries, "<s>", "<sos/eos>"]
    fairseq_ids = [1, 3, *range(4, 4 + len(entries)), 0, 2]
    return tokens, fairseq_ids


def source_vocabulary(entries: Sequence[str]) -> tuple[list[str], list[int]]:
    """Our source (CTC) token list and, for each of our ids, fairseq's id (``<ctc_blank>`` last there)."""
    tokens = ["<blank>", "<unk>", *entries, "<s>", "<pad>", "</s>"]
    fairseq_ids = [4 + len(entries), 3, *range(4, 4 + len(entries)), 0, 1, 2]
    return tokens, fairseq_ids


def _check_entries(entries: Sequence[str], specials: Sequence[str], path: Path) -> None:
    clash = sorted(set(entries) & (set(specials) | set(FAIRSEQ_SPECIALS) | {CTC_BLANK}))
    if clash:
        raise FBKImportError(f"{path}: entry {clash[0]!r} clashes with a special token")


# --------------------------------------------------------------------------- weights

_Rule = tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _pointwise(tensor: torch.Tensor) -> torch.Tensor:
    """A kernel-1 Conv1d weight (O, I, 1) as the Linear weight (O, I) it equals."""
    return tensor.squeeze(-1) if tensor.dim() == 3 else tensor


_LAYER = r"encoder\.conformer_layers\.(\d+)\."
_DECODER_LAYER = r"decoder\.layers\.(\d+)\."
# FBK-fairseq name (regex) -> our name (format with the layer number) and transformation.
WEIGHT_RULES: tuple[_Rule, ...] = (
    (r"encoder\.subsample\.conv_layers\.(\d+)\.(weight|bias)", "encoder.subsampling.convs.{0}.{1}", _same),
    (_LAYER + r"first_feed_forward\.layernorm\.(\w+)", "encoder.blocks.{0}.norm_ffn_macaron.{1}", _same),
    (_LAYER + r"first_feed_forward\.first_linear\.(\w+)", "encoder.blocks.{0}.ffn_macaron.w_1.{1}", _same),
    (_LAYER + r"first_feed_forward\.second_linear\.(\w+)", "encoder.blocks.{0}.ffn_macaron.w_2.{1}", _same),
    (_LAYER + r"attention\.layer_norm\.(\w+)", "encoder.blocks.{0}.norm_attn.{1}", _same),
    (_LAYER + r"attention\.attention\.query_proj\.(\w+)", "encoder.blocks.{0}.self_attn.linear_q.{1}", _same),
    (_LAYER + r"attention\.attention\.key_proj\.(\w+)", "encoder.blocks.{0}.self_attn.linear_k.{1}", _same),
    (_LAYER + r"attention\.attention\.value_proj\.(\w+)", "encoder.blocks.{0}.self_attn.linear_v.{1}", _same),
    (_LAYER + r"attention\.attention\.out_proj\.(\w+)", "encoder.blocks.{0}.self_attn.linear_out.{1}", _same),
    (_LAYER + r"attention\.attention\.pos_proj\.(\w+)", "encoder.blocks.{0}.self_attn.linear_pos.{1}", _same),
    (_LAYER + r"attention\.attention\.u_bias", "encoder.blocks.{0}.self_attn.pos_bias_u", _same),
    (_LAYER + r"attention\.attention\.v_bias", "encoder.blocks.{0}.self_attn.pos_bias_v", _same),
    (_LAYER + r"conv_module\.layernorm\.(\w+)", "encoder.blocks.{0}.norm_conv.{1}", _same),
    (_LAYER + r"conv_module\.first_pointwise_conv1d\.(\w+)", "encoder.blocks.{0}.conv.pointwise_in.{1}", _pointwise),
    (_LAYER + r"conv_module\.depthwise_conv1d\.(\w+)", "encoder.blocks.{0}.conv.depthwise.{1}", _same),
    (_LAYER + r"conv_module\.batchnorm\.(\w+)", "encoder.blocks.{0}.conv.norm.{1}", _same),
    (_LAYER + r"conv_module\.second_pointwise_conv1d\.(\w+)", "encoder.blocks.{0}.conv.pointwise_out.{1}", _pointwise),
    (_LAYER + r"second_feed_forward\.layernorm\.(\w+)", "encoder.blocks.{0}.norm_ffn.{1}", _same),
    (_LAYER + r"second_feed_forward\.first_linear\.(\w+)", "encoder.blocks.{0}.ffn.w_1.{1}", _same),
    (_LAYER + r"second_feed_forward\.second_linear\.(\w+)", "encoder.blocks.{0}.ffn.w_2.{1}", _same),
    (_LAYER + r"layernorm\.(\w+)", "encoder.blocks.{0}.norm_final.{1}", _same),
    (r"encoder\.ctc_fc\.(\w+)", "encoder.ctc_head.{0}", _same),
    (r"decoder\.embed_tokens\.weight", "decoder.embed.weight", _same),
    (_DECODER_LAYER + r"self_attn\.([qkv])_proj\.(\w+)", "decoder.decoders.{0}.self_attn.linear_{1}.{2}", _same),
    (_DECODER_LAYER + r"self_attn\.out_proj\.(\w+)", "decoder.decoders.{0}.self_attn.linear_out.{1}", _same),
    (_DECODER_LAYER + r"encoder_attn\.([qkv])_proj\.(\w+)", "decoder.decoders.{0}.src_attn.linear_{1}.{2}", _same),
    (_DECODER_LAYER + r"encoder_attn\.out_proj\.(\w+)", "decoder.decoders.{0}.src_attn.linear_out.{1}", _same),
    (_DECODER_LAYER + r"self_attn_layer_norm\.(\w+)", "decoder.decoders.{0}.norm1.{1}", _same),
    (_DECODER_LAYER + r"encoder_attn_layer_norm\.(\w+)", "decoder.decoders.{0}.norm2.{1}", _same),
    (_DECODER_LAYER + r"final_layer_norm\.(\w+)", "decoder.decoders.{0}.norm3.{1}", _same),
    (_DECODER_LAYER + r"fc1\.(\w+)", "decoder.decoders.{0}.feed_forward.w_1.{1}", _same),
    (_DECODER_LAYER + r"fc2\.(\w+)", "decoder.decoders.{0}.feed_forward.w_2.{1}", _same),
    (r"decoder\.layer_norm\.(\w+)", "decoder.after_norm.{0}", _same),
    (r"decoder\.output_projection\.weight", "decoder.output_layer.weight", _same),
)
# Constants fairseq keeps in the state dict and we compute.
IGNORED = re.compile(
    r"encoder\.conformer_layers\.\d+\.attention\.positional_encoding\.pe|decoder\.embed_positions\._float_tensor"
    r"|(encoder|decoder)\.version"
)
_COMPILED = tuple((re.compile(pattern), name, transform) for pattern, name, transform in WEIGHT_RULES)


def convert_weights(
    fbk_state: dict[str, torch.Tensor], target_ids: Sequence[int], source_ids: Sequence[int], checkpoint: Path
) -> dict[str, torch.Tensor]:
    """Our state dict from FBK's: names mapped, vocabulary rows put in our order."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in fbk_state.items():
        if IGNORED.fullmatch(name):
            continue
        for pattern, ours, transform in _COMPILED:
            match = pattern.fullmatch(name)
            if match:
                state[ours.format(*match.groups())] = transform(tensor).float()
                break
        else:
            raise FBKImportError(f"{checkpoint}: parameter {name} is not one of FBK's Conformer's")
    if "decoder.output_layer.weight" not in state and "decoder.embed.weight" in state:
        state["decoder.output_layer.weight"] = state["decoder.embed.weight"]  # shared input/output embeddings
    for name, ids, what in (
        ("decoder.embed.weight", target_ids, "target"),
        ("decoder.output_layer.weight", target_ids, "target"),
        ("encoder.ctc_head.weight", source_ids, "source"),
        ("encoder.ctc_head.bias", source_ids, "source"),
    ):
        if name not in state:
            raise FBKImportError(f"{checkpoint}: no {name.split('.')[-2]} weights: not FBK's Conformer with a CTC head")
        if state[name].size(0) != len(ids):
            raise FBKImportError(
                f"{checkpoint}: {name} has {state[name].size(0)} rows but the {what} dictionary gives "
                f"{len(ids)} symbols: the dictionary does not belong to this checkpoint"
            )
        state[name] = state[name][list(ids)].clone()
    return state


# --------------------------------------------------------------------------- the whole import


def _training_config(settings: dict[str, Any]) -> dict[str, Any]:
    """A complete ESPnet training config: every default of our task, then ``settings``."""
    from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask  # ESPnet's whole registry: only when needed

    config = vars(STCTCCompressTask.get_parser().parse_args([]))
    config.update(settings)
    return config


def import_fbk(
    checkpoint: Path,
    config: Path,
    tgt_spm: Path,
    tgt_dict: Path,
    src_spm: Path,
    src_dict: Path,
    out: Path,
    gcmvn: Path | None = None,
) -> Path:
    """Write ``out`` (a model zip for ``translate`` and ``Speech2Translation.from_pretrained``).

    ``gcmvn``: FBK's global CMVN statistics (``gcmvn.npz``: ``mean``, ``std``; ESPnet's
    ``feats_stats.npz`` also works), packed for simultaneous translation.

    Raises:
        FBKImportError: anything that keeps the import from giving FBK's model, or
            ``gcmvn`` that is no readable statistics; nothing is written then.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != ".zip":
        raise FBKImportError(f"the output must be a .zip file, got {out}")
    if gcmvn is not None and (problem := global_cmvn_problem(Path(gcmvn), "global CMVN statistics")):
        raise FBKImportError(problem)
    try:
        fbk = read_fairseq_checkpoint(checkpoint)
        tgt_entries = read_fairseq_dictionary(tgt_dict)
        src_entries = read_fairseq_dictionary(src_dict)
    except FairseqCheckpointError as err:
        raise FBKImportError(str(err)) from None
    for spm, what in ((tgt_spm, "target"), (src_spm, "source")):
        problem = not_a_file(Path(spm), f"{what} SentencePiece model", "a SentencePiece model file (.model)")
        if problem:
            raise FBKImportError(problem)
    _check_entries(tgt_entries, TARGET_SPECIALS, Path(tgt_dict))
    _check_entries(src_entries, SOURCE_SPECIALS, Path(src_dict))
    args = fbk_args(fbk["args"], checkpoint)
    settings = {**model_settings(args), **data_settings(Path(config))}
    if settings["input_size"] != args["input_feat_per_channel"] * args["input_channels"]:
        raise FBKImportError(
            f"{config} gives {settings['input_size']} features per frame, the checkpoint was trained on "
            f"{args['input_feat_per_channel'] * args['input_channels']}"
        )
    target_tokens, target_ids = target_vocabulary(tgt_entries)
    source_tokens, source_ids = source_vocabulary(src_entries)
    weights = convert_weights(fbk["model"], target_ids, source_ids, checkpoint)

    with tempfile.TemporaryDirectory(prefix="fbk_import.") as tmp:
        exp = Path(tmp)
        shutil.copyfile(tgt_spm, exp / "tgt.model")
        shutil.copyfile(src_spm, exp / "src.model")
        settings.update(
            token_list=target_tokens,
            src_token_list=source_tokens,
            token_type="bpe",
            bpemodel=str(exp / "tgt.model"),
            src_token_type="bpe",
            src_bpemodel=str(exp / "src.model"),
            frontend=None,
            frontend_conf={},
        )
        training_config = _training_config(settings)
        try:  # the weights must fit the model the config describes, strictly
            torch.save(weights, exp / "model.pth")
            load_st_model(argparse.Namespace(**training_config), exp / "model.pth")
        except ModelLoadError as err:
            raise FBKImportError(f"{checkpoint}: {err}") from None
        (exp / "config.yaml").write_text(yaml_no_alias_safe_dump(training_config, indent=4, sort_keys=False))
        if gcmvn is not None:  # next to the rest: member names are relative to their common directory
            shutil.copyfile(gcmvn, exp / "gcmvn.npz")
        pack_model(exp, exp / "model.pth", out, exp / "gcmvn.npz" if gcmvn is not None else None)
    return out

