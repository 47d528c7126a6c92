#!/usr/bin/env python3
"""The models the benchmarks compare, at FBK's full size with random weights, and their inputs.

- ``ours``: our ST model from ``conf/train.yaml``, built as training builds it
  (``espnet2_ext.tasks.model_building.build_st_model``): Conv1d subsampling,
  12 Conformer blocks of 512 (FBK's relative attention), CTC head and ``avg``
  compression after block 8, fairseq's 6-block decoder, utterance CMVN; no
  SpecAugment (timing). Vocabularies: 8000 target tokens, 5002 source tokens.
- ``ours_none``: the same with ``compression: none``.
- ``limit``: what ours would cost if compression were free
  (:class:`FreeCompressionEncoder`): blocks 9-12 and the decoder run on the
  compressed length ``ceil(ratio * T)``, ``ratio`` being the one ours reaches on
  the same batch, but no argmax, run segmentation or averaging is computed; the
  CTC head and its loss still run on all T frames.
- ``peer``: ESPnet 202511's stock ``ESPnetSTModel`` built by ESPnet's own
  ``STTask.build_model`` from :func:`peer_namespace`: ``ConformerEncoder`` 12 x 512,
  8 heads, FFN 2048, macaron, rel-pos (``rel_pos_type: latest``), conv kernel 31,
  ``conv2d`` input layer (4x), ESPnet's 6-block ``TransformerDecoder``, utterance
  MVN, and the source CTC FBK's model also has (``asr_weight: 0.3``,
  ``mtlalpha: 1.0``, on the encoder output): 119.2M parameters.

A random CTC head compresses nothing: its argmax changes at almost every frame.
A trained one emits long runs of blanks; :func:`calibrate_blank_bias` raises the
head's blank logit (``encoder.ctc_head.bias[0] += b``) by the bias that gives a
chosen compression ratio (compressed / uncompressed frames) on a calibration batch.

Run alone, this prints the parameter counts and calibrates the blank bias.
"""

import argparse
import math
import random
from pathlib import Path

import torch
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import CTCCompressConformerEncoder
from espnet2_ext.tasks.model_building import build_st_model, lazy_class
from espnet2_ext.utils.fbank import SAMPLE_RATE, num_frames

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "conf" / "train.yaml"
MODELS = ("ours", "ours_none", "peer", "limit")
LABELS = {"ours": "ours (avg)", "ours_none": "ours (none)", "peer": "ESPnet peer", "limit": "our limit"}

# Token rates of MuST-C en-de (about 2.9 English and 2.7 German words per second
# of speech), in pieces of a 5000-piece English and an 8000-piece German model.
SOURCE_TOKENS_PER_SECOND = 3.4
TARGET_TOKENS_PER_SECOND = 4.3
LANG_TAG_ID = 2


def mustc_like_seconds(count: int, rng: random.Random) -> list[float]:
    """Utterance durations shaped like MuST-C en-de's segments (about 6 s on average): log-normal,
    median 5 s, spread 0.6, kept within 0.3 to 30 s; drawn from ``rng``."""
    return [min(30.0, max(0.3, rng.lognormvariate(math.log(5.0), 0.6))) for _ in range(count)]


def token_lists() -> tuple[list[str], list[str]]:
    """Target (8000: <blank>, <unk>, <lang:de>, pieces, <sos/eos>) and source (5002) tokens."""
    target = ["<blank>", "<unk>", "<lang:de>", *(f"w{i}" for i in range(7996)), "<sos/eos>"]
    source = ["<blank>", "<unk>", *(f"s{i}" for i in range(4999)), "<sos/eos>"]
    return target, source


def our_config(compression: str = "avg") -> dict:
    """A training config of FBK's model as ``build_st_model`` and ``Speech2Translation`` take it."""
    train = yaml.safe_load(TRAIN_CONFIG.read_text(encoding="utf-8"))
    target, source = token_lists()
    return dict(
        encoder=train["encoder"], encoder_conf={**train["encoder_conf"], "compression": compression},
        decoder=train["decoder"], decoder_conf=train["decoder_conf"], model_conf=train["model_conf"],
        token_list=target, src_token_list=source, token_type="word", src_token_type="word",
        bpemodel=None, src_bpemodel=None, input_size=80, frontend=None, frontend_conf={},
        specaug=None, specaug_conf={}, normalize=train["normalize"], normalize_conf={},
    )


