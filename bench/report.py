#!/usr/bin/env python3
"""``docs/benchmarks.md`` and ``docs/train_step.png`` from the results ``run_all.py`` saves.

``run_all.py`` measures and calls :func:`write`; run alone, this re-renders the
page and the plot from a saved ``benchmarks.json`` without measuring again.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

import models

# The targets, at 1 thread.
TRAIN_SPEEDUP = 1.9
TRAIN_MEMORY = 0.6
DECODE_SPEEDUP = {1: 2.0, 10: 3.0}
HELP_S = 1.5
FILE_S = 3.0
COMPILE_OPS_SHARE = 0.25  # issue 16: a compiled step dispatches at most this share of today's eager operations
COMPILE_SYNCS = 2  # host syncs per step
COMPILE_BREAKS = 1  # graph breaks of the training forward and loss
# Issue 16's starting point, measured by bench/compile_proxies.py (4 × 5 s, blank bias 4) at commit 05eeb4d;
# syncs: the step's own (forward and backward), then reading its 6 statistics and weight one by one; graph
# breaks with compile_model's dynamo settings (40 with dynamo's defaults, the count).
# all_ops: every aten event, those inside others included, as the issue counted (19,188 for 4 × 6 s).
COMPILE_BEFORE = dict(ops=5558, all_ops=18936, syncs=22, stats_syncs=7, breaks=42,
                      kinds="5 scalar read, 3 nonzero, 11 boolean indexing, 2 ctc_loss lengths, 1 copy to host")
SIMUL_STEP_S = 0.5  # one simultaneous step (1-s chunk) at SIMUL_GOAL_SECONDS of audio received
SIMUL_GOAL_SECONDS = 10.0


def machine_info() -> dict:
    """CPU, cores, memory, library versions, load and the checkout's commit."""
    import espnet
    import torch

    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = next(line for line in meminfo.read_text().splitlines() if line.startswith("MemTotal"))
        memory_gib = int(total.split()[1]) / 2**20
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=models.ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, cwd=models.ROOT).stdout.strip())
    return dict(
        cpu=cpu, cores=os.cpu_count(), memory_gib=memory_gib, python=platform.python_version(),
        torch=torch.__version__, espnet=espnet.__version__, system=platform.platform(),
        commit=commit + (" with uncommitted changes" if dirty else ""),
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def _threads(rows: list[dict]) -> list[int]:
    return sorted({row["threads"] for row in rows})


def _by(rows: list[dict], **keys) -> dict:
    found = [row for row in rows if all(row.get(k) == v for k, v in keys.items())]
    return found[0] if found else None


def _cell(row: dict, wall: str, cpu: str, threads: int) -> str:
    """``CPU (wall)`` at 1 thread, wall alone otherwise."""
    return f"{row[cpu]:.2f} ({row[wall]:.2f})" if threads == 1 else f"{row[wall]:.2f}"


def _time(row: dict, wall: str, cpu: str, threads: int) -> float:
    """What comparisons use: CPU time at 1 thread (immune to other processes), wall time otherwise."""
    return row[cpu] if threads == 1 else row[wall]


def _heading(threads: int, repeats: int) -> str:
    if threads == 1:
        return (f"**1 thread**, CPU seconds of the process (wall seconds), median of {repeats} after a warm-up; "
                "ratios and targets on CPU time")
    return f"**{threads} threads**, wall seconds, median of {repeats} after a warm-up"


def train_section(results: dict) -> str:
    train, memory, repeats = results["train"], results["memory"], results["settings"]["repeats"]
    parts = []
    for threads in _threads(train):
        rows = []
        for seconds in sorted({row["seconds"] for row in train if row["threads"] == threads}):
            cell = {name: _by(train, model=name, seconds=seconds, threads=threads) for name in models.MODELS}
            cost = {name: _time(cell[name], "step_s", "cpu_s", threads) for name in models.MODELS}
            speedup = cost["peer"] / cost["ours"]
            rows.append([
                f"{seconds:g} s", *(_cell(cell[n], "step_s", "cpu_s", threads) for n in models.MODELS),
                f"{speedup:.2f}", f"{cost['peer'] / cost['limit']:.2f}", f"{cell['ours']['compression_ratio']:.2f}",
                _verdict(speedup >= TRAIN_SPEEDUP) if threads == 1 else "",
            ])
        headers = ["4 utts of", *(models.LABELS[n] for n in models.MODELS), "peer / ours",
                   "peer / limit", "ratio reached", f"≥ {TRAIN_SPEEDUP}×"]
        parts.append(f"{_heading(threads, repeats)}:\n\n" + _table(headers, rows, "lrrrrrrrl"))
    if memory:
        gradients = {n: results["parameters"][n] * 4 / 2**20 for n in ("ours", "peer")}
        rows = []
        for seconds in sorted({row["seconds"] for row in memory}):
            cell = {name: _by(memory, model=name, seconds=seconds) for name in models.MODELS}
            share = cell["ours"]["peak_mib"] / cell["peer"]["peak_mib"]
            without = (cell["ours"]["peak_mib"] - gradients["ours"]) / (cell["peer"]["peak_mib"] - gradients["peer"])
            rows.append([f"{seconds:g} s", *(f"{cell[n]['peak_mib']:.0f}" for n in models.MODELS),
                         f"{share:.2f}", f"{cell['limit']['peak_mib'] / cell['peer']['peak_mib']:.2f}",
                         f"{without:.2f}", _verdict(share <= TRAIN_MEMORY)])
        headers = ["4 utts of", *(f"{models.LABELS[n]} (MiB)" for n in models.MODELS), "ours / peer",
                   "limit / peer", "ours / peer without gradients", f"≤ {TRAIN_MEMORY}×"]
        parts.append(
            "**Peak memory of one step** (the resident set's high-water mark during a step above the "
            "weights and the batch: activations, gradients, temporaries and what the previous step left "
            f"behind; the gradients alone are {gradients['ours']:.0f} MiB for ours and "
            f"{gradients['peer']:.0f} MiB for the peer):\n\n" + _table(headers, rows, "lrrrrrrrl"))
    if results.get("flops"):
        flops, train = results["flops"], results["train"]
        rows = []
        for seconds in sorted({row["seconds"] for row in flops}):
            cell = {name: _by(flops, model=name, seconds=seconds) for name in models.MODELS}
            timed = {name: _by(train, model=name, seconds=seconds, threads=1) for name in ("ours", "peer")}
            speedup = f"{timed['peer']['cpu_s'] / timed['ours']['cpu_s']:.2f}" if all(timed.values()) else ""
            rows.append([f"{seconds:g} s", *(f"{cell[n]['gflop']:.0f}" for n in models.MODELS),
                         f"{cell['peer']['gflop'] / cell['ours']['gflop']:.2f}", speedup])
        parts.append(
            "**Operations of one step** (GFLOP as `torch.utils.flop_counter` counts them: matrix products and "
            "convolutions). Their ratio bounds the speed-up of any implementation of the same models: the "
            "measured speed-up at 1 thread is beside it.\n\n"
            + _table(["4 utts of", *(f"{models.LABELS[n]} (GFLOP)" for n in models.MODELS),
                      "peer / ours operations", "peer / ours time"], rows))
    parts.append("![train step time against utterance length](train_step.png)")
    return "\n\n".join(parts)


def decoding_section(results: dict) -> str:
    decoding, repeats = results["decoding"], results["settings"]["repeats"]
    parts = []
    for threads in _threads(decoding):
        rows = []
        stock = _by(decoding, decoder="stock", threads=threads)
        stock_cost = _time(stock, "seconds", "cpu_seconds", threads)
        for row in [r for r in decoding if r["threads"] == threads]:
            name = "ESPnet `Speech2Text` (stock)" if row["decoder"] == "stock" else "ours, `Speech2Translation`"
            cost = _time(row, "seconds", "cpu_seconds", threads)
            speedup = stock_cost / cost
            target = ""
            if row["decoder"] == "ours" and threads == 1 and row["batch_size"] in DECODE_SPEEDUP:
                wanted = DECODE_SPEEDUP[row["batch_size"]]
                target = f"≥ {wanted:g}×: {_verdict(speedup >= wanted)}"
            rows.append([name, row["batch_size"], _cell(row, "seconds", "cpu_seconds", threads),
                         f"{cost / row['audio_s']:.3f}", f"{row['clips'] / cost:.2f}", f"{row['tokens_per_clip']:.1f}",
                         f"{speedup:.2f}", target])
        parts.append(
            f"{_heading(threads, repeats)}; {decoding[0]['clips']} clips, "
            f"{decoding[0]['audio_s']:.0f} s of audio:\n\n"
            + _table(["decoder", "batch", "time (s)", "RTF", "clips/s", "tokens/clip", "speed vs stock", "target"],
                     rows, "lrrrrrrl"))
    return "\n\n".join(parts)


def startup_section(results: dict) -> str:
    rows = []
    for row in results["startup"]:
        threads = row["threads"]
        rows.append([
            threads, f"{row['help_cpu_s']:.2f} ({row['help_s']:.2f})",
            _verdict(row["help_cpu_s"] < HELP_S) if threads == 1 else "",
            f"{row['file_cpu_s']:.2f} ({row['file_s']:.2f})",
            _verdict(row["file_cpu_s"] < FILE_S) if threads == 1 else "", row["model"],
        ])
    return _table(["threads", "`translate --help`", f"< {HELP_S} s", "one 3-s file", f"< {FILE_S} s", "model"],
                  rows, "rrlrll")


def fbank_section(results: dict) -> str:
    rows = [[f"{row['rate'] / 1000:g} kHz", f"{row['rtf']:.5f}", f"{1 / row['rtf']:.0f}×"] for row in results["fbank"]]
    return _table(["input", "RTF per core", "faster than real time"], rows)


def gpu_section(gpu: dict | None) -> str:
    """The GPU figures ``gpu_train_step.py`` saved (``docs/gpu_train_step.json``), if any."""
    if gpu is None:
        return ("No GPU figures: run `python bench/gpu_train_step.py --attention` on a CUDA machine; it writes "
                "`docs/gpu_train_step.json`, which this page then shows.")
    rows = []
    compiled = any("mode" in row for row in gpu["rows"])  # runs since issue 16: eager and compiled, MFU, syncs
    for row in gpu["rows"]:
        peer = _by(gpu["rows"], model="peer", precision=row["precision"], shape=row["shape"])
        ratio = f"{row['frames_per_s'] / peer['frames_per_s']:.2f}" if peer and row["model"] != "peer" else ""
        compression = "" if row["compression_ratio"] != row["compression_ratio"] else f"{row['compression_ratio']:.2f}"
        mode = [row["mode"], f"{row['mfu']:.1%}", f"{row['first_step_s']:.0f} s", row["syncs"], row["launches"]] \
            if compiled else []
        rows.append([models.LABELS[row["model"]], *mode, row["precision"],
                     row["shape"].replace("x", " × ") + " s", f"{row['frames_per_s']:,.0f}", ratio,
                     f"{row['step_s']:.3f}", f"{row['peak_gib']:.1f}", compression,
                     f"{row['gpu_hours_100k']:.0f} / {row['gpu_hours_200k']:.0f}"])
    extra = ["mode", "MFU", "first step", "syncs", "kernels"] if compiled else []
    text = (f"{gpu['device']}, torch {gpu['torch']}. One step is what one GPU does per mini-batch of FBK's "
            "(about 40k frames): forward, backward, gradient clipping and a fused Adam step (lr 0, so the "
            f"calibrated compression holds: blank bias {gpu['blank_bias']:.2f}, ratio {gpu['calibrated_ratio']:.2f}); "
            f"median of {gpu.get('steps', 5)} steps after {gpu.get('warmup', 2)}. GPU-hours: FBK's 100k and 200k updates of 8 such mini-batches "
            "(4 GPUs × accumulation 2) on one GPU.\n\n"
            + _table(["model", *extra, "precision", "batch", "frames/s", "ours / peer", "step (s)", "peak GiB",
                      "ratio", "GPU-h 100k / 200k"], rows, "l" + "lrrrr"[: len(extra)] + "llrrrrrr"))
    if gpu.get("peer_attention_dropout", 0.0) == 0.0:
        text += ("\n\nThese steps ran the peer with ESPnet's default attention dropout (none) against ours' 0.1, "
                 "so the peer did less work than ours (no dropout masks over the attention weights); the CPU "
                 "tables above give both the same dropout.")
    attention = gpu.get("attention")
    if attention:
        text += (f"\n\nFBK's relative attention alone (20 × 500 frames, forward+backward): our matmuls "
                 f"{attention['handwritten_s'] * 1e3:.2f} ms, `scaled_dot_product_attention` with the shifted "
                 f"position term as an additive mask {attention['sdpa_s'] * 1e3:.2f} ms "
                 f"({(1 - attention['sdpa_s'] / attention['handwritten_s']) * 100:.1f}% less), outputs equal "
                 f"within {attention['max_abs_diff']:.1g}. Not adopted: too little gain for a second code path.")
    return text


def end_to_end_section(run: dict | None) -> str:
    """``st_train``'s own rate over a MuST-C-sized corpus (``train_end_to_end.py``'s result), if measured."""
    if run is None:
        return ("Not measured yet: run `python bench/train_end_to_end.py --out DIR --ngpu 1 --step_json "
                "docs/gpu_train_step.json --json docs/train_end_to_end.json` on a CUDA machine.")
    text = (f"`st_train` with `conf/train.yaml` on {run['ngpu']} device(s) ({run.get('device', '?')}), "
            f"{run['updates']} updates of {run['accum_grad']} mini-batches over {run['utterances']:,} synthetic "
            f"utterances of MuST-C's lengths; after the first log interval: {run['updates_per_hour']:,.0f} updates/h "
            f"on the wall clock, {run['gpu_hours_100k_updates']:.1f} GPU-hours per 100k updates; "
            f"the steps themselves (ESPnet's `train_time`) {run['train_time_share']:.0%} of the wall clock, "
            f"compression ratio {run['compression_ratio']:.2f}.")
    if "predicted_updates_per_hour" in run:
        text += (f" The step benchmark's {run['step_row']} row predicts {run['predicted_updates_per_hour']:,.0f} "
                 f"updates/h: measured / predicted {run['measured_over_predicted']:.2f}.")
    return text


def compile_section(proxies: dict | None) -> str:
    """What a step asks of the host (``compile_proxies.py``'s result), before and after issue 16."""
    if not proxies:
        return "Not measured in this run."
    rows = [[f"{models.LABELS['ours']}, before (05eeb4d)", "eager", COMPILE_BEFORE["all_ops"], COMPILE_BEFORE["ops"],
             COMPILE_BEFORE["syncs"], COMPILE_BEFORE["kinds"], COMPILE_BEFORE["stats_syncs"], COMPILE_BEFORE["breaks"]]]
    for row in proxies["rows"]:
        kinds = ", ".join(f"{count} {kind}" for kind, count in row["sync_kinds"].items()) or "none"
        rows.append([models.LABELS[row["model"]], row["path"], row.get("all_ops", ""), row["ops"], row["syncs"], kinds,
                     row["stats_syncs"], row.get("breaks", "")])
    text = (f"One training step of 4 utterances of {proxies['seconds']:g} s (full-size models, ours' blank bias "
            f"{proxies['blank_bias']:.2f}, no SpecAugment), counted on the CPU (`bench/compile_proxies.py`): the "
            "aten operations dispatched in the forward and backward (all that `torch.profiler` records, as issue 16 "
            "counted them, and those not called inside another), the host syncs among them (operations after "
            "which a GPU's host waits for the device), those of reading the logged statistics as each trainer "
            "does (ESPnet's one value at a time, ours at once), and the graph breaks `torch._dynamo.explain` finds "
            "in the forward and loss. \"compiled\" counts the code compiled mode traces, run eagerly.\n\n"
            + _table(["model", "path", "aten ops", "not inside another", "host syncs", "which", "reading the stats",
                      "graph breaks"], rows, "llrrrlrr"))
    ours = next((r for r in proxies["rows"] if r["model"] == "ours" and r["path"] == "compiled"), None)
    compiled_rows = proxies.get("compile", [])
    full = next((c for c in compiled_rows if c["model"] == "ours"), None)
    if compiled_rows:
        text += ("\n\nCompiled (inductor, caches off, 1 thread): the first step (compiling the forward and the "
                 "backward), then compiled and eager steps taking turns (CPU seconds, medians), and the operations "
                 "a compiled step still dispatches (matrix products, convolutions, the CTC loss, and a `detach` per "
                 "parameter as autograd hands it its gradient, which launches no kernel; the fused kernels are not "
                 "dispatched), all of them and those not inside another:\n\n"
                 + _table(["model", "batch", "first step: CPU (wall) s", "compiled step", "eager step",
                           "compiled / eager", "aten ops compiled", "not inside another", "of which detach"],
                          [[c["model"], f"{c['utterances']} × {c['seconds']:g} s",
                            f"{c['first_step_cpu_s']:.0f} ({c['first_step_s']:.0f})",
                            f"{c['compiled_cpu_s']:.2f}", f"{c['eager_cpu_s']:.2f}",
                            f"{c['compiled_cpu_s'] / c['eager_cpu_s']:.2f}", c.get("compiled_all_ops", ""),
                            c["compiled_ops"], c.get("compiled_detach", "")]
                           for c in compiled_rows], "llrrrrrrr"))
    epoch = proxies.get("epoch")
    if epoch:
        text += (f"\n\nAn epoch of MuST-C-like lengths on the demo's model ({epoch['utterances']} utterances, "
                 f"log-normal around 5 s, in {epoch['steps']} batches of at most {epoch['frames_per_batch']} frames: "
                 f"{epoch['shapes']} shapes) compiled {epoch['graphs']} graphs, the last at step "
                 f"{epoch['last_new_graph_step']} ({epoch['epoch_s']:.0f} s in all).")
    if ours and full:
        top_share = full["compiled_ops"] / COMPILE_BEFORE["ops"]
        share = full["compiled_all_ops"] / COMPILE_BEFORE["all_ops"] if "compiled_all_ops" in full else top_share
        kernels = full["compiled_ops"] - full.get("compiled_detach", 0)
        text += (f"\n\nIssue 16's goals: graph breaks ≤ {COMPILE_BREAKS} "
                 f"({_verdict(proxies['rows'][0]['breaks'] <= COMPILE_BREAKS)}), host syncs per step ≤ "
                 f"{COMPILE_SYNCS} (compiled path: {ours['syncs']} in the step + {ours['stats_syncs']} reading the "
                 f"stats: {_verdict(ours['syncs'] + ours['stats_syncs'] <= COMPILE_SYNCS)}), a compiled step's "
                 f"operations ≤ {COMPILE_OPS_SHARE:.0%} of the eager count before, counted as the issue counted "
                 f"them ({share:.1%}: {_verdict(share <= COMPILE_OPS_SHARE)}; those not inside another: "
                 f"{top_share:.1%}, {full.get('compiled_detach', '?')} of them the parameters' `detach`, which "
                 f"launches no kernel, and {kernels} the rest).")
    return text


def _cpu_wall(row: dict, part: str) -> str:
    """``CPU (wall)`` seconds of one part of a step, to the millisecond."""
    return f"{row[part + '_cpu_s']:.3f} ({row[part + '_s']:.3f})"


def simultaneous_section(sim: dict | None) -> str:
    """The per-step compute of simultaneous translation (``simultaneous_step.py``'s result)."""
    if not sim:
        return "Not measured in this run."
    rows, goal = [], None
    for seconds in sorted({row["seconds"] for row in sim["rows"]}):
        ours = _by(sim["rows"], variant="primed", seconds=seconds)
        naive = _by(sim["rows"], variant="naive", seconds=seconds)
        at_goal = seconds == SIMUL_GOAL_SECONDS
        if at_goal:
            goal = ours
        rows.append([
            f"{seconds:g} s", f"{ours['forced']} + {ours['new_tokens']}", f"{ours['states']} of {ours['ctc_states']}",
            *(_cpu_wall(ours, part) for part in ("features", "encoder", "search")), _cpu_wall(naive, "search"),
            f"{naive['search_cpu_s'] / ours['search_cpu_s']:.1f}", _cpu_wall(ours, "step"), _cpu_wall(naive, "step"),
            _verdict(ours["step_cpu_s"] <= SIMUL_STEP_S) if at_goal else "",
        ])
    policy_ms = max(row["policy_cpu_s"] for row in sim["rows"]) * 1e3
    chunk = f"{sim['chunk_seconds']:g}-s"
    if goal is None:
        verdict = f"The goal is set at {SIMUL_GOAL_SECONDS:g} s received, which this run did not measure."
    else:
        naive = _by(sim["rows"], variant="naive", seconds=SIMUL_GOAL_SECONDS)
        encoder = goal["encoder_cpu_s"]
        met = "met" if goal["step_cpu_s"] <= SIMUL_STEP_S else "not met"
        verdict = (f"At {SIMUL_GOAL_SECONDS:g} s received a step of ours costs {goal['step_cpu_s']:.2f} CPU s, the "
                   f"naive loop's {naive['step_cpu_s']:.2f} s (goal ≤ {SIMUL_STEP_S:g} s, so that one core keeps up "
                   f"with {chunk} chunks in real time): **{met}**; the encoder alone takes {encoder:.2f} s of it"
                   + (", more than the goal." if encoder > SIMUL_STEP_S else "."))
    m, score_diff = sim["machine"], max(row["max_score_diff"] for row in sim["rows"])
    return f"""Measured by `{sim['command']}` on {sim['started'][:10]}: {m['cpu']}, {m['cores']} cores, torch
{m['torch']}, checkout {m['commit']}; load average {sim['load_average']['start']} at the start,
{sim['load_average']['end']} at the end (the machine is shared: other processes ran).

One step of `SimultaneousTranslator` after a {chunk} chunk, on the full-size model (random weights,
blank bias {sim['blank_bias']:.3f}), part by part: the features (`IncrementalFbank` taking the chunk),
the encoder over everything received (the model's utterance CMVN over the prefix), one beam search
(beam {sim['beam_size']}, no n-gram ban, decoder layer {sim['attention_layer']}'s cross-attention recorded) forcing
the language tag and {sim['committed_per_second']:g} committed tokens per second received, then
{sim['new_tokens']} new tokens (a random decoder never ends a hypothesis: the same `maxlen` for both searches),
and AlignAtt with the word rule (at most {policy_ms:.1f} ms, counted in the step). Ours scores the forced prefix
in one teacher-forced decoder pass (`FairseqBeamSearch(prime_prefix=True)`, the default); the naive loop
steps through it one token at a time on every beam row, as FBK's fairseq generator does. Both give the
same hypotheses (checked; scores within {score_diff:.0e}). **1 thread**, CPU seconds of the process (wall
seconds), median of {sim['repeats']} after a warm-up, every length and variant taking turns; the features and
encoder columns are ours' (the naive step computes the same). Encoder states: after the CTC compression, of
the frames before it.

{_table(["received", "forced + new tokens", "encoder states", "features", "encoder", "search: ours",
         "search: naive", "naive / ours", "step: ours", "step: naive", f"ours ≤ {SIMUL_STEP_S:g} s"],
        rows, "lrrrrrrrrrl")}

{verdict}"""


STREAM_GROWTH = 1.3  # issue 21: a step and the memory at the last minute within this of minute 1's


def streaming_section(run: dict | None) -> str:
    """A talk streamed for minutes, an hour without speech, and a step against the audio
    history (``streaming.py``'s result)."""
    if not run:
        return "Not measured in this run."
    first, last, quiet = run["minute_1"], run["last_minute"], run["silence"]
    step_ratio, rss_ratio = last["step_cpu_s"] / first["step_cpu_s"], last["rss_mb"] / first["rss_mb"]
    met = step_ratio <= STREAM_GROWTH and rss_ratio <= STREAM_GROWTH
    rows = [
        ["minute 1", f"{first['step_cpu_s']:.3f}", f"{first['rss_mb']:.0f}", f"{first['history_s']:.1f}"],
        [f"minute {run['minutes']:g}", f"{last['step_cpu_s']:.3f}", f"{last['rss_mb']:.0f}", f"{last['history_s']:.1f}"],
        ["ratio", f"{step_ratio:.2f}", f"{rss_ratio:.2f}", ""],
    ]
    per = run["per_history"]
    history_rows = []
    for seconds in sorted({row["seconds"] for row in per["rows"]}):
        ours = _by(per["rows"], variant="primed", seconds=seconds)
        naive = _by(per["rows"], variant="naive", seconds=seconds)
        history_rows.append([
            f"{seconds:g} s", f"{ours['forced']} + {ours['new_tokens']}", _cpu_wall(ours, "encoder"),
            _cpu_wall(ours, "search"), _cpu_wall(naive, "search"), _cpu_wall(ours, "step"), _cpu_wall(naive, "step"),
        ])
    m = run["machine"]
    return f"""Measured by `{run['command']}` on {run['started'][:10]}: {m['cpu']}, {m['cores']} cores, torch
{m['torch']}, checkout {m['commit']}.

`StreamingTranslator` on the full-size model (random weights, blank bias {run['blank_bias']:.3f}), FBK's
{run['chunk_seconds']:g}-s chunks, beam 5, AlignAtt f = 4 on decoder layer 3, {run['history_words']} words of text
history, the audio history capped at {run['max_history_seconds']:g} s (the cap of a model that does not say how long
its utterances were), **1 thread**, CPU seconds of the process. A continuous talk (espeak-ng sentences with
300-ms pauses, repeated) streamed for {run['minutes']:g} minutes ({run['talk_words']} words written): the medians over
minute 1 and over the last minute of a step, of the resident memory after it and of the audio history.

{_table(["", "step (CPU s)", "resident memory (MB)", "audio history (s)"], rows, "lrrr")}

Step time and memory at minute {run['minutes']:g} within {STREAM_GROWTH:g}x of minute 1's: **{'met' if met else 'not met'}**.
The longest audio history of the talk: {run['longest_history_s']:.1f} s (cap {run['max_history_seconds']:g} s).

Then {run['silence_minutes']:g} minutes without speech (half digital silence, half noise at -40 dBFS):
{quiet['words']} words written, a step of {quiet['step_cpu_s'] * 1000:.1f} ms CPU (no search runs on a history without
speech), the audio history at most {quiet['longest_history_s']:.2f} s, resident memory {quiet['rss_mb_start']:.0f} MB
at its start and {quiet['rss_mb_end']:.0f} MB at its end.

One step against the audio history's length, a text history of {per['rows'][0]['committed']} tokens forced (beside the
tag) then {per['new_tokens']} new ones: the encoder over the history, the search primed in one decoder pass (ours)
against stepped token by token (FBK's generator), median of {per['repeats']} after a warm-up; CPU seconds
(wall):

{_table(["audio history", "forced + new tokens", "encoder", "search: ours", "search: FBK's", "step: ours",
         "step: FBK's"], history_rows, "lrrrrrr")}"""


def padding_section(results: dict) -> str:
    rows = []
    for row in results.get("padding", []):
        part = "normalisation + encoder" if row["part"] == "encode" else "encoder alone"
        rows.append([models.LABELS[row["model"]], part, f"{row['max_abs_diff']:.1e}",
                     f"{row['lengths_differ']} of {row['utterances']}"])
    if not rows:
        return "Not measured in this run."
    return _table(["model", "what", "max abs difference", "encoded to another length"], rows, "llrr")


def render(results: dict, gpu: dict | None = None, end_to_end: dict | None = None) -> str:
    m, s, cal = results["machine"], results["settings"], results["calibration"]
    params = results["parameters"]
    load = results.get("load_average", {})
    quick = " (**`--quick` smoke test: not the benchmark figures**)" if results.get("quick") else ""
    return f"""# Benchmarks

Written by `{results['command']}` on {results['started'][:10]}{quick}, after
{results['elapsed_s'] / 60:.0f} min of measuring; regenerate it rather than edit it
(`python bench/report.py docs/benchmarks.json` re-renders it from the saved
figures). Every benchmark also runs alone: `python bench/<name>.py --help`.

## Machine

| | |
|---|---|
| CPU | {m['cpu']}, {m['cores']} cores ({m['system']}) |
| memory | {m['memory_gib']:.0f} GiB |
| software | Python {m['python']}, torch {m['torch']}, ESPnet {m['espnet']} |
| threads | {', '.join(map(str, s['threads']))} (`torch.set_num_threads`; `OMP_NUM_THREADS` for the programs) |
| checkout | {m['commit']} |
| load average | {load.get('start', '?')} at the start, {load.get('end', '?')} at the end |

Other processes may run during the measurements (the load average says how
busy the machine was). Every comparison therefore interleaves its contestants (one
step or decoding run of each in turn, a warm-up round, then the median of
{s['repeats']} rounds), so that a busy period slows all of them alike, and at
one thread the comparisons use the CPU time of the process (and of the processes
it ran: `bench/timing.py`),
which is what the work costs on a core of its own, with the wall time beside
it. At 2 threads only wall time means anything, and on 2 cores shared with
other processes it is mostly waiting: those figures are the least reliable.

## Models

| model | what | parameters |
|---|---|---:|
| {models.LABELS['ours']} | `build_st_model` from `conf/train.yaml`: Conv1d subsampling, 12 × 512 Conformer (FBK's relative attention), CTC head and `avg` compression after block 8, fairseq's 6-block decoder, utterance CMVN | {params['ours'] / 1e6:.1f}M |
| {models.LABELS['ours_none']} | the same, `compression: none` | {params['ours_none'] / 1e6:.1f}M |
| {models.LABELS['limit']} | ours if compression were free: after block 8 each utterance keeps its first ⌈r·T⌉ states (r: the ratio ours reached on the same batch), so blocks 9–12 and the decoder run on the compressed length, while the CTC head and loss run on all T frames; no argmax, runs or averages are computed (`bench/models.py`, `FreeCompressionEncoder`) | {params['limit'] / 1e6:.1f}M |
| {models.LABELS['peer']} | ESPnet {m['espnet']}'s `ESPnetSTModel` built by ESPnet's `STTask.build_model`: `ConformerEncoder` 12 × 512, 8 heads, FFN 2048, macaron, rel-pos (`rel_pos_type: latest`, `rel_pos`, `rel_selfattn`), conv kernel 31, `conv2d` input layer, ESPnet's 6-block `TransformerDecoder`, dropout 0.1 everywhere as ours (attention weights included: ESPnet's defaults drop none there, which would spare the peer work ours does), utterance MVN, source CTC on the encoder output (`asr_weight: 0.3`, `mtlalpha: 1.0`) | {params['peer'] / 1e6:.1f}M |

Vocabularies: 8000 target tokens, 5002 source tokens; random weights; no
SpecAugment; features are 80-dim.

**Compression ratio.** A random CTC head compresses nothing (its argmax changes
at almost every frame). A trained one emits long runs of blanks, so the head's
blank logit is raised (`encoder.ctc_head.bias[0] += b`): bisection on a batch
of 4 × {cal['seconds']:g} s in training mode gives b = {cal['bias']:.3f} for a
ratio of {cal['ratio']:.3f} (target {cal['target']:g}; compressed / uncompressed
frames). Each table reports the ratio ours actually reached. The same b serves
decoding (evaluation mode, no dropout), where ours reached
{_decode_ratio(results):.3f}.

## Training step

Forward and backward of the whole model, loss included (ours: label-smoothed
CE + 0.5 CTC on the source transcript; peer: label-smoothed CE + 0.3 CTC),
gradients then dropped, no optimizer; batches of 4 utterances of equal length
with random features, a target of 4.3 tokens per second (language tag first)
and a source transcript of 3.4 tokens per second (about MuST-C en-de's).
Peak memory: in a fresh process per model and length, one warm-up step, then
the Linux high-water mark (`VmHWM`, reset through `/proc/self/clear_refs`)
during a second step minus the resident set (`VmRSS`) before the first, so
that what a step leaves behind for the next counts too, with glibc's mmap
threshold fixed at 128 KiB (`MALLOC_MMAP_THRESHOLD_`) so that freed tensors
return to the system instead of staying in the heap (`tracemalloc` does not
see torch's allocations).

{train_section(results)}

## Decoding

Beam 5 on {results['decoding'][0]['clips']} clips of noise, {_clip_range(s)} (evenly spread; MuST-C's
tst-COMMON averages about 6 s), full-size random models; time counts the features, the
encoder and the search. Ours: `espnet2_ext.inference.Speech2Translation`, search
`fairseq`, no repeated 5-grams. Stock: ESPnet's `espnet2.bin.st_inference.Speech2Text`
(`BatchBeamSearch`, ESPnet's `TransformerDecoder`, no CTC or length bonus) over
the peer; ESPnet decodes one utterance at a time (its `st_inference` raises
`NotImplementedError` for a batch size above 1), so its throughput is the same
whatever the batch and both of ours compare against it. A random decoder never
ends a hypothesis, so each search runs to a length fixed per utterance:
⌊4.3 × seconds⌋ tokens after `<sos>` for ours (language tag included) plus the
forced `<eos>`, and one more for ESPnet (a negative `maxlenratio`), so both
make the same number of decoder calls (tokens/clip counts the tokens returned).
Ours gives the same hypotheses at every batch size (checked).

{decoding_section(results)}

## Compiling: what a training step asks of the host

{compile_section(results.get('compile_proxies'))}

## Simultaneous translation: one step

{simultaneous_section(results.get('simultaneous'))}

## Streaming whole talks: a step as the talk goes on

{streaming_section(results.get('streaming'))}

## Start-up

CPU seconds (user + system) and, in brackets, wall seconds of a fresh
`python -m espnet2_ext.bin.translate` process with `OMP_NUM_THREADS` set, median of {results['startup'][0]['repeats']} after a warm-up
run; targets on CPU time; the file run finds the model already extracted in its cache. Model: {_startup_model(results)}.

{startup_section(results)}

## Features

`espnet2_ext.utils.fbank.compute_fbank` on {results['fbank'][0]['seconds']:g} s of noise, one thread,
CPU seconds over audio seconds (44.1 kHz is resampled to 16 kHz first):

{fbank_section(results)}

## Padding

Each utterance of one batch of {_padding_lengths(results)} s is encoded alone and in the
batch (evaluation mode; `bench/padding.py`): the largest difference of its valid
encoder states (over the common frames where the lengths differ), and how many
utterances come out with another number of encoder frames when padded. The
peer's `UtteranceMVN` counts padded frames in its statistics; its `conv2d`
subsampler keeps up to two more frames for a padded utterance, computed from
padding, and its conv module convolves over padded frames. "Encoder alone" feeds
both encoders features already normalised per utterance.

{padding_section(results)}

## GPU training

Measured on a borrowed GPU machine, not by `make bench` (which runs on the CPU):

{gpu_section(gpu)}

End to end (`bench/train_end_to_end.py`): {end_to_end_section(end_to_end)}
"""


def _padding_lengths(results: dict) -> str:
    rows = results.get("padding") or [{"seconds": []}]
    return ", ".join(f"{s:g}" for s in rows[0]["seconds"]) or "?"


def _clip_range(settings: dict) -> str:
    shortest, longest = settings["clip_seconds"]
    return f"{shortest:g}–{longest:g} s"


def _decode_ratio(results: dict) -> float:
    ratios = [row["compression_ratio"] for row in results["decoding"] if row.get("compression_ratio")]
    return statistics.mean(ratios) if ratios else float("nan")


def _startup_model(results: dict) -> str:
    model = results["startup"][0]["model"]
    if model == "demo":
        return "`make demo`'s packed model"
    if model == "random demo-size":
        return ("`egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip` did not exist, so a model of "
                "the demo's architecture (`conf/demo/train.yaml`) with random weights and small SentencePiece "
                "models was packed by `espnet2_ext.main_funcs.model_packing`; its decoder never ends a "
                "hypothesis, so the run is given `--maxlen_a 0 --maxlen_b 13` (4.3 tokens per second of the "
                "3-s file: espeak-ng speech padded with silence, 22.05 kHz)")
    return f"`{model}`"


def plot(results: dict, path: Path) -> None:
    """Step time against utterance length, one line per model: CPU time at 1 thread (solid),
    wall time at more (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"ours": "C0", "ours_none": "C2", "peer": "C3", "limit": "C7"}
    for threads in _threads(results["train"]):
        style = "-" if threads == 1 else "--"
        for name in models.MODELS:
            rows = sorted((r for r in results["train"] if r["model"] == name and r["threads"] == threads),
                          key=lambda r: r["seconds"])
            ax.plot([r["seconds"] for r in rows], [_time(r, "step_s", "cpu_s", threads) for r in rows], style,
                    marker="o", markersize=3, color=colors[name],
                    label=f"{models.LABELS[name]}, {threads} thr ({'CPU' if threads == 1 else 'wall'} s)")
    ax.set_xlabel("utterance length (s), batches of 4")
    ax.set_ylabel("forward + backward (s)")
    ax.set_title(f"Training step, {results['machine']['cpu']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save(results: dict, out_dir: Path) -> None:
    """``benchmarks.json`` in ``out_dir``, replaced whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / "benchmarks.json.partial"
    partial.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    partial.replace(out_dir / "benchmarks.json")


def write(results: dict, out_dir: Path) -> None:
    """``benchmarks.json``, ``benchmarks.md`` and ``train_step.png`` in ``out_dir``."""
    save(results, out_dir)
    plot(results, out_dir / "train_step.png")
    gpu_file = out_dir / "gpu_train_step.json"
    gpu = json.loads(gpu_file.read_text(encoding="utf-8")) if gpu_file.is_file() else None
    run_file = out_dir / "train_end_to_end.json"
    end_to_end = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else None
    (out_dir / "benchmarks.md").write_text(render(results, gpu, end_to_end), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="benchmarks.json written by run_all.py")
    parser.add_argument("--out_dir", type=Path, help="default: the directory of RESULTS")
    args = parser.parse_args()
    results = json.loads(args.results.read_text(encoding="utf-8"))
    write(results, args.out_dir or args.results.parent)


if __name__ == "__main__":
    main()
