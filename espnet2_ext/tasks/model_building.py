"""Building our ST model from a training config, for training and for inference alike.

:class:`~espnet2_ext.tasks.st_ctc_compress.STCTCCompressTask` resolves class names
through ESPnet's ``ClassChoices`` (which import every ESPnet model family);
translating needs only the few classes a config names, so :func:`lazy_class`
imports just those. Both then build the model with :func:`build_st_model`.
"""

import argparse
import importlib
import logging
import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

# Our classes, and the ESPnet ones a packed model may name, by config key and name.
CLASSES: dict[str, dict[str, str]] = {
    "encoder": {
        "ctc_compress_conformer": "espnet2_ext.asr.encoder.ctc_compress_conformer_encoder:CTCCompressConformerEncoder",
    },
    "decoder": {
        "fbk_transformer": "espnet2_ext.asr.decoder.fbk_transformer_decoder:FBKTransformerDecoder",
        "transformer": "espnet2.asr.decoder.transformer_decoder:TransformerDecoder",
    },
    "normalize": {
        "utterance_cmvn": "espnet2_ext.layers.utterance_cmvn:UtteranceCMVN",
        "global_mvn": "espnet2.layers.global_mvn:GlobalMVN",
        "utterance_mvn": "espnet2.layers.utterance_mvn:UtteranceMVN",
    },
    "specaug": {"specaug": "espnet2.asr.specaug.specaug:SpecAug"},
    "frontend": {"default": "espnet2.asr.frontend.default:DefaultFrontend"},
}
OWN_CLASSES = {"encoder": ("ctc_compress_conformer",), "decoder": ("fbk_transformer",), "normalize": ("utterance_cmvn",)}

ClassResolver = Callable[[str, str], type]


class ModelLoadError(ValueError):
    """A config or weights that do not give a model; the message says which and why."""


class UnreadableWeightsError(ModelLoadError):
    """A weights file torch cannot load: truncated, corrupt, or refused by ``weights_only``
    (a pickle that would run code). ``reason`` is torch's reason on one line, for callers
    that name the file their own way (a model zip names its member)."""

    def __init__(self, model_file: str | Path, reason: str):
        super().__init__(f"{model_file} is not a readable PyTorch weights file ({reason})")
        self.model_file = Path(model_file)
        self.reason = reason


def load_failure_reason(err: BaseException) -> str:
    """torch.load's reason for ``err`` on one line: the first sentence of its first line.

    ``weights_only`` wraps the unpickler's own words (``Unsupported global: GLOBAL
    posix.system ...``) in paragraphs of advice, the first of which suggests loading
    with ``weights_only=False``, i.e. running the file's code: its words are taken
    from the wrapped error instead. The type is kept (a ``KeyError`` reads ``'101'``).
    """
    if isinstance(err, pickle.UnpicklingError) and isinstance(err.__context__, pickle.UnpicklingError):
        err = err.__context__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    sentence = re.split(r"(?<=\.)\s", lines[0], maxsplit=1)[0].rstrip(".") if lines else ""
    return f"{type(err).__name__}: {sentence}" if sentence else type(err).__name__


def lazy_class(kind: str, name: str) -> type:
    """The class a config's ``<kind>: <name>`` names, importing only its module."""
    known = CLASSES.get(kind, {})
    if name not in known:
        raise ModelLoadError(f"{kind}: {name!r} is not supported here (known: {', '.join(sorted(known))})")
    module, attribute = known[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def read_token_list(value: str | Path | Sequence[str], name: str) -> list[str]:
    """A token list given inline (saved configs) or as a file of one token per line."""
    if isinstance(value, (str, Path)):
        with open(value, encoding="utf-8") as f:
            return [line.rstrip() for line in f]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ModelLoadError(f"{name} must be a file path or a list of tokens, got {type(value).__name__}")


def build_st_model(args: argparse.Namespace, resolve: ClassResolver = lazy_class) -> torch.nn.Module:
    """Our ST model from a training config; token lists read from files are stored inline in ``args``."""
    from espnet2_ext.st.espnet_model import ESPnetSTCTCCompressModel

    token_list = read_token_list(args.token_list, "token_list")
    args.token_list = token_list  # keep the saved config self-contained
    if getattr(args, "src_token_list", None) is None:
        raise ModelLoadError("src_token_list is required: it is the vocabulary of the CTC head")
    src_token_list = read_token_list(args.src_token_list, "src_token_list")
    args.src_token_list = src_token_list
    logging.info(f"Vocabulary sizes: target {len(token_list)}, source {len(src_token_list)}")

    if args.input_size is None:
        frontend = resolve("frontend", args.frontend)(**args.frontend_conf)
        input_size = frontend.output_size()
    else:
        args.frontend, args.frontend_conf = None, {}
        frontend, input_size = None, args.input_size
    optional = {}
    for kind in ("specaug", "normalize"):
        name = getattr(args, kind, None)
        optional[kind] = resolve(kind, name)(**getattr(args, f"{kind}_conf")) if name is not None else None
    encoder = resolve("encoder", args.encoder)(
        input_size=input_size, ctc_vocab_size=len(src_token_list), **args.encoder_conf
    )
    decoder = resolve("decoder", args.decoder)(
        vocab_size=len(token_list), encoder_output_size=encoder.output_size(), **args.decoder_conf
    )
    return ESPnetSTCTCCompressModel(
        vocab_size=len(token_list),
        token_list=token_list,
        frontend=frontend,
        encoder=encoder,
        decoder=decoder,
        src_token_list=src_token_list,
        **optional,
        **args.model_conf,
    )


def load_weights(model: torch.nn.Module, model_file: str | Path) -> torch.nn.Module:
    """Load weights strictly into ``model`` (on whatever device it is).

    ESPnet loads with ``strict=False``: weights of another architecture would
    leave layers at their random initialisation without a word. Weights are
    read with ``weights_only=True``, so a model file from elsewhere cannot run code,
    and onto the CPU, so a device problem is never mistaken for a bad file.

    Raises:
        UnreadableWeightsError: torch cannot read the file.
        ModelLoadError: the file is not a state dict, or its parameter names or
            shapes differ from the model's.
    """
    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt bytes make torch's readers raise a dozen types (KeyError, struct.error, ...)
        raise UnreadableWeightsError(model_file, load_failure_reason(err)) from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{model_file} holds a {type(state).__name__}, not a state dict")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [
        f"{name} {tuple(state[name].shape)} instead of {tuple(value.shape)}"
        for name, value in expected.items()
        if name in state and state[name].shape != value.shape
    ]
    if missing or unexpected or reshaped:
        raise ModelLoadError(
            f"{model_file} does not fit the model its config describes: "
            f"{len(missing)} missing parameters {_preview(missing)}, "
            f"{len(unexpected)} unexpected {_preview(unexpected)}, "
            f"{len(reshaped)} of another shape {_preview(reshaped)}"
        )
    model.load_state_dict(state)
    return model


def load_st_model(
    args: argparse.Namespace,
    model_file: str | Path | None,
    device: str = "cpu",
    resolve: ClassResolver = lazy_class,
) -> torch.nn.Module:
    """The model of a training config with its weights (random without ``model_file``)."""
    try:
        model = build_st_model(args, resolve).to(device)
    except (TypeError, KeyError, AttributeError) as err:
        raise ModelLoadError(f"the config does not describe a model: {err}") from None
    return model if model_file is None else load_weights(model, model_file)


def _preview(names: Sequence[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return f"({shown}{', ...' if len(names) > count else ''})" if names else "()"