class FreeCompressionEncoder(CTCCompressConformerEncoder):
    """Our encoder with compression for free: the lower bound of what compressing can cost.

    After block ``ctc_block`` each utterance keeps its first ``ceil(ratio * T)``
    states instead of the CTC runs' averages: the later blocks and the decoder
    see the compressed length, the CTC head and loss the full one, and nothing
    computes the argmax, the runs or the averages.
    """

    ratio: float = 1.0

    def _compress(
        self, x: torch.Tensor, lengths: torch.Tensor, ctc_logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.ceil(lengths * self.ratio).long().clamp(min=1)
        return x[:, : int(lengths.max())], lengths


def _free_compression_classes(kind: str, name: str) -> type:
    return FreeCompressionEncoder if kind == "encoder" else lazy_class(kind, name)


def build_ours(compression: str = "avg", blank_bias: float = 0.0, seed: int = 0) -> torch.nn.Module:
    """Our full-size model, random weights, the CTC head's blank logit raised by ``blank_bias``."""
    torch.manual_seed(seed)
    model = build_st_model(argparse.Namespace(**our_config(compression)))
    raise_blank(model, blank_bias)
    return model


def build_limit(ratio: float, seed: int = 0) -> torch.nn.Module:
    """Ours with :class:`FreeCompressionEncoder` keeping ``ratio`` of the frames."""
    torch.manual_seed(seed)
    model = build_st_model(argparse.Namespace(**our_config("avg")), resolve=_free_compression_classes)
    model.encoder.ratio = ratio
    return model


def raise_blank(model: torch.nn.Module, blank_bias: float) -> None:
    with torch.no_grad():
        model.encoder.ctc_head.bias[0] += blank_bias


# The peer: ESPnet's Conformer and Transformer decoder at ours' size, with ours' dropout
# everywhere (conf/train.yaml, FBK's): ESPnet's defaults leave the attention weights
# undropped, a step that computes and saves less than the same model trained as FBK does.
PEER_ENCODER_CONF = dict(
    output_size=512, attention_heads=8, linear_units=2048, num_blocks=12, cnn_module_kernel=31,
    input_layer="conv2d", macaron_style=True, rel_pos_type="latest", pos_enc_layer_type="rel_pos",
    selfattention_layer_type="rel_selfattn", activation_type="swish", use_cnn_module=True,
    dropout_rate=0.1, positional_dropout_rate=0.1, attention_dropout_rate=0.1,
)
PEER_DECODER_CONF = dict(
    attention_heads=8, linear_units=2048, num_blocks=6, dropout_rate=0.1, positional_dropout_rate=0.1,
    self_attention_dropout_rate=0.1, src_attention_dropout_rate=0.1,
)

PEER_NORMALIZE_CONF = dict(norm_vars=True)
PEER_MODEL_CONF = dict(
    asr_weight=0.3, mtlalpha=1.0, lsm_weight=0.1, report_cer=False, report_wer=False, report_bleu=False
)


def peer_namespace() -> argparse.Namespace:
    """The peer's training config, as ESPnet's ``st_train`` would save it."""
    from espnet2.tasks.st import STTask

    args = STTask.get_parser().parse_args(
        ["--input_size", "80", "--token_list", "-", "--src_token_list", "-", "--output_dir", "-"]
    )
    target, source = token_lists()
    args.token_list, args.src_token_list = target, source
    args.token_type = args.src_token_type = "bpe"  # no bpemodel: hypotheses stay token ids
    args.bpemodel = args.src_bpemodel = None
    args.output_dir = None
    args.encoder = "conformer"
    args.encoder_conf = dict(PEER_ENCODER_CONF)
    args.decoder = "transformer"
    args.decoder_conf = dict(PEER_DECODER_CONF)
    args.normalize, args.normalize_conf = "utterance_mvn", dict(PEER_NORMALIZE_CONF)
    args.specaug = None
    args.model_conf = dict(PEER_MODEL_CONF)
    return args


def build_peer(seed: int = 0) -> torch.nn.Module:
    from espnet2.tasks.st import STTask

    torch.manual_seed(seed)
    return STTask.build_model(peer_namespace())


def write_peer_config(path: Path) -> Path:
    """The peer's ``config.yaml``, what ESPnet's ``Speech2Text`` loads."""
    with path.open("w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(peer_namespace()), f, indent=4, sort_keys=False)
    return path


def build(name: str, blank_bias: float = 0.0, ratio: float = 1.0) -> torch.nn.Module:
    """One of :data:`MODELS`; ``blank_bias`` concerns ``ours``, ``ratio`` concerns ``limit``."""
    if name == "ours":
        return build_ours("avg", blank_bias)
    if name == "ours_none":
        return build_ours("none")
    if name == "limit":
        return build_limit(ratio)
    if name == "peer":
        return build_peer()
    raise ValueError(f"unknown model {name!r}, expected one of {MODELS}")


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_batch(seconds: float, batch_size: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    """``batch_size`` utterances of ``seconds`` each: random features (as many frames as
    fbank gives), a target starting with the language tag and a source transcript at
    MuST-C's token rates; the keyword arguments of both models' ``forward``."""
    g = torch.Generator().manual_seed(seed)
    frames = num_frames(int(seconds * SAMPLE_RATE))
    target_length = 1 + round(TARGET_TOKENS_PER_SECOND * seconds)
    source_length = max(1, round(SOURCE_TOKENS_PER_SECOND * seconds))
    target, source = token_lists()
    text = torch.randint(LANG_TAG_ID + 1, len(target) - 1, (batch_size, target_length), generator=g)
    text[:, 0] = LANG_TAG_ID
    return dict(
        speech=torch.randn(batch_size, frames, 80, generator=g),
        speech_lengths=torch.full((batch_size,), frames),
        text=text,
        text_lengths=torch.full((batch_size,), target_length),
        src_text=torch.randint(2, len(source) - 1, (batch_size, source_length), generator=g),
        src_text_lengths=torch.full((batch_size,), source_length),
    )


@torch.no_grad()
def compression_ratio(model: torch.nn.Module, batch: dict[str, torch.Tensor], seed: int = 0) -> float:
    """Encoder frames after / before compression on ``batch``, in the model's current mode
    (dropout masks fixed by ``seed`` in training mode)."""
    torch.manual_seed(seed)
    out = model.encode_with_ctc(batch["speech"], batch["speech_lengths"])
    return float(out.lengths.sum() / out.ctc_lengths.sum())


def calibrate_blank_bias(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], target: float, steps: int = 14
) -> tuple[float, float]:
    """The blank bias giving ``target`` compression ratio on ``batch`` (bisection), and the ratio.

    The model's blank bias is left at the value found (added to what it was).
    """
    low, high = 0.0, 16.0
    original = model.encoder.ctc_head.bias[0].item()
    for _ in range(steps):
        middle = (low + high) / 2
        with torch.no_grad():
            model.encoder.ctc_head.bias[0] = original + middle
        if compression_ratio(model, batch) > target:
            low = middle
        else:
            high = middle
    bias = (low + high) / 2
    with torch.no_grad():
        model.encoder.ctc_head.bias[0] = original + bias
    return bias, compression_ratio(model, batch)


def calibrated_bias(target: float, seconds: float = 10.0) -> tuple[float, float]:
    """Blank bias for ``target`` on a training batch of ``seconds`` utterances, in training mode."""
    model = build_ours("avg").train()
    return calibrate_blank_bias(model, train_batch(seconds), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio to calibrate for")
    parser.add_argument("--seconds", type=float, default=10.0, help="utterance length of the calibration batch")
    args = parser.parse_args()
    for name in MODELS:
        print(f"{LABELS[name]:14} {parameters(build(name)) / 1e6:7.1f}M parameters")
    bias, ratio = calibrated_bias(args.target_ratio, args.seconds)
    print(f"blank bias {bias:.3f} gives compression ratio {ratio:.3f} (4 x {args.seconds:g} s, training mode)")


if __name__ == "__main__":
    main()
