"""Write one of our model zips as FBK-fairseq's files: the inverse of ``import_fbk``.

What FBK's tools read (``generate.py`` with ``--user-dir examples/speech_to_text``, its
SimulEval agents): ``checkpoint.pt`` (fairseq's ``args``, a Namespace its loader turns into
``cfg``, and the ``model`` state dict by FBK's parameter names), the data ``config.yaml``
of task ``speech_to_text_ctc``, the fairseq dictionaries ``tgtdict.txt``/``srcdict.txt``,
the SentencePiece models ``tgtdict.model``/``srcdict.model`` and, when the zip packs
global CMVN statistics, ``gcmvn.npz`` (float32 ``mean`` and ``std``, as FBK's
``extract_gcmvn.py`` writes them; ``config.yaml``'s ``global_cmvn``, which FBK's agents read).
Names, vocabulary order and architecture come from
:mod:`espnet2_ext.main_funcs.fbk_format`, the description ``import_fbk`` reads the other way.

fairseq's dictionaries always hold ``<s> <pad> </s> <unk>``; a recipe's token lists have no
``<s>`` (and its source list no ``<pad>``). Those rows get a logit no input can raise:
the CTC head's a zero weight row and a bias of :data:`SINK_LOGIT`; the output projection's
(which has no bias) the row of :func:`constant_logit_row`, whose product with the final
LayerNorm's output is :data:`SINK_LOGIT` whatever the input. Their probability is then
below float32's smallest number, so every score and CTC argmax is the zip's.

Refused, with one message naming the key, because FBK's model would compute something
else: ESPnet's attention (``rel_pos_type: latest``) or decoder (``decoder: transformer``),
a normalisation other than ``utterance_cmvn`` (with FBK's floor) or none (``global_mvn``
included: ``import_fbk`` could not bring it back either), a waveform front-end, token types
other than SentencePiece, and a feed-forward size FBK cannot express. Training-only
settings (SpecAugment, dropouts, label smoothing, the CTC weight) are carried where FBK has
the key; dropouts FBK keeps as one value where we have several are named in a warning.
"""

import argparse
import inspect
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from espnet2_ext.fileio.atomic import atomic_dir
from espnet2_ext.inference.speech2translation import LANG_TAG_PREFIX
from espnet2_ext.main_funcs.fbk_format import (
    CTC_BLANK,
    OUR_DECODER,
    OUR_ENCODER,
    OUR_REL_POS,
    SOURCE,
    TARGET,
    VOCABULARY_ROWS,
    fbk_constants,
    fbk_model_arguments,
    rename,
    settings_lost_in_fbk,
    to_fbk_tensor,
)
from espnet2_ext.main_funcs.model_archive import ModelArchiveError, PackedModel, open_model
from espnet2_ext.tasks.model_building import ModelLoadError, UnreadableWeightsError, lazy_class, load_st_model

# The logit of a fairseq special our vocabulary lacks: e^-100 is below float32's smallest
# number next to any softmax sum (which holds the largest logit's e^0 = 1).
SINK_LOGIT = -100.0
# Largest weight constant_logit_row may write: far inside float16's range, for fairseq's --fp16.
MAX_SINK_WEIGHT = 1e4
UTTERANCE_CMVN_FLOOR = 1e-10  # fairseq's UtteranceCMVN: variance floored at 1e-10
GCMVN_FILE = "gcmvn.npz"
# fairseq's bookkeeping arguments of a speech_to_text_ctc Conformer trained with ctc_multi_loss.
FAIRSEQ_ARGUMENTS: dict[str, Any] = dict(
    arch="conformer",
    task="speech_to_text_ctc",
    criterion="ctc_multi_loss",
    underlying_criterion="label_smoothed_cross_entropy",
    config_yaml="config.yaml",
    user_dir="examples/speech_to_text",
    max_source_positions=6000,
    max_target_positions=1024,
    encoder_normalize_before=True,
    no_syncbatchnorm=False,
    adaptive_input=False,
    adaptive_softmax_dropout=0,
    decoder_layerdrop=0.0,
    quant_noise_pq=0,
    distance_penalty=False,
    init_variance=0.0,
    allow_extra_tokens=False,
)


class FBKExportError(Exception):
    """A zip that cannot be written in FBK's format, or an output that cannot be written; the message says why."""


# --------------------------------------------------------------------------- what FBK can hold


