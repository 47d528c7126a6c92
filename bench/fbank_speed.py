#!/usr/bin/env python3
"""Real-time factor of the features: ``espnet2_ext.utils.fbank.compute_fbank`` on one thread.

RTF = CPU seconds of the process / seconds of audio, for ``--seconds`` of noise at
16 kHz (the features alone) and at 44.1 kHz (resampled to 16 kHz first, as for
a CD-quality user file), median of ``--repeats`` after one warm-up (``timing.interleaved``). With one
torch thread this is the time per core: a feature job on N cores computes about
N times as fast (the recipe's stage 2 runs one single-threaded job per core).
"""

import argparse
import functools
from collections.abc import Sequence

import numpy as np
import torch

from espnet2_ext.utils.fbank import compute_fbank
from timing import interleaved

RATES = (16000, 44100)


def measure(seconds: float = 60.0, rates: Sequence[int] = RATES, repeats: int = 5, threads: int = 1) -> list[dict]:
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for rate in rates:
        samples = (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
        timed = interleaved({"fbank": functools.partial(compute_fbank, samples, rate)}, repeats)["fbank"]
        rows.append(dict(rate=rate, seconds=seconds, threads=threads, rtf=timed.cpu_s / seconds, times=timed.cpu))
        print(f"  fbank {rate} Hz, {threads} thread(s): RTF {rows[-1]['rtf']:.5f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after the warm-up")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    measure(args.seconds, RATES, args.repeats, args.threads)


if __name__ == "__main__":
    main()
