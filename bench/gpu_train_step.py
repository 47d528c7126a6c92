#!/usr/bin/env python3
"""Training throughput on one GPU at FBK's batch size: ours against ESPnet's peer, fp32, TF32 and bf16.

FBK trains with 40k frames per GPU and mini-batch (4 GPUs x 2 accumulated:
320k frames per update). A step here is what one GPU does per mini-batch:
forward, backward and a fused Adam step, on ~40k frames of random features
(``--shapes``: utterances x seconds), the models of :mod:`models` (ours with
its CTC head's blank logit raised to compress about as a trained model does;
the peer built from ESPnet's classes). Reported per model, precision and shape:
the median step time after warm-up, frames per second, the peak of
``torch.cuda.max_memory_allocated``, and the GPU-hours of FBK's 100k and 200k
updates on one such GPU (8 mini-batches per update).

``--modes eager,compiled`` runs ours both ways (compiled as training compiles it:
``espnet2_ext.train.compilation.compile_model``, the same weights): for each, the
seconds of the first step (compiling included), the model FLOP utilisation (the
step's floating-point operations, counted once by ``FlopCounterMode``, per second,
over the GPU's peak for the precision, ``--peak_tflops``), the host-device
synchronisations of one step (``torch.cuda.set_sync_debug_mode``: each one warns)
and the CUDA kernels it launches (``torch.profiler``).

``--attention`` also times FBK's relative attention alone (forward+backward):
our hand-written matmuls against ``scaled_dot_product_attention`` with the
position term passed as an additive bias, and checks they agree.

Needs CUDA. Writes ``--out`` (JSON) and prints a Markdown table.
"""

import argparse
import contextlib
import json
import time
import warnings
from collections.abc import Iterator

import models
import torch
from timing import interleaved

# Dense peak of an H200 SXM in TFLOP/s per precision: fp32 without TF32 (FBK's, and ESPnet's default),
# tf32 = fp32 with TF32 matrix products and convolutions (ESPnet's ``use_tf32: true``).
PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "tf32": 494.7, "fp32": 67.0}
# precision -> (autocast dtype, TF32 on)
PRECISIONS = {"fp32": (torch.float32, False), "tf32": (torch.float32, True), "bf16": (torch.bfloat16, False),
              "fp16": (torch.float16, False)}
UPDATES = (100_000, 200_000)
MINIBATCHES_PER_UPDATE = 8  # FBK: 4 GPUs x accumulation 2, 40k frames each


def build_peer_from_classes(seed: int = 0) -> torch.nn.Module:
    """ESPnet's stock ST model as ``STTask.build_model`` builds it from :func:`models.peer_namespace`'s
    settings, without importing ESPnet's whole task registry (whose optional dependencies a GPU
    image may lack)."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    from espnet2.layers.utterance_mvn import UtteranceMVN
    from espnet2.st.espnet_model import ESPnetSTModel

    torch.manual_seed(seed)
    target, source = models.token_lists()
    encoder = ConformerEncoder(80, **models.PEER_ENCODER_CONF)
    return ESPnetSTModel(
        vocab_size=len(target), token_list=target, frontend=None, specaug=None,
        normalize=UtteranceMVN(**models.PEER_NORMALIZE_CONF), preencoder=None, encoder=encoder, hier_encoder=None,
        md_encoder=None, extra_mt_encoder=None, postencoder=None,
        decoder=TransformerDecoder(len(target), 512, **models.PEER_DECODER_CONF),
        extra_asr_decoder=None, extra_mt_decoder=None, ctc=CTC(len(source), 512), st_ctc=CTC(len(target), 512),
        st_joint_network=None, src_vocab_size=len(source), src_token_list=source, **models.PEER_MODEL_CONF,
    )


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matrix products and convolutions on or off inside, as ESPnet's ``use_tf32`` sets them."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def batch_of(utterances: int, seconds: float, device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in models.train_batch(seconds, batch_size=utterances).items()}


def make_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype):
    """One training step (forward, backward, clipping, a fused Adam step at lr 0: the same work as a real
    step, but the weights, and so the calibrated compression, stay)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), fused=True)

    def one_step() -> dict[str, torch.Tensor]:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            loss, stats, _ = model(**batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return stats

    return one_step


def step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype) -> float:
    """Floating-point operations of one forward and backward (matrix products, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            loss, _, _ = model(**batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def syncs_and_launches(one_step) -> tuple[int, int]:
    """Host-device synchronisations (each warns under ``set_sync_debug_mode``) and CUDA kernels of one step."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            one_step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        one_step()
        torch.cuda.synchronize()
    launches = sum(event.count for event in prof.key_averages() if event.device_type == torch.autograd.DeviceType.CUDA)
    return syncs, launches


