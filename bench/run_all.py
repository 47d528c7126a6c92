#!/usr/bin/env python3
"""Every benchmark in one run, ours against ESPnet's peer; writes ``docs/benchmarks.md``.

Sections, in order: calibration of ours' CTC head (``models.py``); training
step time over the length sweep, at each thread count (``train_step.py``; at 2
threads on the table's lengths only), peak memory, and the operations of a step; what a step asks
of a GPU's host, eager and compiled, and what compiling costs (``compile_proxies.py``); beam-search decoding
against ESPnet's ``Speech2Text`` at each thread count (``decoding.py``);
one step of simultaneous translation, the forced prefix primed against stepped
(``simultaneous_step.py``); a talk streamed for 20 minutes, an hour without speech, and a
step against the audio history (``streaming.py``); start-up of ``translate`` (``startup.py``); the features (``fbank_speed.py``);
what padding changes in an utterance's encoding (``padding.py``).
``benchmarks.json`` (every timing) is saved in ``--out_dir`` after each section,
then ``report.py`` writes ``benchmarks.md`` and ``train_step.png`` next to it.
``--resume`` goes on from the sections a killed run saved (same settings).

The full run (``make bench``) takes about an hour on 2 idle CPU cores. ``--quick`` is a
smoke test of the whole harness in a few minutes (full-size models, short
utterances, one round, few clips); it writes into a temporary directory unless
``--out_dir`` is given, so it never replaces the real page.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import compile_proxies
import decoding
import fbank_speed
import models
import padding
import report
import simultaneous_step
import startup
import streaming
import train_step

FULL = dict(
    threads=[1, 2], repeats=3, train_lengths={"1": [5.0, 10.0, 15.0, 20.0, 25.0, 30.0], "2": [5.0, 10.0, 20.0]},
    memory_lengths=[5.0, 10.0, 20.0, 30.0], calibration_seconds=10.0, clips=20, clip_seconds=[3.0, 9.0],
    startup_repeats=5, fbank_seconds=60.0, simul_seconds=[5.0, 10.0, 20.0], simul_repeats=5,
    proxy_seconds=5.0, proxy_compile_models=["demo", "ours"], proxy_epoch_utterances=400,
    stream_minutes=20.0, stream_silence_minutes=60.0,
)
PADDING_SECONDS = [2.0, 4.0, 6.0]  # one batch: small enough for every run
QUICK = dict(
    threads=[1], repeats=1, train_lengths={"1": [2.0, 3.0]}, memory_lengths=[2.0], calibration_seconds=2.0,
    clips=3, clip_seconds=[2.0, 3.0], startup_repeats=1, fbank_seconds=5.0, simul_seconds=[3.0], simul_repeats=1,
    proxy_seconds=2.0, proxy_compile_models=[], proxy_epoch_utterances=0,
    stream_minutes=1.0, stream_silence_minutes=2.0,
)


def sections(settings: dict, target_ratio: float) -> dict[str, Callable[[dict], None]]:
    """Section name -> what it adds to the results, in running order."""

    def calibrate(results: dict) -> None:
        bias, ratio = models.calibrated_bias(target_ratio, settings["calibration_seconds"])
        results["calibration"] = dict(target=target_ratio, bias=bias, ratio=ratio,
                                      seconds=settings["calibration_seconds"])
        print(f"  blank bias {bias:.3f}: ratio {ratio:.3f}", flush=True)

    def train(threads: int) -> Callable[[dict], None]:
        def run(results: dict) -> None:
            rows = train_step.time_steps(models.MODELS, settings["train_lengths"][str(threads)], [threads],
                                         settings["repeats"], results["calibration"]["bias"])
            results["train"] += rows
            results["parameters"] = {row["model"]: row["parameters"] for row in rows}
        return run

    def memory(results: dict) -> None:
        results["memory"] = train_step.memory_rows(models.MODELS, settings["memory_lengths"],
                                                   results["calibration"]["bias"], _limit_ratios(results))

    def flops(results: dict) -> None:
        results["flops"] = train_step.flop_rows(models.MODELS, settings["memory_lengths"],
                                                results["calibration"]["bias"], _limit_ratios(results))

    def compile_proxies_(results: dict) -> None:
        results["compile_proxies"] = compile_proxies.measure(
            settings["proxy_seconds"], results["calibration"]["bias"], settings["repeats"],
            tuple(settings["proxy_compile_models"]), settings["proxy_epoch_utterances"],
        )

    def decode(threads: int) -> Callable[[dict], None]:
        def run(results: dict) -> None:
            clips = decoding.synthetic_clips(settings["clips"], *settings["clip_seconds"])
            results["decoding"] += decoding.measure(clips, [1, 10], threads, settings["repeats"],
                                                    results["calibration"]["bias"])
        return run

    def simultaneous(results: dict) -> None:
        results["simultaneous"] = simultaneous_step.measure(
            settings["simul_seconds"], settings["simul_repeats"], results["calibration"]["bias"],
            command=results["command"],
        )

    def streams(results: dict) -> None:
        results["streaming"] = streaming.measure(
            settings["stream_minutes"], settings["stream_silence_minutes"], results["calibration"]["bias"],
            settings["simul_repeats"],
        )

    def start_up(results: dict) -> None:
        for threads in settings["threads"]:
            row = startup.measure(settings["startup_repeats"], threads=threads)
            results["startup"].append(row)
            print(f"  {threads} thr: --help {row['help_s']:.2f} s, one 3-s file {row['file_s']:.2f} s", flush=True)

    def features(results: dict) -> None:
        results["fbank"] = fbank_speed.measure(settings["fbank_seconds"], threads=1)

    def padding_leaks(results: dict) -> None:
        results["padding"] = padding.measure(PADDING_SECONDS, results["calibration"]["bias"])

    return {
        "calibration": calibrate,
        **{f"train/{t}": train(t) for t in settings["threads"] if str(t) in settings["train_lengths"]},
        "memory": memory,
        "flops": flops,
        "compile_proxies": compile_proxies_,
        **{f"decoding/{t}": decode(t) for t in settings["threads"]},
        "simultaneous": simultaneous,
        "streaming": streams,
        "startup": start_up,
        "fbank": features,
        "padding": padding_leaks,
    }


def _limit_ratios(results: dict) -> dict[float, float]:
    """Utterance seconds -> the ratio the limit kept in the 1-thread timings (ours' own)."""
    return {row["seconds"]: row["compression_ratio"] for row in results["train"]
            if row["model"] == "limit" and row["threads"] == 1}


def run(settings: dict, target_ratio: float, out_dir: Path, resume: bool) -> dict:
    saved = out_dir / "benchmarks.json"
    if resume and saved.is_file():
        results = json.loads(saved.read_text(encoding="utf-8"))
        if results["settings"] != settings:
            raise SystemExit(f"ERROR: {saved} was measured with other settings: run without --resume")
        print(f"resuming after {', '.join(results['done'])}", flush=True)
    else:
        results = dict(
            command=os.environ.get("BENCH_COMMAND") or " ".join(["python", *sys.argv]),
            started=datetime.datetime.now().isoformat(timespec="seconds"), settings=settings,
            machine=report.machine_info(), load_average=dict(start=_load()), elapsed_s=0.0, done=[],
            train=[], memory=[], decoding=[], startup=[], fbank=[],
        )
    for name, section in sections(settings, target_ratio).items():
        if name in results["done"]:
            continue
        print(name, flush=True)
        started = time.time()
        section(results)
        results["elapsed_s"] += time.time() - started
        results["done"].append(name)
        report.save(results, out_dir)
    results["load_average"]["end"] = _load()
    return results


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny settings, temporary output")
    parser.add_argument("--out_dir", type=Path, help="default: docs/ (a temporary directory with --quick)")
    parser.add_argument("--resume", action="store_true", help="keep the sections OUT_DIR/benchmarks.json holds")
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio ours is calibrated to")
    args = parser.parse_args()
    out_dir = args.out_dir
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="bench-quick.")) if args.quick else models.ROOT / "docs"
    results = run(QUICK if args.quick else FULL, args.target_ratio, out_dir, args.resume)
    results["quick"] = args.quick
    report.write(results, out_dir)
    print(f"wrote {out_dir / 'benchmarks.md'}, {out_dir / 'train_step.png'} and {out_dir / 'benchmarks.json'}")


if __name__ == "__main__":
    main()
