#!/usr/bin/env python3
"""Does the page keep up with a talk spoken in real time? Its words against the computation-aware delays.

A talk (``--wav``, e.g. the demo's first test talk) plays once, in real time, through
headless Chromium's fake microphone into the page, served as ``serve`` serves it (one
translator, ``--threads`` threads). Each word the page shows carries the seconds of
audio the server had when the translator committed it (``time``: SimulEval's delay) and
the seconds of audio the page had sent when it arrived (``arrival``). The same
translator then runs in Python on the audio the server received, pushed as fast as it
goes with the same threads, in a worker thread as the server runs it (on a busy machine
torch's threads are far slower in the main thread): its computation-aware delays
(``elapsed``, as ``simulate`` counts them: the computation so far added to each delay). The page keeps up when every
word arrives no later than its computation-aware delay + 0.5 s.

Reported: the talk, the machine's load, the share of the talk found intact in what the
server received (a loaded browser's audio clock can insert silence), the words (and
whether they are those of the wav itself, when the browser inserted nothing), and
per word (mean / max): delay, computation-aware delay, arrival, arrival after the delay
(what the page's latency readout shows), arrival after the computation-aware delay.
``--screenshot PNG`` saves the page while it translates.

``--translator`` is ``serve``'s (``stream``, the default, or ``live``); options left
out are the zip's, as ``serve`` takes them.

Usage:
    python bench/live_page.py --model egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip \\
        --wav TALK.wav --threads 2 --screenshot docs/serve.png
    python bench/live_page.py --model ZIP --wav TALK.wav --translator live --policy alignatt --frame_num 4 \\
        --segment_ms 400 --attention_layer 2
"""

import argparse
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from espnet2_ext.serving.browser import chromium, fake_microphone, find_talk, translate_in_page
from espnet2_ext.serving.server import LiveServer, listen, running
from espnet2_ext.serving.translators import translate_timed, translator_factory

RATE = 16000
KEEP_UP_SECONDS = 0.5


class Recording:
    """The served translator, keeping the audio it is given."""

    def __init__(self, translator):
        self.translator, self.audio = translator, []

    def push(self, samples, sample_rate):
        self.audio.append(np.array(samples))
        return self.translator.push(samples, sample_rate)

    def finish(self):
        return self.translator.finish()

    def reset(self):
        self.translator.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--wav", required=True, help="the talk: 16-bit mono, 16 kHz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--translator", choices=("stream", "live"), default="stream")
    parser.add_argument("--policy", default=None)
    parser.add_argument("--frame_num", type=int, default=None)
    parser.add_argument("--segment_ms", type=int, default=None)
    parser.add_argument("--attention_layer", type=int, default=None)
    parser.add_argument("--maxlen_b", type=int, default=None)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--screenshot_at", type=float, default=0.7, help="share of the talk played by then")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    given = dict(policy=args.policy, frame_num=args.frame_num, segment_ms=args.segment_ms,
                 attention_layer=args.attention_layer, maxlen_b=args.maxlen_b)
    options = {name: value for name, value in given.items() if value is not None}
    make = translator_factory(args.translator, args.model, **options)
    talk, rate = sf.read(args.wav, dtype="int16")
    assert rate == RATE and talk.ndim == 1, "a 16-bit mono 16 kHz wav"
    seconds = len(talk) / RATE
    load = os.getloadavg()
    served = Recording(make())
    server = LiveServer(lambda: served, 1, 30.0)
    with tempfile.TemporaryDirectory() as profile, running(server, listen("127.0.0.1", 0)) as url:
        with chromium(Path(profile), *fake_microphone(Path(args.wav)), size=(1000, 1000)) as page:
            shot = None if args.screenshot is None else (args.screenshot_at * seconds, args.screenshot)
            state, lines, device_rate = translate_in_page(
                page, url + "/", lambda state: state["audioSeconds"] >= seconds + 1.5, seconds + 120, screenshot=shot
            )
    server.close()
    received = np.concatenate(served.audio)
    share, lags = find_talk(received, talk)
    with ThreadPoolExecutor(1) as thread:  # where the server computes: torch's threads behave otherwise there
        python = thread.submit(translate_timed, served.translator, received, RATE, 1600).result()
        on_wav = thread.submit(translate_timed, served.translator, talk, RATE, 1600).result()
    shown = state["words"]
    same = [w["text"] for w in shown] == [w.text for w in python] and all(
        abs(w["time"] - p.time) < 1e-3 for w, p in zip(shown, python))

    def stats(values) -> str:
        return f"{np.mean(values):6.3f} / {np.max(values):6.3f}"

    print(f"talk {args.wav}: {seconds:.1f} s; machine load {load[0]:.2f} (1 min) on {os.cpu_count()} CPUs; "
          f"{args.threads} thread(s); {args.translator} translator, {options or 'the zip'}'s options")
    print(f"microphone {device_rate} Hz; talk found intact in what the server received: {share:.0%} of its "
          f"100-ms windows, {min(lags) / RATE:+.3f} to {max(lags) / RATE:+.3f} s from their place")
    matcher = SequenceMatcher(None, [w["text"] for w in shown], [w.text for w in on_wav], autojunk=False)
    common = sum(block.size for block in matcher.get_matching_blocks())
    print(f"{len(shown)} words in {len(lines)} lines; the same words at the same delays as in Python: {same}; "
          f"in Python on the wav itself: {len(on_wav)} words, {common} of them in common (in order)")
    print("per word, mean / max (s):")
    print(f"  delay (audio received when committed)      {stats([w.time for w in python])}")
    print(f"  computation-aware delay (Python, as fast)  {stats([w.elapsed for w in python])}")
    print(f"  arrival in the page                        {stats([w['arrival'] for w in shown])}")
    print(f"  arrival - delay (the page's latency)       {stats([w['arrival'] - w['time'] for w in shown])}")
    lateness = [w["arrival"] - p.elapsed for w, p in zip(shown, python)]
    print(f"  arrival - computation-aware delay          {stats(lateness)}")
    late = sum(value > KEEP_UP_SECONDS for value in lateness)
    print(f"keeps up (every word within {KEEP_UP_SECONDS} s of its computation-aware delay): {late == 0} "
          f"({late} late)")
    if args.screenshot is not None:
        print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
