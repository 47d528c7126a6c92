#!/usr/bin/env python3
"""Training-step time and peak memory of ours, ours without compression, our limit and ESPnet's peer.

A step is the forward and backward of the whole model on one batch, loss
included (each model's own: ours label-smoothed CE + 0.5 CTC on the source at
block 8, the peer label-smoothed CE + 0.3 CTC on the source at its output),
gradients then dropped; no optimizer. Batches hold 4 utterances of equal length
(random features, targets and transcripts at MuST-C's token rates, see
``models.train_batch``).

Time: for each length, the models take turns (ours, ours none, peer, limit),
one warm-up round, then the median of ``--repeats`` rounds (``timing.interleaved``),
so a busy machine slows them alike. Both the wall time and the CPU time of the
process are kept: with one thread the CPU time is what the step
costs on a core of its own, whatever else runs on the machine. Ours' CTC head gets the blank bias that compresses to
``--target_ratio`` (calibrated once, ``models.calibrate_blank_bias``); the ratio
it reaches in each step (dropout changes it a little) is reported, and the
limit keeps the ratio ours reaches on the same batch (``models.compression_ratio``).

Peak memory: the high-water mark of the resident set (Linux ``VmHWM``, reset
through ``/proc/self/clear_refs`` after a warm-up step) during the second step,
minus the resident set before the first, in a fresh process per model and
length, with glibc's mmap threshold fixed at 128 KiB so that freed tensors go
back to the system instead of staying in the heap. It counts activations,
gradients, temporaries and what a step leaves behind for the next (ESPnet's
attention layers keep their last weights), not the weights or the batch.

Work: the floating-point operations of one step (``FlopCounterMode``), the
bound on any speed-up that does not change the model: a step that does 0.6 of
the peer's operations at the same efficiency takes 0.6 of its time.
"""

import argparse
import functools
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

import models
from timing import interleaved

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One forward+backward; the model's logged stats."""
    loss, stats, _ = model(**batch)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return {k: float(v) for k, v in stats.items() if v is not None}


def time_steps(
    names: Sequence[str], lengths: Sequence[float], threads: Sequence[int], repeats: int, blank_bias: float
) -> list[dict]:
    """Median step time of each model at each length and thread count (models interleaved)."""
    built = {name: models.build(name, blank_bias).train() for name in names}
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for seconds in lengths:
            rows += _time_length(built, seconds, n_threads, repeats)
    return rows


def _time_length(built: dict[str, torch.nn.Module], seconds: float, threads: int, repeats: int) -> list[dict]:
    batch = models.train_batch(seconds)
    if "ours" in built and "limit" in built:
        built["limit"].encoder.ratio = models.compression_ratio(built["ours"], batch)
    timed = interleaved({name: functools.partial(step, model, batch) for name, model in built.items()}, repeats)
    rows = []
    for name, result in timed.items():
        row = dict(model=name, seconds=seconds, threads=threads, step_s=result.wall_s, cpu_s=result.cpu_s,
                   times=result.wall, cpu_times=result.cpu, parameters=models.parameters(built[name]))
        if name == "ours":
            row["compression_ratio"] = statistics.median(stats["compression_ratio"] for stats in result.outputs)
        if name == "limit":
            row["compression_ratio"] = built["limit"].encoder.ratio
        rows.append(row)
        print(f"  {threads} thr {seconds:4g} s  {models.LABELS[name]:12} {row['step_s']:8.2f} s"
              f" (CPU {row['cpu_s']:.2f} s)"
              + (f"  ratio {row['compression_ratio']:.3f}" if "compression_ratio" in row else ""), flush=True)
    return rows


def _memory_kib() -> dict[str, int]:
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) for key in ("VmHWM", "VmRSS")}


