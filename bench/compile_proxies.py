#!/usr/bin/env python3
"""What a training step asks of an accelerator's host, counted on the CPU: ours against ESPnet's peer.

On a GPU a step of ours is bound by launching its operations one at a time and
by the host waiting for the device (issue 16). These proxies need no GPU:

- **graph breaks**: ``torch._dynamo.explain`` of the training forward and loss
  (``model(**batch)``, training mode): where ``torch.compile`` would have to cut
  the step into pieces run eagerly in between.
- **host syncs per step**: operations after which the host waits for the device,
  counted over the forward and the backward (the model's step), and separately
  the reading of the logged statistics as each model's trainer reads them (ESPnet's
  one value at a time, ours at once): scalar reads
  (``item``/``int``/``float``/``bool`` of a tensor: ``aten._local_scalar_dense``),
  outputs whose size depends on the data (``nonzero``, boolean indexing,
  ``masked_select``, ``unique``), ``ctc_loss`` and its backward given
  length tensors on the device (both copy them to the host), and explicit
  copies to the host (``.cpu()``, ``.tolist()``, ``.numpy()``).
  Ours is counted twice: eager, and along the code compiled mode traces (run
  eagerly with ``torch.compiler.is_compiling()`` true: the same operations the
  compiled graph runs, where the dispatcher cannot see them).
- **aten operations per step**: the ATen operations the forward and backward
  call (:func:`count_ops`: all of them, as issue 16 counted, and those not called by another), eagerly
  and (ours) compiled: on a GPU each is at least
  one kernel launch, which a compiled graph fuses away (it leaves matrix products,
  convolutions and the CTC loss to ATen).
- **compilation**: seconds of the first compiled step (caches off), the CPU
  time of a compiled step against an eager one once compiled (does compiling pay
  on the CPU?), for the demo's small model (``conf/demo/train.yaml``) and the full
  one; and how many graphs an epoch of MuST-C-like utterance lengths compiles
  (:func:`mustc_like_batches`, the small model): a compile per new shape would never end.

Counting runs eagerly on the CPU, where no operation waits; on a GPU the same
operations run (the code has no device-dependent branch), so the counts carry over.

Usage:
    python bench/compile_proxies.py --seconds 5
"""

import argparse
import collections
import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from unittest import mock

import models
import torch
import yaml
from timing import cpu_seconds
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from espnet2_ext.tasks.model_building import build_st_model
from espnet2_ext.train.compilation import DYNAMO_SETTINGS, compile_model
from espnet2_ext.train.trainer import read_stats

DYNAMIC_SIZE_OPS = {"aten.nonzero.default", "aten.masked_select.default", "aten._unique2.default",
                    "aten.unique_consecutive.default", "aten.unique_dim.default", "aten.repeat_interleave.Tensor"}
CTC_OPS = {"aten._ctc_loss.Tensor", "aten._ctc_loss_backward.Tensor"}
HOST_COPIES = {torch.Tensor.cpu, torch.Tensor.tolist, torch.Tensor.numpy}
DEMO_CONFIG = models.ROOT / "conf" / "demo" / "train.yaml"


class StepCounter(TorchDispatchMode):
    """Every aten operation dispatched, and those among them that would make the host wait for a device."""

    def __init__(self, host_storages: set[int]):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.syncs: collections.Counter[str] = collections.Counter()
        self.host_storages = host_storages  # tensors copied to the host on purpose: no sync to read those

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        self.ops[name] += 1
        reason = self._sync_reason(name, args)
        if reason:
            self.syncs[reason] += 1
        return func(*args, **(kwargs or {}))

    def _sync_reason(self, name: str, args: tuple) -> str | None:
        if name == "aten._local_scalar_dense.default":
            return "scalar read"
        if name in DYNAMIC_SIZE_OPS:
            return name.split(".")[1]
        if name.startswith(("aten.index.Tensor", "aten.index_put")) and any(
            index is not None and index.dtype == torch.bool for index in args[1]
        ):
            return "boolean indexing"
        if name in CTC_OPS:
            lengths = args[2:4] if name == "aten._ctc_loss.Tensor" else args[3:5]
            if not all(t.untyped_storage().data_ptr() in self.host_storages for t in lengths):
                return "ctc_loss lengths"
        return None


