#!/usr/bin/env python3
"""The compute of one simultaneous-translation step on one thread: ours (prefix primed) against the naive loop.

After every chunk of audio (``--chunk_seconds``, 1 s as FBK's agents) an agent
(:class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator`) does, and
this times part by part with the library's own pieces, on the full-size model of
:mod:`models` (random weights, the CTC head's blank bias calibrated as there):

1. features: :class:`~espnet2_ext.simultaneous.incremental_features.IncrementalFbank`
   takes the chunk after the ``t - chunk`` seconds it already holds;
2. encoder: the whole prefix of ``t`` seconds through the encoder
   (``encode_with_ctc``: the model's utterance CMVN over the prefix, the
   translator's ``cmvn: prefix``; ``cmvn: global`` only swaps that normalisation);
3. search: one fairseq beam search (beam 5, no n-gram ban, as FBK's agents) forcing
   the language tag and ``round(--committed_per_second x t)`` committed tokens,
   recording decoder layer 3's cross-attention;
4. policy: AlignAtt (f = 4 positions) and the word rule on the best hypothesis.

The search is ours, which scores the forced prefix in one teacher-forced decoder
pass (``FairseqBeamSearch(prime_prefix=True)``, the default), or the naive loop,
which steps through it one token at a time on every beam row, as FBK's fairseq
generator does (``prime_prefix=False``). A random decoder never ends a hypothesis,
so each search stops ``--new_tokens`` tokens after the forced prefix (the same
``maxlen`` for both); both must return the same tokens (checked).

Both variants run all four parts (1 and 2 are the same computation), every length
and variant taking turns, a warm-up round then ``--repeats`` timed ones
(``timing.interleaved``); each part is timed inside the step (CPU seconds of the
process, and wall), so the untimed set-up of a round (the features of the first
``t - chunk`` seconds) counts nowhere. The goal: a step of ours within
``report.SIMUL_STEP_S`` at ``report.SIMUL_GOAL_SECONDS`` of audio received, so that
one core keeps up with 1-s chunks.

Usage:
    python bench/simultaneous_step.py                       # 5, 10, 20 s; prints the section of benchmarks.md
    python bench/simultaneous_step.py --seconds 10 --repeats 9 --json step.json
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import models
import numpy as np
import report
import torch
from timing import cpu_seconds, interleaved

from espnet2_ext.inference import Speech2Translation
from espnet2_ext.simultaneous import policies
from espnet2_ext.simultaneous.incremental_features import IncrementalFbank
from espnet2_ext.simultaneous.words import complete_words
from espnet2_ext.st.beam_search import FairseqBeamSearch
from espnet2_ext.utils.fbank import SAMPLE_RATE

VARIANTS = ("primed", "naive")
PARTS = ("features", "encoder", "search", "policy")
ATTENTION_LAYER = 3  # FBK's READMEs: --extract-attn-from-layer 3
FRAME_NUM = 4  # AlignAtt's f, FBK's setting for 1-s chunks


def our_translator(blank_bias: float, beam_size: int = 5) -> Speech2Translation:
    """The full-size model as an agent uses it: fairseq's search, no n-gram ban."""
    torch.manual_seed(0)
    translator = Speech2Translation(models.our_config("avg"), None, search="fairseq", beam_size=beam_size,
                                    no_repeat_ngram_size=0)
    models.raise_blank(translator.model, blank_bias)
    return translator


def naive_search(primed: FairseqBeamSearch) -> FairseqBeamSearch:
    """The same search over the same decoder, stepping through the forced prefix."""
    return FairseqBeamSearch(
        primed.decoder, primed.vocab_size, primed.sos, primed.eos, primed.prefix, primed.beam_size,
        primed.no_repeat.ngram_size if primed.no_repeat is not None else 0, primed.never, prime_prefix=False,
    ).eval()


def committed_tokens(count: int, seed: int = 0) -> list[int]:
    """``count`` target ids that a policy could have committed (no special token)."""
    target, _ = models.token_lists()
    g = torch.Generator().manual_seed(seed)
    return torch.randint(models.LANG_TAG_ID + 1, len(target) - 1, (count,), generator=g).tolist()


