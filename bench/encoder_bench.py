#!/usr/bin/env python3
"""Our encoder against ESPnet's stock ConformerEncoder of equal size, in one run.

For each encoder, on the same random batch: forward+backward time (median of
``--repeats`` after one warm-up), peak memory of one forward+backward (CUDA:
max allocated; CPU: growth of the process's peak RSS, each encoder measured in
a fresh process), the padding error (max |difference| between an utterance
encoded alone and inside the padded batch, eval mode), and for ours the
compression ratio (encoder frames after / before compression). Ratios are
ours / stock. With random weights the CTC argmax changes almost every frame
and nothing is compressed; ``--blank-bias`` raises the CTC head's blank logit
to mimic a trained model's long blank runs and show what compression saves.
"""

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from typing import Dict

import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import CTCCompressConformerEncoder

SIZE = dict(output_size=512, attention_heads=8, linear_units=2048, num_blocks=12, cnn_module_kernel=31)


def build(name: str, compression: str, blank_bias: float) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "stock":
        return ConformerEncoder(
            80, **SIZE, input_layer="conv2d", macaron_style=True, rel_pos_type="latest",
            pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
            activation_type="swish", use_cnn_module=True,
        )
    encoder = CTCCompressConformerEncoder(80, ctc_vocab_size=5000, **SIZE, compression=compression)
    with torch.no_grad():
        encoder.ctc_head.bias[0] += blank_bias
    return encoder


def make_batch(batch_size: int, min_frames: int, max_frames: int, device: str):
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(min_frames, max_frames + 1, (batch_size,), generator=g)
    lengths[0] = max_frames
    feats = torch.randn(batch_size, max_frames, 80, generator=g)
    for i, n in enumerate(lengths):
        feats[i, n:] = 0.0
    return feats.to(device), lengths.to(device)


def padding_error(encoder: torch.nn.Module, feats: torch.Tensor, lengths: torch.Tensor) -> float:
    """Max |alone - batched| over the valid frames of the batch's shortest utterance."""
    encoder.eval()
    with torch.no_grad():
        batched, out_lengths, _ = encoder(feats, lengths)
        i = int(lengths.argmin())
        alone, alone_lengths, _ = encoder(feats[i : i + 1, : lengths[i]], lengths[i : i + 1])
        n = min(int(alone_lengths[0]), int(out_lengths[i]))
        return (batched[i, :n] - alone[0, :n]).abs().max().item()


def measure(name: str, args: argparse.Namespace) -> Dict[str, float]:
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    encoder = build(name, args.compression, args.blank_bias).to(device)
    feats, lengths = make_batch(args.batch_size, args.min_frames, args.max_frames, device)
    result = {"padding_error": padding_error(encoder, feats, lengths)}
    encoder.train()

    def step() -> None:
        out, _, _ = encoder(feats, lengths)
        out.sum().backward()
        encoder.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        result["peak_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result["seconds"] = statistics.median(times)
    if name == "ours":
        with torch.no_grad():
            out = encoder.eval().encode(feats, lengths)
        result["compression_ratio"] = (out.lengths.sum() / out.ctc_lengths.sum()).item()
    result["device"] = device
    return result


def in_fresh_process(name: str, args: argparse.Namespace) -> Dict[str, float]:
    """Peak RSS only grows: each encoder gets its own process."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (name, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--min-frames", type=int, default=300)
    parser.add_argument("--max-frames", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compression", default="avg", help="strategy of our encoder")
    parser.add_argument("--blank-bias", type=float, default=0.0, help="added to the CTC blank logit")
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even with a GPU")
    args = parser.parse_args()
    stock = in_fresh_process("stock", args)
    ours = in_fresh_process("ours", args)
    print(
        f"batch {args.batch_size} x {args.min_frames}-{args.max_frames} frames, 12x512 Conformer, "
        f"{ours['device']}, {args.threads} threads, median of {args.repeats}"
    )
    print(f"{'':28}{'ESPnet stock':>14}{'ours':>14}{'ours/stock':>12}")
    for key, label in (("seconds", "forward+backward (s)"), ("peak_mib", "peak memory (MiB)")):
        print(f"{label:28}{stock[key]:14.3f}{ours[key]:14.3f}{ours[key] / stock[key]:12.3f}")
    print(f"{'padding error (max |diff|)':28}{stock['padding_error']:14.2e}{ours['padding_error']:14.2e}")
    print(
        f"compression ratio of ours ({args.compression}, blank bias {args.blank_bias}): "
        f"{ours['compression_ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
