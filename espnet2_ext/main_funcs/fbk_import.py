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

How names, vocabulary rows and architecture arguments correspond is described once,
in :mod:`espnet2_ext.main_funcs.fbk_format`, which ``export_fbk`` reads the other way.
The embedding, output-projection and CTC rows are permuted into our order, so every
score, the CTC argmax (hence the compressed lengths) and the search are FBK's.

Checkpoints trained before FBK's padding fixes (the 🪲 rows of
``BUGFREE_CONFORMER.md``, or ``--batch-unsafe-relative-shift``) are accepted: at
batch size 1 there is no padding, so FBK's code computes what ours computes at
any batch size, which is how these models decode here.
"""

import argparse
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.fileio.fairseq_checkpoint import (
    FairseqCheckpointError,
    read_fairseq_checkpoint,
    read_fairseq_dictionary,
)
from espnet2_ext.fileio.input_file import not_a_file
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.main_funcs.fbk_format import (
    FBK_ARCHS,
    FBK_DEFAULTS,
    SOURCE,
    TARGET,
    VOCABULARY_ROWS,
    VocabularyLayout,
    is_constant,
    our_model_settings,
    rename,
    to_our_tensor,
)
from espnet2_ext.main_funcs.model_packing import global_cmvn_problem, pack_model
from espnet2_ext.tasks.model_building import ModelLoadError, load_st_model


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


def _check_entries(entries: Sequence[str], layout: VocabularyLayout, path: Path) -> None:
    clash = sorted(set(entries) & (set(layout.special_names()) | set(layout.fairseq_order)))
    if clash:
        raise FBKImportError(f"{path}: entry {clash[0]!r} clashes with a special token")


# --------------------------------------------------------------------------- weights


def convert_weights(
    fbk_state: dict[str, torch.Tensor], target_ids: Sequence[int], source_ids: Sequence[int], checkpoint: Path
) -> dict[str, torch.Tensor]:
    """Our state dict from FBK's: names mapped, vocabulary rows put in our order."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in fbk_state.items():
        if is_constant(name):
            continue
        ours = rename(name, "to_ours")
        if ours is None:
            raise FBKImportError(f"{checkpoint}: parameter {name} is not one of FBK's Conformer's")
        state[ours] = to_our_tensor(name, tensor).float()
    if "decoder.output_layer.weight" not in state and "decoder.embed.weight" in state:
        state["decoder.output_layer.weight"] = state["decoder.embed.weight"]  # shared input/output embeddings
    for _, name, layout in VOCABULARY_ROWS:
        ids, what = (target_ids, "target") if layout is TARGET else (source_ids, "source")
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
    _check_entries(tgt_entries, TARGET, Path(tgt_dict))
    _check_entries(src_entries, SOURCE, Path(src_dict))
    args = fbk_args(fbk["args"], checkpoint)
    settings = {**our_model_settings(args), **data_settings(Path(config))}
    if settings["input_size"] != args["input_feat_per_channel"] * args["input_channels"]:
        raise FBKImportError(
            f"{config} gives {settings['input_size']} features per frame, the checkpoint was trained on "
            f"{args['input_feat_per_channel'] * args['input_channels']}"
        )
    target_tokens, target_ids = TARGET.our_tokens(tgt_entries), TARGET.fairseq_ids(tgt_entries)
    source_tokens, source_ids = SOURCE.our_tokens(src_entries), SOURCE.fairseq_ids(src_entries)
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

