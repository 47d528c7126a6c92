"""ESPnet ST task for FBK's CTC-compressing Conformer: our encoder and model choices."""

from espnet2_ext.utils.deferred_imports import defer_import

for _unused_by_our_model in ("g2p_en", "nltk"):  # before ESPnet's registry imports them (NLTK downloads)
    defer_import(_unused_by_our_model)

import argparse  # noqa: E402 (the deferral above must come first)
import logging
from pathlib import Path

import torch.distributed as dist
import yaml
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.tasks.st import STTask, frontend_choices, preprocessor_choices, specaug_choices
from espnet2.tasks.st import decoder_choices as espnet_decoder_choices
from espnet2.tasks.st import normalize_choices as espnet_normalize_choices
from espnet2.torch_utils.initialize import initialize
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.types import str2bool

from espnet2_ext.layers.masked_convolution import share_batch_statistics
from espnet2_ext.st.espnet_model import ESPnetSTCTCCompressModel
from espnet2_ext.tasks.model_building import (  # noqa: F401 (ModelLoadError: part of this module's API)
    OWN_CLASSES,
    ModelLoadError,
    build_st_model,
    lazy_class,
    load_st_model,
)
from espnet2_ext.train.compilation import compile_model, compile_setting, should_compile
from espnet2_ext.train.preprocessor import SpeechLengthCheck
from espnet2_ext.train.trainer import STTrainer


def _with_ours(kind: str, espnet_classes: dict) -> dict:
    return dict(espnet_classes, **{name: lazy_class(kind, name) for name in OWN_CLASSES[kind]})


encoder_choices = ClassChoices(
    "encoder",
    classes=_with_ours("encoder", {}),
    type_check=AbsEncoder,
    default="ctc_compress_conformer",
)
decoder_choices = ClassChoices(
    "decoder",
    classes=_with_ours("decoder", espnet_decoder_choices.classes),
    type_check=AbsDecoder,
    default="fbk_transformer",
)
normalize_choices = ClassChoices(
    "normalize",
    classes=_with_ours("normalize", espnet_normalize_choices.classes),
    type_check=AbsNormalize,
    default="utterance_cmvn",
    optional=True,
)
_CHOICES = {c.name: c for c in (frontend_choices, specaug_choices, normalize_choices, encoder_choices, decoder_choices)}


class STCTCCompressTask(STTask):
    """ESPnet's ST task with the CTC-compressing encoder and FBK's multi-loss model.

    Added to ESPnet's choices: the encoder ``ctc_compress_conformer``, the
    decoder ``fbk_transformer`` (fairseq's arithmetic, the default) and the
    normalisation ``utterance_cmvn`` (fairseq's, padding-exact, the default).
    Everything else (data, iterators, trainer, tokenisation, SpecAugment, ESPnet's
    decoders and global CMVN) is ESPnet's. The source token list feeds the
    encoder's CTC head. The trainer is ESPnet's, reading each step's logged
    statistics from the device at once (:class:`~espnet2_ext.train.trainer.STTrainer`);
    ``--compile`` compiles the model for training (:mod:`espnet2_ext.train.compilation`).
    """

    trainer = STTrainer

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
            help="In distributed training, compute the conv modules' BatchNorm statistics over all processes",
        )
        parser.add_argument(
            "--compile",
            type=compile_setting,
            default="auto",
            help="torch.compile the model for training (checkpoints keep their keys): true, false, or auto: "
            "compiled on GPUs (ngpu > 0), eager on the CPU, where compiling does not pay",
        )

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> SpeechLengthCheck:
        encoder_class = encoder_choices.get_class(args.encoder)
        min_frames = encoder_class.min_input_length_for(args.encoder_conf)
        return SpeechLengthCheck(super().build_preprocess_fn(args, train), min_frames)

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetSTCTCCompressModel:
        model = build_st_model(args, lambda kind, name: _CHOICES[kind].get_class(name))
        if args.init is not None:
            initialize(model, args.init)
        if getattr(args, "sync_batchnorm", False) and dist.is_available() and dist.is_initialized():
            model, per_process = share_batch_statistics(model, cuda=args.ngpu > 0)
            if per_process:  # DDP refuses SyncBatchNorm on CPU modules
                logging.info("SyncBatchNorm skipped for ESPnet's BatchNorm layers: it is CUDA-only; on CPU each "
                             "process keeps their statistics (ours are summed over the processes)")
        if should_compile(args.compile, args.ngpu):
            logging.info("The model is compiled (torch.compile): the first steps take minutes")
            compile_model(model)
        return model

    @classmethod
    def build_model_from_file(
        cls,
        config_file: Path | str | None = None,
        model_file: Path | str | None = None,
        device: str = "cpu",
    ) -> tuple[ESPnetSTCTCCompressModel, argparse.Namespace]:
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
        cls, args: argparse.Namespace, model_file: Path | str | None, device: str = "cpu"
    ) -> ESPnetSTCTCCompressModel:
        """The model of a training config with its weights, loaded strictly
        (:func:`espnet2_ext.tasks.model_building.load_weights`)."""
        return load_st_model(args, model_file, device, lambda kind, name: _CHOICES[kind].get_class(name))
