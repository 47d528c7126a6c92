"""ESPnet ST task for FBK's CTC-compressing Conformer: our encoder and model choices."""

import argparse
import logging
import pickle
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import yaml
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.tasks.st import STTask
from espnet2.tasks.st import decoder_choices as espnet_decoder_choices
from espnet2.tasks.st import frontend_choices, preprocessor_choices, specaug_choices
from espnet2.tasks.st import normalize_choices as espnet_normalize_choices
from espnet2.torch_utils.initialize import initialize
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.types import str2bool

from espnet2_ext.asr.decoder.fbk_transformer_decoder import FBKTransformerDecoder
from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import (
    CTCCompressConformerEncoder,
)
from espnet2_ext.layers.utterance_cmvn import UtteranceCMVN
from espnet2_ext.st.espnet_model import ESPnetSTCTCCompressModel
from espnet2_ext.train.preprocessor import SpeechLengthCheck

encoder_choices = ClassChoices(
    "encoder",
    classes=dict(ctc_compress_conformer=CTCCompressConformerEncoder),
    type_check=AbsEncoder,
    default="ctc_compress_conformer",
)
decoder_choices = ClassChoices(
    "decoder",
    classes=dict(espnet_decoder_choices.classes, fbk_transformer=FBKTransformerDecoder),
    type_check=AbsDecoder,
    default="fbk_transformer",
)
normalize_choices = ClassChoices(
    "normalize",
    classes=dict(espnet_normalize_choices.classes, utterance_cmvn=UtteranceCMVN),
    type_check=AbsNormalize,
    default="utterance_cmvn",
    optional=True,
)


class ModelLoadError(ValueError):
    """Weights that cannot be loaded into the model their config describes."""


class STCTCCompressTask(STTask):
    """ESPnet's ST task with the CTC-compressing encoder and FBK's multi-loss model.

    Added to ESPnet's choices: the encoder ``ctc_compress_conformer``, the
    decoder ``fbk_transformer`` (fairseq's arithmetic, the default) and the
    normalisation ``utterance_cmvn`` (fairseq's, padding-exact, the default).
    Everything else (data, iterators, trainer, tokenisation, SpecAugment, ESPnet's
    decoders and global CMVN) is ESPnet's. The source token list feeds the
    encoder's CTC head.
    """

    class_choices_list = [
        frontend_choices,
        specaug_choices,
        normalize_choices,
        encoder_choices,
        decoder_choices,
        preprocessor_choices,
    ]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        parser.set_defaults(model_conf=get_default_kwargs(ESPnetSTCTCCompressModel))
        parser.add_argument(
            "--sync_batchnorm",
            type=str2bool,
            default=True,
            help="In distributed training, compute the conv modules' BatchNorm statistics over all GPUs",
        )

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> SpeechLengthCheck:
        encoder_class = encoder_choices.get_class(args.encoder)
        min_frames = encoder_class.min_input_length_for(args.encoder_conf)
        return SpeechLengthCheck(super().build_preprocess_fn(args, train), min_frames)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetSTCTCCompressModel:
        token_list = _read_token_list(args.token_list, "token_list")
        args.token_list = token_list  # keep the saved config self-contained
        if args.src_token_list is None:
            raise ValueError("--src_token_list is required: it is the vocabulary of the CTC head")
        src_token_list = _read_token_list(args.src_token_list, "src_token_list")
        args.src_token_list = src_token_list
        logging.info(f"Vocabulary sizes: target {len(token_list)}, source {len(src_token_list)}")

        if args.input_size is None:
            frontend = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
            input_size = frontend.output_size()
        else:
            args.frontend, args.frontend_conf = None, {}
            frontend, input_size = None, args.input_size
        specaug = (
            specaug_choices.get_class(args.specaug)(**args.specaug_conf)
            if args.specaug is not None
            else None
        )
        normalize = (
            normalize_choices.get_class(args.normalize)(**args.normalize_conf)
            if args.normalize is not None
            else None
        )
        encoder = encoder_choices.get_class(args.encoder)(
            input_size=input_size, ctc_vocab_size=len(src_token_list), **args.encoder_conf
        )
        decoder = decoder_choices.get_class(args.decoder)(
            vocab_size=len(token_list),
            encoder_output_size=encoder.output_size(),
            **args.decoder_conf,
        )
        model = ESPnetSTCTCCompressModel(
            vocab_size=len(token_list),
            token_list=token_list,
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            encoder=encoder,
            decoder=decoder,
            src_token_list=src_token_list,
            **args.model_conf,
        )
        if args.init is not None:
            initialize(model, args.init)
        if getattr(args, "sync_batchnorm", False) and dist.is_available() and dist.is_initialized():
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    @classmethod
    def build_model_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
    ) -> Tuple[ESPnetSTCTCCompressModel, argparse.Namespace]:
        """ESPnet's, except that the weights must fit the model exactly (see :meth:`load_model`)."""
        if config_file is None:
            if model_file is None:
                raise ValueError("give config_file, model_file or both")
            config_file = Path(model_file).parent / "config.yaml"
        with open(config_file, encoding="utf-8") as f:
            args = argparse.Namespace(**yaml.safe_load(f))
        return cls.load_model(args, model_file, device), args

    @classmethod
    def load_model(
        cls, args: argparse.Namespace, model_file: Optional[Union[Path, str]], device: str = "cpu"
    ) -> ESPnetSTCTCCompressModel:
        """Build the model of a training config and load its weights strictly.

        ESPnet loads with ``strict=False``: weights of another architecture would
        leave layers at their random initialisation without a word. Weights are
        read with ``weights_only=True``, so a model file from elsewhere cannot run code.

        Raises:
            ModelLoadError: the file is not a state dict, or its parameter names or
                shapes differ from the model's.
        """
        model = cls.build_model(args).to(device)
        if model_file is None:
            return model
        try:
            state = torch.load(model_file, map_location=device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise ModelLoadError(f"{model_file} is not a readable weights file: {err}") from None
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


def _preview(names: Sequence[str], count: int = 3) -> str:
    shown = ", ".join(names[:count])
    return f"({shown}{', ...' if len(names) > count else ''})" if names else "()"


def _read_token_list(value: Union[str, Path, Sequence[str]], name: str) -> List[str]:
    if isinstance(value, (str, Path)):
        with open(value, encoding="utf-8") as f:
            return [line.rstrip() for line in f]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ValueError(f"--{name} must be a file path or a list of tokens, got {type(value).__name__}")