def time_model(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype, warmup: int, steps: int
) -> dict[str, float]:
    one_step = make_step(model, batch, dtype)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    started = time.perf_counter()
    one_step()
    torch.cuda.synchronize()
    first_step_s = time.perf_counter() - started
    timed = interleaved({"step": one_step}, steps, warmup, torch.cuda.synchronize)["step"]
    stats = timed.last
    ratio = float(stats["compression_ratio"]) if "compression_ratio" in stats else float("nan")
    syncs, launches = syncs_and_launches(one_step)
    return {"step_s": timed.wall_s, "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "compression_ratio": ratio, "first_step_s": first_step_s, "syncs": syncs, "launches": launches}


def attention_comparison(device: str, batch: int = 20, time_steps: int = 500, repeats: int = 10) -> dict[str, float]:
    """FBK's attention, hand-written vs SDPA with the shifted position term as a bias."""
    from espnet2_ext.layers.fbk_rel_attention import (
        FBKRelativePositions,
        FBKRelPositionMultiHeadedAttention,
    )

    torch.manual_seed(0)
    attention = FBKRelPositionMultiHeadedAttention(8, 512, 0.0).to(device)
    x = torch.randn(batch, time_steps, 512, device=device, requires_grad=True)
    lengths = torch.randint(time_steps // 2, time_steps + 1, (batch,), device=device)
    lengths[0] = time_steps
    valid = (torch.arange(time_steps, device=device)[None] < lengths[:, None]).unsqueeze(1)
    positions = FBKRelativePositions.build(lengths, time_steps, 512, x.dtype)

    def sdpa(q_in: torch.Tensor) -> torch.Tensor:
        a = attention
        q, k, v = a.forward_qkv(q_in, q_in, q_in)
        b, h, t, d = q.shape
        p = a.linear_pos(positions.table).index_select(0, positions.rows.flatten()).view(b, 2 * t + 1, h, d).transpose(1, 2)
        full = torch.matmul(q + a.pos_bias_v.unsqueeze(1), p.transpose(-2, -1)).contiguous()
        row = t * (2 * t + 1)
        shifted = full.as_strided((b, h, t, t), (h * row, row, 2 * t, 1), full.storage_offset() + 2 * t - 1)
        bias = (shifted / a.sqrt_dim).masked_fill(~valid.unsqueeze(1), float("-inf"))
        context = torch.nn.functional.scaled_dot_product_attention(
            q + a.pos_bias_u.unsqueeze(1), k, v, attn_mask=bias, scale=1.0 / a.sqrt_dim
        )
        return a.linear_out(context.transpose(1, 2).reshape(b, t, h * d))

    def ours(q_in: torch.Tensor) -> torch.Tensor:
        return attention(q_in, q_in, q_in, positions, valid)

    result: dict[str, float] = {}
    with torch.no_grad():
        out_ours, out_sdpa = ours(x), sdpa(x)
        mask = valid.squeeze(1).unsqueeze(-1)
        result["max_abs_diff"] = float(((out_ours - out_sdpa) * mask).abs().max())
    timed = interleaved({"handwritten_s": lambda: ours(x).sum().backward(), "sdpa_s": lambda: sdpa(x).sum().backward()},
                        repeats, warmup=2, synchronize=torch.cuda.synchronize)
    result.update((name, runs.wall_s) for name, runs in timed.items())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="66x6,20x20", help="utterances x seconds per mini-batch")
    parser.add_argument("--precisions", default="fp32,tf32,bf16", help=f"of {', '.join(PRECISIONS)}")
    parser.add_argument("--models", default="ours,peer")
    parser.add_argument("--modes", default="eager,compiled", help="ours eager and/or compiled (the peer: eager)")
    parser.add_argument("--peak_tflops", default=",".join(f"{k}={v:g}" for k, v in PEAK_TFLOPS.items()),
                        help="the GPU's dense peak per precision, for the model FLOP utilisation")
    parser.add_argument("--target_ratio", type=float, default=0.4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--out", default="docs/gpu_train_step.json", help="read by report.py for docs/benchmarks.md")
    args = parser.parse_args()
    device = "cuda"
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": [],
               "peer_attention_dropout": models.PEER_ENCODER_CONF["attention_dropout_rate"],
               "warmup": args.warmup, "steps": args.steps}
    ours = models.build_ours("avg").to(device).train()
    bias, ratio = models.calibrate_blank_bias(ours, batch_of(4, 10.0, device), args.target_ratio)
    results["blank_bias"], results["calibrated_ratio"] = bias, ratio
    peaks = {k: float(v) * 1e12 for k, v in (item.split("=") for item in args.peak_tflops.split(","))}
    built = {("ours", "eager"): ours, ("peer", "eager"): build_peer_from_classes().to(device).train()}
    if "compiled" in args.modes.split(","):
        from espnet2_ext.train.compilation import compile_model

        twin = models.build_ours("avg").to(device).train()
        twin.load_state_dict(ours.state_dict())
        built[("ours", "compiled")] = compile_model(twin)
    for shape in args.shapes.split(","):
        utterances, seconds = shape.split("x")
        batch = batch_of(int(utterances), float(seconds), device)
        frames = int(batch["speech_lengths"].sum())
        for precision in args.precisions.split(","):
            dtype, use_tf32 = PRECISIONS[precision]
            flops = {name: step_flops(built[(name, "eager")], batch, dtype) for name in args.models.split(",")}
            for (name, mode), model in built.items():
                if name not in args.models.split(",") or mode not in args.modes.split(","):
                    continue
                with tf32(use_tf32):
                    row = time_model(model, batch, dtype, args.warmup, args.steps)
                row.update(model=name, mode=mode, precision=precision, shape=shape, frames=frames,
                           frames_per_s=frames / row["step_s"], gflop=flops[name] / 1e9,
                           mfu=flops[name] / row["step_s"] / peaks[precision])
                for updates in UPDATES:
                    row[f"gpu_hours_{updates // 1000}k"] = row["step_s"] * MINIBATCHES_PER_UPDATE * updates / 3600
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
    if args.attention:
        results["attention"] = attention_comparison(device)
        print(json.dumps(results["attention"]), flush=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    print(f"\n{results['device']}, torch {results['torch']}; blank bias {bias:.2f} -> ratio {ratio:.2f}\n")
    print("| model | mode | precision | batch | frames/s | step | MFU | first step | syncs | kernels | peak GiB "
          "| GPU-h 100k / 200k updates |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["rows"]:
        print(f"| {r['model']} | {r['mode']} | {r['precision']} | {r['shape']} | {r['frames_per_s']:,.0f} "
              f"| {r['step_s']:.3f} s | {r['mfu']:.1%} | {r['first_step_s']:.0f} s | {r['syncs']} | {r['launches']} "
              f"| {r['peak_gib']:.1f} | {r['gpu_hours_100k']:.0f} / {r['gpu_hours_200k']:.0f} |")


if __name__ == "__main__":
    main()