class _Clock:
    """CPU and wall seconds of consecutive parts of one step."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._start = (time.perf_counter(), cpu_seconds())

    def lap(self, part: str) -> None:
        wall, cpu = time.perf_counter(), cpu_seconds()
        self.wall[part], self.cpu[part] = wall - self._start[0], cpu - self._start[1]
        self._start = (time.perf_counter(), cpu_seconds())


@torch.no_grad()
def agent_step(
    translator: Speech2Translation, search: FairseqBeamSearch, audio: np.ndarray, chunk: int,
    committed: Sequence[int], new_tokens: int,
) -> dict:
    """One step after the last ``chunk`` samples of ``audio``: each part's CPU and wall
    seconds, the n-best tokens and scores, the encoder states (compressed and not)."""
    fbank = IncrementalFbank()
    fbank.feed(audio[:-chunk])  # what earlier steps computed: not timed
    tag = translator.primer[1:]
    prefix = [*tag, *committed]
    model = translator.model
    clock = _Clock()
    fbank.feed(audio[-chunk:])
    features = fbank.features
    clock.lap("features")
    encoded = model.encode_with_ctc(torch.from_numpy(np.array(features))[None], torch.tensor([len(features)]))
    clock.lap("encoder")
    (hypotheses,) = search(encoded.hidden, encoded.lengths, [len(prefix) + new_tokens], prefixes=[prefix],
                           attention_layer=ATTENTION_LAYER)
    clock.lap("search")
    best = hypotheses[0]
    tokens = best.tokens[1:]
    accepted = policies.alignatt(tokens, best.attention, len(prefix), FRAME_NUM)
    complete_words(accepted, model.token_list, model.eos)
    clock.lap("policy")
    return dict(cpu=clock.cpu, wall=clock.wall, tokens=[h.tokens for h in hypotheses],
                scores=[h.score for h in hypotheses], states=int(encoded.lengths[0]),
                ctc_states=int(encoded.ctc_lengths[0]))


def _median(steps: Sequence[dict], clock: str, part: str | None = None) -> float:
    """Median over timed rounds of one part, or of the whole step (``part`` None)."""
    return statistics.median(step[clock][part] if part else sum(step[clock].values()) for step in steps)


def measure(
    seconds: Sequence[float], repeats: int, blank_bias: float, committed_per_second: float = 2.5,
    new_tokens: int = 15, chunk_seconds: float = 1.0, beam_size: int = 5, command: str | None = None,
    committed: int | None = None,
) -> dict:
    """Every length and variant in turn; per length and variant the medians of each part and of
    the whole step (CPU and wall), and the raw timings; raises if the variants' tokens differ.
    ``committed``: that many forced tokens at every length (a stream's bounded text history),
    instead of ``committed_per_second`` of the audio received."""
    torch.set_num_threads(1)
    started, load_start = datetime.datetime.now().isoformat(timespec="seconds"), _load()
    translator = our_translator(blank_bias, beam_size)
    searches = {"primed": translator.beam_search, "naive": naive_search(translator.beam_search)}
    rng = np.random.default_rng(0)
    chunk = int(chunk_seconds * SAMPLE_RATE)
    runs: dict[str, Callable[[], dict]] = {}
    forced = {t: committed if committed is not None else round(committed_per_second * t) for t in seconds}
    for t in seconds:
        audio = (0.1 * rng.standard_normal(int(t * SAMPLE_RATE))).astype(np.float32)
        prefix = committed_tokens(forced[t])
        for variant, search in searches.items():
            runs[f"{variant}/{t}"] = (lambda s=search, a=audio, c=prefix:
                                      agent_step(translator, s, a, chunk, c, new_tokens))
    warmup = 1
    timed = interleaved(runs, repeats, warmup=warmup)
    rows = []
    for t in seconds:
        primed, naive = timed[f"primed/{t}"].last, timed[f"naive/{t}"].last
        if primed["tokens"] != naive["tokens"]:
            raise AssertionError(f"{t:g} s: the primed and the stepped search gave other hypotheses")
        for variant in VARIANTS:
            steps = timed[f"{variant}/{t}"].outputs[warmup:]
            last = steps[-1]
            row = dict(
                variant=variant, seconds=t, committed=forced[t],
                forced=forced[t] + len(translator.primer) - 1, new_tokens=new_tokens,
                tokens=len(last["tokens"][0]) - 1, states=last["states"], ctc_states=last["ctc_states"],
                step_cpu_s=_median(steps, "cpu"), step_s=_median(steps, "wall"),
                max_score_diff=max(abs(a - b) for a, b in zip(primed["scores"], naive["scores"])),
                cpu_times={part: [s["cpu"][part] for s in steps] for part in PARTS},
                wall_times={part: [s["wall"][part] for s in steps] for part in PARTS},
            )
            for part in PARTS:
                row[f"{part}_cpu_s"], row[f"{part}_s"] = _median(steps, "cpu", part), _median(steps, "wall", part)
            rows.append(row)
            print(f"  {t:4g} s, {row['forced']} forced + {new_tokens}: {variant:6} "
                  + "  ".join(f"{part} {row[f'{part}_cpu_s']:.3f}" for part in PARTS)
                  + f"  step {row['step_cpu_s']:.3f} s CPU ({row['step_s']:.3f} wall)", flush=True)
    return dict(
        command=command or " ".join(["python", *sys.argv]), started=started, machine=report.machine_info(),
        load_average=dict(start=load_start, end=_load()), repeats=repeats, warmup=warmup, beam_size=beam_size,
        chunk_seconds=chunk_seconds, committed_per_second=committed_per_second, new_tokens=new_tokens,
        attention_layer=ATTENTION_LAYER, blank_bias=blank_bias, rows=rows,
    )


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", default="5,10,20", help="audio received at the step")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up round")
    parser.add_argument("--committed_per_second", type=float, default=2.5,
                        help="target tokens already committed per second of audio received")
    parser.add_argument("--new_tokens", type=int, default=15, help="tokens each search adds after the forced prefix")
    parser.add_argument("--chunk_seconds", type=float, default=1.0, help="audio between two steps")
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio of ours' CTC head")
    parser.add_argument("--blank_bias", type=float, default=None, help="skip the calibration, use this bias")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args()
    bias = args.blank_bias
    if bias is None:
        bias, ratio = models.calibrated_bias(args.target_ratio)
        print(f"blank bias {bias:.3f}: compression ratio {ratio:.3f} on the calibration batch")
    result = measure([float(s) for s in args.seconds.split(",")], args.repeats, bias, args.committed_per_second,
                     args.new_tokens, args.chunk_seconds, args.beam_size)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print()
    print(report.simultaneous_section(result))


if __name__ == "__main__":
    main()
