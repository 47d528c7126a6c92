#!/usr/bin/env python3
"""A talk streamed for minutes on one thread: what a step costs as the talk goes on, and an hour without speech.

StreamAtt (:class:`~espnet2_ext.streaming.translator.StreamingTranslator`) bounds what
each step conditions on, so a step at minute 20 of a talk should cost what one at
minute 1 does. On the full-size model of :mod:`models` (random weights, the CTC head's
blank bias calibrated as there; FBK's 1-s chunks, beam 5, layer 3, 20 words of history,
the audio history capped at 30 s as for a model that does not say how long its
utterances were), one thread:

1. a continuous talk (espeak-ng sentences with short pauses, repeated) streamed for
   ``--minutes``: each step's CPU seconds and the process's resident memory, their
   medians over minute 1 and over the last minute, and the longest audio history;
2. an hour without speech, half digital silence, half noise: the words written (none
   should be: no search runs on a history without speech), the step's CPU seconds and
   the resident memory at its start and end;
3. one step against the audio history's length (5, 10, 20, 30 s) with a 30-token text
   history forced, primed in one decoder pass (ours) against stepped token by token
   (FBK's generator): ``simultaneous_step.measure`` with a fixed text history.

A random decoder never ends a hypothesis: each search stops 16 tokens after the longest
forced prefix (``maxlen_b`` 48).

Usage:
    python bench/streaming.py --json docs/streaming.json            # about 40 min on one thread
    python bench/streaming.py --minutes 3 --silence_minutes 6        # a smoke test
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import models
import numpy as np
import report
import simultaneous_step
import soundfile as sf
import torch
from timing import cpu_seconds

from espnet2_ext.streaming.options import StreamOptions
from espnet2_ext.streaming.translator import StreamingTranslator
from espnet2_ext.utils.fbank import SAMPLE_RATE, resample

SENTENCES = [
    "we translate speech directly into text while the speaker is still talking",
    "the model reads a short history of the talk again after every second",
    "old words leave the forced prefix and the audio they needed goes with them",
    "so a talk of any length costs the same at every step",
    "attention tells which part of the audio the next words still need",
    "nothing is decoded while nobody speaks",
]
HISTORY_WORDS = 20
MAX_HISTORY_SECONDS = 30.0
MAXLEN_B = 48
CHUNK_SECONDS = 1.0


def spoken_talk(seconds: float) -> np.ndarray:
    """espeak-ng's sentences with 300-ms pauses, repeated to ``seconds`` (16 kHz float)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is needed for the talk (make venv installs it)")
    pieces = []
    with tempfile.TemporaryDirectory() as folder:
        for n, sentence in enumerate(SENTENCES):
            path = Path(folder) / f"{n}.wav"
            subprocess.run([espeak, "-w", str(path), sentence], check=True)
            samples, rate = sf.read(path, dtype="float32")
            pieces += [resample(samples, rate), np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)]
    once = np.concatenate(pieces)
    return np.tile(once, int(np.ceil(seconds * SAMPLE_RATE / len(once))))[: int(seconds * SAMPLE_RATE)]


def resident_mb() -> float:
    """The process's resident memory now (MB), from /proc."""
    with open("/proc/self/statm") as stats:
        return int(stats.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def streamer(blank_bias: float) -> StreamingTranslator:
    translator = simultaneous_step.our_translator(blank_bias)
    options = StreamOptions.checked(
        policy="alignatt", frame_num=4, segment_ms=int(CHUNK_SECONDS * 1000), attention_layer=3, cmvn="prefix",
        maxlen_b=MAXLEN_B, history="words", history_words=HISTORY_WORDS, max_history_seconds=MAX_HISTORY_SECONDS,
    )
    return StreamingTranslator(translator, options)


def stream(translator: StreamingTranslator, audio: np.ndarray, label: str) -> list[dict]:
    """Push ``audio`` a chunk at a time; per step its CPU seconds, the history, the words, the memory."""
    chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
    translator.reset()
    steps = []
    for number, start in enumerate(range(0, len(audio) - chunk + 1, chunk), 1):
        before = cpu_seconds()
        words = translator.push(audio[start : start + chunk])
        steps.append(dict(cpu_s=cpu_seconds() - before, history_s=translator.history_seconds,
                          words=len(words), rss_mb=resident_mb()))
        if number % 60 == 0:
            recent = steps[-60:]
            print(f"  {label}: minute {number // 60}: step {statistics.median(s['cpu_s'] for s in recent):.3f} "
                  f"CPU s, history {max(s['history_s'] for s in recent):.1f} s, "
                  f"{sum(s['words'] for s in recent)} words, {recent[-1]['rss_mb']:.0f} MB", flush=True)
    return steps


def window(steps: list[dict], first: int, last: int) -> dict:
    """Medians of the steps ``first`` to ``last`` (1-based)."""
    part = steps[first - 1 : last]
    return dict(step_cpu_s=statistics.median(s["cpu_s"] for s in part),
                rss_mb=statistics.median(s["rss_mb"] for s in part),
                history_s=statistics.median(s["history_s"] for s in part))


def measure(minutes: float, silence_minutes: float, blank_bias: float, repeats: int) -> dict:
    torch.set_num_threads(1)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    translator = streamer(blank_bias)
    talk = stream(translator, spoken_talk(60 * minutes), "talk")
    last = len(talk)
    rng = np.random.default_rng(0)
    half = int(30 * silence_minutes * SAMPLE_RATE)
    quiet = np.concatenate([np.zeros(half, dtype=np.float32),
                            (0.01 * rng.standard_normal(half)).astype(np.float32)])
    silence = stream(translator, quiet, "silence and noise")
    per_history = simultaneous_step.measure(
        [5.0, 10.0, 20.0, 30.0], repeats, blank_bias, committed=30, new_tokens=16, chunk_seconds=CHUNK_SECONDS,
    )
    return dict(
        command=" ".join(["python", *sys.argv]), started=started, machine=report.machine_info(),
        minutes=minutes, silence_minutes=silence_minutes, blank_bias=blank_bias, history_words=HISTORY_WORDS,
        max_history_seconds=MAX_HISTORY_SECONDS, chunk_seconds=CHUNK_SECONDS, maxlen_b=MAXLEN_B,
        minute_1=window(talk, 1, min(60, last)), last_minute=window(talk, max(1, last - 59), last),
        longest_history_s=max(s["history_s"] for s in talk), talk_words=sum(s["words"] for s in talk),
        silence=dict(words=sum(s["words"] for s in silence), step_cpu_s=statistics.median(s["cpu_s"] for s in silence),
                     rss_mb_start=silence[0]["rss_mb"], rss_mb_end=silence[-1]["rss_mb"],
                     longest_history_s=max(s["history_s"] for s in silence)),
        per_history=per_history,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="of the continuous talk")
    parser.add_argument("--silence_minutes", type=float, default=60.0, help="without speech after it")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of the per-history steps")
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio of the CTC head")
    parser.add_argument("--blank_bias", type=float, default=None, help="skip the calibration, use this bias")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args()
    bias = args.blank_bias
    if bias is None:
        bias, ratio = models.calibrated_bias(args.target_ratio)
        print(f"blank bias {bias:.3f}: compression ratio {ratio:.3f} on the calibration batch")
    result = measure(args.minutes, args.silence_minutes, bias, args.repeats)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print()
    print(report.streaming_section(result))


if __name__ == "__main__":
    main()