class HostCopies(TorchFunctionMode):
    """Explicit copies to the host, which a CPU tensor answers without dispatching anything."""

    def __init__(self, host_storages: set[int]):
        super().__init__()
        self.count = 0
        self.host_storages = host_storages

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in HOST_COPIES and args[0].untyped_storage().data_ptr() not in self.host_storages:
            self.count += 1
            if isinstance(result, torch.Tensor):
                self.host_storages.add(result.untyped_storage().data_ptr())
        return result


def espnet_stats_read(stats: dict, weight: torch.Tensor) -> dict[str, float]:
    """How ESPnet's trainer reads the logged values: one ``item()`` per statistic, and the weight."""
    values = {key: value.item() for key, value in stats.items() if value is not None}
    values["weight"] = weight.item()
    return values


def ours_stats_read(stats: dict, weight: torch.Tensor) -> dict[str, object]:
    """How our task's trainer reads them: all at once."""
    return read_stats({**stats, "weight": weight})


STATS_READ = {"ours": ours_stats_read, "peer": espnet_stats_read}


def count_step(model: torch.nn.Module, batch: dict, read: Callable[[dict, torch.Tensor], dict]) -> dict:
    """Operations and host syncs of one training step (forward, backward), and the syncs of reading
    its logged values."""
    host_storages: set[int] = set()
    with HostCopies(host_storages) as copies, StepCounter(host_storages) as counter:
        loss, stats, weight = model(**batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    syncs = dict(counter.syncs)
    if copies.count:
        syncs["copy to host"] = copies.count
    with HostCopies(set()) as reads, StepCounter(set()) as read_counter:
        read(stats, weight)
    ops = count_ops(model, batch)
    return dict(ops=ops["top"], all_ops=ops["all"], syncs=sum(syncs.values()), sync_kinds=syncs,
                stats_syncs=reads.count + sum(read_counter.syncs.values()))


@contextlib.contextmanager
def compiled_path() -> Iterator[None]:
    """Run eagerly the code compiled mode traces (``torch.compiler.is_compiling()`` true)."""
    with mock.patch("torch.compiler.is_compiling", return_value=True):
        yield


def count_ops(model: torch.nn.Module, batch: dict) -> dict[str, int]:
    """ATen operations of one training step (forward, backward), as ``torch.profiler`` records them.

    ``all``: every ``aten::`` event, those an operation calls inside another included (issue 16's
    count: 19,188 for 4 × 6 s before it). ``top``: only those called from Python or from autograd
    (an operation another implements counted once). ``detach``: the top-level ``detach`` calls, one
    per parameter as autograd hands it its gradient, which launch no kernel. Compiled, the fused
    kernels are none of them; what the graph leaves to ATen (matrix products, convolutions, the CTC
    loss) is. A dispatch mode would not do: under one, a compiled model runs eagerly."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, batch)
    events = [event for event in prof.events() if event.name.startswith("aten::")]
    top = [event for event in events if event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::")]
    return dict(all=len(events), top=len(top), detach=sum(event.name == "aten::detach" for event in top))


def graph_breaks(model: torch.nn.Module, batch: dict) -> dict:
    """``torch._dynamo.explain`` of ``model(**batch)``: graphs, breaks and why (reason: count)."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(**DYNAMO_SETTINGS):  # as compile_model compiles
        explanation = torch._dynamo.explain(model)(**batch)
    reasons: collections.Counter[str] = collections.Counter()
    for brk in explanation.break_reasons:
        where = brk.user_stack[-1] if brk.user_stack else None
        place = f" ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
        reasons[brk.reason.splitlines()[0][:90] + place] += 1
    torch._dynamo.reset()
    return dict(graphs=explanation.graph_count, breaks=explanation.graph_break_count, reasons=dict(reasons))


def step(model: torch.nn.Module, batch: dict) -> None:
    loss, _, _ = model(**batch)
    loss.backward()
    model.zero_grad(set_to_none=True)


@contextlib.contextmanager
def cold_compile() -> Iterator[None]:
    """No cache of earlier compilations: the time a fresh training run pays."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    with inductor_config.patch(force_disable_caches=True):
        yield


def compile_timing(name: str, seconds: float, blank_bias: float, repeats: int) -> dict:
    """The first compiled step (caches off), then compiled and eager steps taking turns (CPU seconds,
    median of ``repeats``), and the operations a compiled step dispatches. ``name``: ``demo`` (the
    demo's small model) or ``ours`` (full size)."""
    build = (lambda: demo_model(blank_bias)) if name == "demo" else (lambda: models.build("ours", blank_bias))
    eager, compiled_model = build().train(), build().train()
    batch = demo_batch(seconds) if name == "demo" else models.train_batch(seconds)
    step(eager, batch)  # warm-up
    with cold_compile():
        compile_model(compiled_model)
        started, cpu = time.perf_counter(), cpu_seconds()
        step(compiled_model, batch)
        first_s, first_cpu_s = time.perf_counter() - started, cpu_seconds() - cpu
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(repeats):
            for label, model in (("eager", eager), ("compiled", compiled_model)):
                cpu = cpu_seconds()
                step(model, batch)
                times[label].append(cpu_seconds() - cpu)
        ops, eager_ops = count_ops(compiled_model, batch), count_ops(eager, batch)
    median = {label: sorted(values)[len(values) // 2] for label, values in times.items()}
    return dict(model=name, seconds=seconds, utterances=int(batch["speech"].size(0)), first_step_s=first_s,
                first_step_cpu_s=first_cpu_s, eager_cpu_s=median["eager"], compiled_cpu_s=median["compiled"],
                compiled_ops=ops["top"], eager_ops=eager_ops["top"], compiled_all_ops=ops["all"],
                eager_all_ops=eager_ops["all"], compiled_detach=ops["detach"])


def demo_model(blank_bias: float = 0.0, seed: int = 0) -> torch.nn.Module:
    """The recipe's small model (``conf/demo/train.yaml``), vocabularies of 1000 and 500 entries, no
    SpecAugment, its CTC head's blank logit raised by ``blank_bias``."""
    train = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    target = ["<blank>", "<unk>", "<lang:de>", *(f"w{i}" for i in range(996)), "<sos/eos>"]
    source = ["<blank>", "<unk>", *(f"s{i}" for i in range(497)), "<sos/eos>"]
    config = dict(models.our_config(), encoder_conf=train["encoder_conf"], decoder_conf=train["decoder_conf"],
                  token_list=target, src_token_list=source)
    torch.manual_seed(seed)
    model = build_st_model(argparse.Namespace(**config))
    models.raise_blank(model, blank_bias)
    return model


def demo_batch(seconds: float) -> dict[str, torch.Tensor]:
    """:func:`models.train_batch` in the demo model's vocabularies."""
    batch = models.train_batch(seconds)
    batch["text"][:, 1:] = batch["text"][:, 1:] % 996 + 3
    batch["src_text"] = batch["src_text"] % 497 + 2
    return batch


def mustc_like_batches(utterances: int, frames_per_batch: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """An epoch of MuST-C-like lengths (:func:`models.mustc_like_seconds`) batched as ESPnet's
    ``numel`` batches: sorted by length and cut into batches of at most ``frames_per_batch`` feature frames, in
    shuffled order; tokens at MuST-C's rates (:func:`models.train_batch`)."""
    rng = random.Random(seed)
    seconds = sorted(models.mustc_like_seconds(utterances, rng))
    groups, current = [], []
    for s in seconds:
        frames = models.num_frames(int(s * models.SAMPLE_RATE))
        if current and (len(current) + 1) * frames > frames_per_batch:
            groups.append(current)
            current = []
        current.append(s)
    groups.append(current)
    rng.shuffle(groups)
    g = torch.Generator().manual_seed(seed)
    batches = []
    for group in groups:
        lengths = [models.num_frames(int(s * models.SAMPLE_RATE)) for s in group]
        targets = [1 + round(models.TARGET_TOKENS_PER_SECOND * s) for s in group]
        sources = [max(1, round(models.SOURCE_TOKENS_PER_SECOND * s)) for s in group]
        text = torch.full((len(group), max(targets)), -1)
        src_text = torch.full((len(group), max(sources)), -1)
        for i, (t, s) in enumerate(zip(targets, sources)):
            text[i, :t] = torch.randint(models.LANG_TAG_ID + 1, 999, (t,), generator=g)
            text[i, 0] = models.LANG_TAG_ID
            src_text[i, :s] = torch.randint(2, 499, (s,), generator=g)
        batches.append(dict(
            speech=torch.randn(len(group), max(lengths), 80, generator=g), speech_lengths=torch.tensor(lengths),
            text=text, text_lengths=torch.tensor(targets), src_text=src_text, src_text_lengths=torch.tensor(sources),
        ))
    return batches


def recompilations(utterances: int, frames_per_batch: int, blank_bias: float) -> dict:
    """Graphs compiled over an epoch of :func:`mustc_like_batches` on the demo model."""
    from torch._dynamo.utils import counters

    batches = mustc_like_batches(utterances, frames_per_batch)
    model = demo_model(blank_bias).train()
    with cold_compile():
        compile_model(model)
        counters.clear()
        graphs, started = [], time.perf_counter()
        for batch in batches:
            step(model, batch)
            graphs.append(counters["stats"]["unique_graphs"])
        elapsed = time.perf_counter() - started
    shapes = {(int(b["speech"].size(0)), int(b["speech"].size(1))) for b in batches}
    return dict(steps=len(batches), shapes=len(shapes), utterances=utterances, frames_per_batch=frames_per_batch,
                graphs_after_first=graphs[0], graphs=graphs[-1],
                last_new_graph_step=1 + max(i for i, n in enumerate(graphs) if i == 0 or n > graphs[i - 1]),
                epoch_s=elapsed, recompiles=dict(counters["recompiles"]) if "recompiles" in counters else {})


def measure(seconds: float, blank_bias: float, repeats: int = 3, compile_models: tuple[str, ...] = ("demo", "ours"),
            utterances: int = 400, frames_per_batch: int = 6000) -> dict:
    """Every proxy: per model the graph breaks and one counted eager step (ours also along its
    compiled path); the compilation of each of ``compile_models``; the recompilations of an epoch of
    ``utterances`` (none if 0). One thread, as the CPU seconds are reported."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(seconds, blank_bias, repeats, compile_models, utterances, frames_per_batch)
    finally:
        torch.set_num_threads(threads)


def _measure(seconds: float, blank_bias: float, repeats: int, compile_models: tuple[str, ...], utterances: int,
             frames_per_batch: int) -> dict:
    batch = models.train_batch(seconds)
    rows = []
    for name, path in (("ours", "eager"), ("ours", "compiled"), ("peer", "eager")):
        model = models.build(name, blank_bias).train()
        with compiled_path() if path == "compiled" else contextlib.nullcontext():
            step(model, batch)  # warm-up: lazy initialisation out of the counts
            torch.manual_seed(0)
            row = dict(model=name, path=path, seconds=seconds, **count_step(model, batch, STATS_READ[name]))
        if path == "eager":
            row.update(graph_breaks(model, batch))
        rows.append(row)
        print(f"  {models.LABELS[name]:12} {path:8} {row['ops']:6d} ops, {row['syncs']:3d} host syncs "
              f"{row['sync_kinds']} + {row['stats_syncs']} reading the stats"
              + (f", {row['breaks']} graph breaks" if "breaks" in row else ""), flush=True)
    result = dict(rows=rows, seconds=seconds, blank_bias=blank_bias, compile=[])
    for name in compile_models:
        result["compile"].append(compile_timing(name, seconds, blank_bias, repeats))
        c = result["compile"][-1]
        print(f"  compiled {name}: first step {c['first_step_s']:.0f} s, then {c['compiled_cpu_s']:.2f} CPU s "
              f"(eager {c['eager_cpu_s']:.2f}), {c['compiled_ops']} ops ({c['compiled_all_ops']} with those "
              "inside others)", flush=True)
    if utterances:
        result["epoch"] = recompilations(utterances, frames_per_batch, blank_bias)
        e = result["epoch"]
        print(f"  epoch of {e['steps']} batches ({e['shapes']} shapes): {e['graphs']} graphs compiled, "
              f"the last new one at step {e['last_new_graph_step']}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="utterance length of the 4-utterance batch")
    parser.add_argument("--blank_bias", type=float, default=4.0, help="ours' CTC blank bias (run_all calibrates it)")
    parser.add_argument("--repeats", type=int, default=3, help="timed compiled and eager steps")
    parser.add_argument("--utterances", type=int, default=400, help="utterances of the MuST-C-like epoch")
    parser.add_argument("--frames_per_batch", type=int, default=6000, help="feature frames per batch of that epoch")
    parser.add_argument("--compile_models", default="demo,ours", help="models whose compilation is timed "
                        "(demo, ours; empty: none)")
    parser.add_argument("--out", help="also write the result as JSON here")
    args = parser.parse_args()
    result = measure(args.seconds, args.blank_bias, args.repeats, tuple(filter(None, args.compile_models.split(","))),
                     args.utterances, args.frames_per_batch)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