def probe_memory(name: str, seconds: float, blank_bias: float, ratio: float, threads: int) -> dict:
    """Peak RSS growth of one step (this process must be fresh, with :data:`MALLOC_ENV`)."""
    torch.set_num_threads(threads)
    model = models.build(name, blank_bias, ratio).train()
    batch = models.train_batch(seconds)
    before = _memory_kib()["VmRSS"]  # the weights and the batch
    step(model, batch)
    between = _memory_kib()["VmRSS"]  # what a step leaves behind (e.g. attention weights kept in modules)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    stats = step(model, batch)
    peak = _memory_kib()["VmHWM"]
    return dict(model=name, seconds=seconds, peak_mib=(peak - before) / 1024, resident_mib=before / 1024,
                kept_mib=(between - before) / 1024, compression_ratio=stats.get("compression_ratio"))


def peak_memory(name: str, seconds: float, blank_bias: float, ratio: float, threads: int = 1) -> dict:
    """:func:`probe_memory` in a fresh process."""
    command = [sys.executable, __file__, "--probe_memory", name, "--lengths", str(seconds),
               "--blank_bias", str(blank_bias), "--ratio", str(ratio), "--threads", str(threads)]
    result = subprocess.run(command, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe of {name} at {seconds} s failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_rows(names: Sequence[str], lengths: Sequence[float], blank_bias: float, ratios: dict[float, float],
                threads: int = 1) -> list[dict]:
    """Peak memory of each model at each length; the limit keeps ``ratios[seconds]``."""
    rows = []
    for seconds in lengths:
        for name in names:
            rows.append(peak_memory(name, seconds, blank_bias, ratios.get(seconds, 1.0), threads))
            print(f"  memory {seconds:4g} s  {models.LABELS[name]:12} {rows[-1]['peak_mib']:8.0f} MiB", flush=True)
    return rows


def step_flops(name: str, seconds: float, blank_bias: float, ratio: float) -> dict:
    """Floating-point operations of one step, as torch's ``FlopCounterMode`` counts them
    (matrix products, convolutions, attention kernels; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = models.build(name, blank_bias, ratio).train()
    torch.manual_seed(0)  # the same dropout masks, hence the same compression, as any other count
    with FlopCounterMode(display=False) as counter:
        stats = step(model, models.train_batch(seconds))
    return dict(model=name, seconds=seconds, gflop=counter.get_total_flops() / 1e9,
                compression_ratio=stats.get("compression_ratio"))


def flop_rows(names: Sequence[str], lengths: Sequence[float], blank_bias: float,
              ratios: dict[float, float]) -> list[dict]:
    """:func:`step_flops` of each model at each length; the limit keeps ``ratios[seconds]``."""
    rows = []
    for seconds in lengths:
        for name in names:
            rows.append(step_flops(name, seconds, blank_bias, ratios.get(seconds, 1.0)))
            print(f"  flops  {seconds:4g} s  {models.LABELS[name]:12} {rows[-1]['gflop']:8.0f} GFLOP", flush=True)
    return rows


def parse_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=parse_floats, default=[5.0, 10.0, 20.0], help="utterance seconds: 5,10,20")
    parser.add_argument("--models", default=",".join(models.MODELS), help=f"among {', '.join(models.MODELS)}")
    parser.add_argument("--threads", default="1", help="torch threads, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up round")
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio ours is calibrated to")
    parser.add_argument("--blank_bias", type=float, default=None, help="skip the calibration, use this bias")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (fresh processes)")
    parser.add_argument("--probe_memory", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--ratio", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = args.models.split(",")
    if args.probe_memory:
        print(json.dumps(probe_memory(args.probe_memory, args.lengths[0], args.blank_bias or 0.0, args.ratio,
                                      int(args.threads))))
        return
    bias = args.blank_bias
    if bias is None:
        bias, ratio = models.calibrated_bias(args.target_ratio)
        print(f"blank bias {bias:.3f}: compression ratio {ratio:.3f} on the calibration batch")
    rows = time_steps(names, args.lengths, [int(t) for t in args.threads.split(",")], args.repeats, bias)
    if args.memory:
        ratios = {row["seconds"]: row["compression_ratio"] for row in rows if row["model"] == "limit"}
        memory_rows(names, args.lengths, bias, ratios)


if __name__ == "__main__":
    main()
