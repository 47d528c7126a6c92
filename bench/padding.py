#!/usr/bin/env python3
"""Does padding change an utterance's encoding? Ours against ESPnet's peer.

Each utterance of a batch of different lengths is encoded alone and in the
batch (evaluation mode, full-size random models of :mod:`models`, ours with the
calibrated blank bias so that it compresses); reported per model: the largest
absolute difference of the valid encoder states, and whether the encoded
lengths agree (the differences are taken over the common frames when they
do not). Twice: through the whole ``encode`` (feature normalisation
included: the peer's ``UtteranceMVN`` with variances counts padded frames in
its statistics) and through the encoder alone on features already normalised
per utterance (what is left is the encoder's own leak: ESPnet's conv module
convolves over padded frames).

Usage:
    python bench/padding.py --seconds 2,4,6
"""

import argparse

import torch

import models
from espnet2_ext.layers.utterance_cmvn import UtteranceCMVN

MODELS = ("ours", "peer")


def _features(seconds: list[float], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(models.num_frames(int(s * models.SAMPLE_RATE)), 80, generator=g) for s in seconds]


def _normalised(features: torch.Tensor) -> torch.Tensor:
    """One utterance (T, F) normalised alone, as ours' ``UtteranceCMVN`` does."""
    return UtteranceCMVN()(features[None], torch.tensor([len(features)]))[0][0]


def _encode(model: torch.nn.Module, features: list[torch.Tensor], encoder_only: bool) -> list[torch.Tensor]:
    """Each utterance's valid encoder states when ``features`` are encoded as one batch."""
    lengths = torch.tensor([len(f) for f in features])
    batch = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)
    if encoder_only:
        out, out_lengths = model.encoder(batch, lengths)[:2]
    else:
        out, out_lengths = model.encode(batch, lengths)[:2]
    return [out[i, : int(n)] for i, n in enumerate(out_lengths)]


@torch.no_grad()
def padding_error(model: torch.nn.Module, features: list[torch.Tensor], encoder_only: bool) -> dict:
    batched = _encode(model, features, encoder_only)
    alone = [_encode(model, [f], encoder_only)[0] for f in features]
    differing = sum(len(a) != len(b) for a, b in zip(alone, batched))
    common = [min(len(a), len(b)) for a, b in zip(alone, batched)]
    error = max(float((a[:n] - b[:n]).abs().max()) for a, b, n in zip(alone, batched, common))
    return dict(max_abs_diff=error, lengths_differ=differing, utterances=len(features))


def measure(seconds: list[float], blank_bias: float) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    features = _features(seconds)
    for name in MODELS:
        model = models.build(name, blank_bias=blank_bias).eval()
        for encoder_only in (False, True):
            inputs = [_normalised(f) for f in features] if encoder_only else features
            row = dict(model=name, part="encoder" if encoder_only else "encode", seconds=seconds,
                       **padding_error(model, inputs, encoder_only))
            rows.append(row)
            print(f"  {models.LABELS[name]:12} {row['part']:8} max |alone - batched| {row['max_abs_diff']:.2e}, "
                  f"{row['lengths_differ']} of {row['utterances']} encoded to another length", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", default="2,4,6", help="utterance lengths of the batch")
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio ours is calibrated to")
    args = parser.parse_args()
    bias, _ = models.calibrated_bias(args.target_ratio, 4.0)
    measure([float(s) for s in args.seconds.split(",")], bias)


if __name__ == "__main__":
    main()