def _defaults(cls: type) -> dict[str, Any]:
    parameters = inspect.signature(cls).parameters
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def _with_defaults(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """``<kind>_conf`` with the defaults of the class ``<kind>`` names for the keys it leaves out."""
    return {**_defaults(lazy_class(kind, config[kind])), **(config.get(f"{kind}_conf") or {})}


def model_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The zip's model keys, every one given (defaults filled in)."""
    from espnet2_ext.st.espnet_model import ESPnetSTCTCCompressModel

    return {
        "input_size": config.get("input_size"),
        "encoder_conf": _with_defaults(config, "encoder"),
        "decoder_conf": _with_defaults(config, "decoder"),
        "model_conf": {**_defaults(ESPnetSTCTCCompressModel), **(config.get("model_conf") or {})},
    }


def unrepresentable(config: dict[str, Any]) -> list[str]:
    """What in a training config FBK's model and data config cannot hold (empty: all of it)."""
    problems = []
    if config.get("encoder") != OUR_ENCODER:
        problems.append(f"encoder: {config.get('encoder')} (FBK's Conformer is {OUR_ENCODER})")
    elif (rel_pos := _with_defaults(config, "encoder")["rel_pos_type"]) != OUR_REL_POS:
        problems.append(f"encoder_conf.rel_pos_type: {rel_pos} is ESPnet's attention (FBK's is {OUR_REL_POS})")
    if config.get("decoder") != OUR_DECODER:
        problems.append(f"decoder: {config.get('decoder')} is ESPnet's decoder (FBK's is {OUR_DECODER})")
    normalize = config.get("normalize")
    if normalize not in (None, "utterance_cmvn"):
        problems.append(f"normalize: {normalize} (export_fbk writes utterance_cmvn, FBK's, or none)")
    elif normalize is not None and (eps := _with_defaults(config, "normalize")["eps"]) != UTTERANCE_CMVN_FLOOR:
        problems.append(f"normalize_conf.eps: {eps} (FBK's utterance_cmvn floors the variance at {UTTERANCE_CMVN_FLOOR})")
    if config.get("frontend") is not None or config.get("input_size") is None:
        problems.append(f"frontend: {config.get('frontend')} (FBK's models read fbank features, input_size)")
    for side in ("", "src_"):
        if config.get(f"{side}token_type") != "bpe" or not config.get(f"{side}bpemodel"):
            problems.append(
                f"{side}token_type: {config.get(f'{side}token_type')} (FBK's data config needs a SentencePiece model)"
            )
    if not problems:
        encoder = _with_defaults(config, "encoder")
        if encoder["linear_units"] % encoder["output_size"]:
            problems.append(
                f"encoder_conf.linear_units: {encoder['linear_units']} (FBK's is a multiple of output_size, "
                f"{encoder['output_size']})"
            )
    return problems


# --------------------------------------------------------------------------- weights


def constant_logit_row(gain: torch.Tensor, bias: torch.Tensor, logit: float = SINK_LOGIT) -> torch.Tensor | None:
    """A row ``w`` with ``w . LayerNorm(x) == logit`` for every ``x`` (the LayerNorm's ``gain``, ``bias``).

    LayerNorm(x) = gain * n + bias, where n = (x - mean) / std sums to 0. With
    w = c / gain: w . LayerNorm(x) = c * sum(n) + c * sum(bias / gain) = c * S, so
    c = logit / S. None where that takes a weight beyond :data:`MAX_SINK_WEIGHT`
    (S near 0: a bias near 0, as an untrained model's; a gain of 0).
    """
    gain, bias = gain.double(), bias.double()
    if not bool(gain.ne(0).all()):
        return None
    total = float((bias / gain).sum())
    row = (logit / total) / gain if total != 0 else None
    if row is None or not bool(row.isfinite().all()) or float(row.abs().max()) > MAX_SINK_WEIGHT:
        return None
    return row.float()


def _rows(tensor: torch.Tensor, rows: list[int | None], fill: torch.Tensor) -> torch.Tensor:
    """``tensor``'s rows in fairseq's order, ``fill`` where ``rows`` has None."""
    return torch.stack([tensor[row] if row is not None else fill for row in rows]).contiguous()


def fbk_state_dict(
    state: dict[str, torch.Tensor],
    target_rows: list[int | None],
    source_rows: list[int | None],
    encoder_layers: int,
    source: Path,
) -> dict[str, torch.Tensor]:
    """FBK's state dict from ours: names mapped, vocabulary rows in fairseq's order, FBK's constants added."""
    fbk: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        fbk_name = rename(name, "to_fbk")
        if fbk_name is None:
            raise FBKExportError(f"{source}: parameter {name} has no counterpart in FBK's Conformer")
        fbk[fbk_name] = to_fbk_tensor(fbk_name, tensor.detach().clone())
    output = state["decoder.output_layer.weight"]
    sink_row = torch.zeros(output.size(1))
    if None in target_rows:
        sink_row = constant_logit_row(state["decoder.after_norm.weight"], state["decoder.after_norm.bias"])
        if sink_row is None:
            raise FBKExportError(
                f"{source}: fairseq's target dictionary starts with <s>, which token_list lacks, and its output row "
                f"cannot get a logit of {SINK_LOGIT:g} for every input: decoder.after_norm's bias is about 0 "
                "(an untrained model?)"
            )
    fills = {
        "decoder.embed_tokens.weight": torch.zeros(output.size(1)),  # <s> and <pad> are never fed to the decoder
        "decoder.output_projection.weight": sink_row,
        "encoder.ctc_fc.weight": torch.zeros(state["encoder.ctc_head.weight"].size(1)),
        "encoder.ctc_fc.bias": torch.tensor(SINK_LOGIT),
    }
    for fbk_name, ours, layout in VOCABULARY_ROWS:
        fbk[fbk_name] = _rows(state[ours], target_rows if layout is TARGET else source_rows, fills[fbk_name])
    if torch.equal(state["decoder.embed.weight"], output):  # tied, as FBK's --share-decoder-input-output-embed
        fbk["decoder.embed_tokens.weight"] = fbk["decoder.output_projection.weight"]
    fbk.update(fbk_constants(encoder_layers, output.size(1)))
    return fbk


# --------------------------------------------------------------------------- files


def _dictionary(entries: list[str]) -> str:
    """A fairseq ``dict.txt`` (``<symbol> <count>``); counts are not kept in our zips: 1."""
    return "".join(f"{entry} 1\n" for entry in entries)


def data_config(config: dict[str, Any], lang_tag: bool, gcmvn: bool) -> dict[str, Any]:
    """FBK's ``speech_to_text_ctc`` data config (``S2TDataConfigSrc``) for our training config."""
    evaluation = ["utterance_cmvn"] if config.get("normalize") == "utterance_cmvn" else []
    data: dict[str, Any] = {
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": "tgtdict.model"},
        "bpe_tokenizer_src": {"bpe": "sentencepiece", "sentencepiece_model": "srcdict.model"},
        "vocab_filename": "tgtdict.txt",
        "vocab_filename_src": "srcdict.txt",
        "input_channels": 1,
        "input_feat_per_channel": config["input_size"],
        "transforms": {"*": evaluation, "_train": list(evaluation)},
    }
    if evaluation:
        cmvn = _with_defaults(config, "normalize")
        data["utterance_cmvn"] = {"norm_means": bool(cmvn["norm_means"]), "norm_vars": bool(cmvn["norm_vars"])}
    if config.get("specaug") == "specaug":
        spec = _with_defaults(config, "specaug")
        data["specaugment"] = {
            "freq_mask_F": int(spec["freq_mask_width_range"][1]) if spec["apply_freq_mask"] else 0,
            "freq_mask_N": int(spec["num_freq_mask"]) if spec["apply_freq_mask"] else 0,
            "time_mask_T": int(spec["time_mask_width_range"][1]) if spec["apply_time_mask"] else 0,
            "time_mask_N": int(spec["num_time_mask"]) if spec["apply_time_mask"] else 0,
            "time_mask_p": 1.0,
            "time_wrap_W": int(spec["time_warp_window"]) if spec["apply_time_warp"] else 0,
        }
        data["transforms"]["_train"].append("specaugment")
    if lang_tag:
        data["prepend_tgt_lang_tag"] = True  # decode with --prefix-size 1 (generate) or --prefix-token (agents)
    if gcmvn:
        data["global_cmvn"] = {"stats_npz_path": GCMVN_FILE}
    return data


def _checkpoint(state: dict[str, torch.Tensor], arguments: dict[str, Any], out: Path) -> dict[str, Any]:
    """What fairseq's ``save_checkpoint`` writes, without optimizer state (``--reset-optimizer`` to train on)."""
    return {
        "args": argparse.Namespace(**arguments, data=str(out.resolve())),
        "model": state,
        "optimizer_history": [
            {"criterion_name": "CtcMultiLoss", "optimizer_name": "FairseqAdam",
             "lr_scheduler_state": {"best": None}, "num_updates": 0}
        ],
        "extra_state": {"epoch": 1, "train_iterator": {"epoch": 1, "iterations_in_epoch": 0}, "val_loss": None},
        "last_optimizer_state": None,
    }


def output_problem(out: Path, overwrite: bool) -> str | None:
    """Why ``out`` is not a place to export to: a file, or a non-empty directory without ``overwrite``."""
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a directory"
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        return f"{out} exists and is not empty (--overwrite replaces it)"
    return None


# --------------------------------------------------------------------------- the whole export


def _load_state(packed: PackedModel) -> dict[str, torch.Tensor]:
    try:
        model = load_st_model(argparse.Namespace(**packed.config), packed.model_file)
    except UnreadableWeightsError as err:
        raise FBKExportError(str(packed.unreadable_weights(err.reason))) from None
    except ModelLoadError as err:
        raise FBKExportError(f"{packed.source}: {err}") from None
    return model.state_dict()


def export_fbk(model: str | Path, out: str | Path, cache_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` (a zip ``translate`` runs, or its unpacked directory) into the directory ``out``
    as FBK-fairseq's files (see the module's docstring). ``out`` appears whole or not at all.

    Raises:
        FBKExportError: a zip that cannot be opened or holds something FBK's format cannot
            (one message naming every such key), ``out`` a file or a non-empty directory
            (without ``overwrite``; with it, ``out`` is replaced). Nothing is written then.
    """
    model, out = Path(model), Path(out)
    if problem := output_problem(out, overwrite):
        raise FBKExportError(problem)
    try:
        packed = open_model(model, cache_dir)
    except ModelArchiveError as err:
        raise FBKExportError(str(err)) from None
    config = packed.config
    if problems := unrepresentable(config):
        raise FBKExportError(f"{model}: cannot be written in FBK's format: {'; '.join(problems)}")
    try:
        target_entries, target_rows = TARGET.split(config["token_list"])
        source_entries, source_rows = SOURCE.split(config["src_token_list"])
    except ValueError as err:
        raise FBKExportError(f"{model}: {err}") from None
    if config["token_list"][-1] != "<sos/eos>" or config["src_token_list"][0] != "<blank>":
        raise FBKExportError(
            f"{model}: token_list must end with <sos/eos> and src_token_list start with <blank> (the CTC blank, "
            f"fairseq's {CTC_BLANK})"
        )
    settings = model_settings(config)
    if lost := settings_lost_in_fbk(settings):
        logging.warning(f"training-only settings FBK keeps once, written as the first: {'; '.join(lost)}")
    arguments = {**FAIRSEQ_ARGUMENTS, **fbk_model_arguments(settings)}
    state = fbk_state_dict(_load_state(packed), target_rows, source_rows, arguments["encoder_layers"], model)
    arguments["share_decoder_input_output_embed"] = (
        state["decoder.embed_tokens.weight"] is state["decoder.output_projection.weight"]
    )
    lang_tag = any(token.startswith(LANG_TAG_PREFIX) for token in target_entries)
    data = data_config(config, lang_tag, packed.global_cmvn is not None)
    gcmvn = _global_cmvn(packed) if packed.global_cmvn is not None else None

    with atomic_dir(out) as tmp:
        torch.save(_checkpoint(state, arguments, out), tmp / "checkpoint.pt")
        (tmp / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        (tmp / "tgtdict.txt").write_text(_dictionary(target_entries), encoding="utf-8")
        (tmp / "srcdict.txt").write_text(_dictionary(source_entries), encoding="utf-8")
        shutil.copyfile(config["bpemodel"], tmp / "tgtdict.model")
        shutil.copyfile(config["src_bpemodel"], tmp / "srcdict.model")
        if gcmvn is not None:
            with (tmp / GCMVN_FILE).open("wb") as stream:
                np.savez(stream, mean=gcmvn[0], std=gcmvn[1])
    return out


def _global_cmvn(packed: PackedModel) -> tuple[np.ndarray, np.ndarray]:
    """The packed statistics as FBK's float32 mean and std."""
    from espnet2_ext.simultaneous.incremental_features import CMVNStatsError, load_global_cmvn

    try:
        stats = load_global_cmvn(packed.global_cmvn)
    except CMVNStatsError as err:
        raise FBKExportError(f"{packed.source}: global CMVN statistics: {err}") from None
    return stats.mean.astype(np.float32), stats.std.astype(np.float32)
