#!/usr/bin/env python3
"""Real-time factor of translating audio, one file at a time against batches, in one run.

RTF = seconds spent / seconds of audio, counting everything after the model is
loaded: reading, resampling, features, encoding and beam search. The same clips
are translated at each ``--batch-sizes`` entry (after one warm-up batch); the
hypotheses must be identical across batch sizes, which the script checks.

Two models:

- ``--model model.zip``: a packed model, e.g. ``make demo``'s.
- ``--full-size``: FBK's architecture from ``conf/train.yaml`` with random weights
  and 8000/5000-token vocabularies. A random decoder almost never ends a
  hypothesis, so every search runs to its length limit, set to
  ``--tokens-per-second`` (default 4.3, about MuST-C en-de's target pieces per
  second of speech); the CTC head's blank logit is raised by ``--blank-bias`` so
  the compression is about a trained model's (a random head compresses nothing).

Usage:
    python bench/translate_rtf.py --model egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip
    python bench/translate_rtf.py --full-size --clips 20 [--device cuda --batch-sizes 1,10,50]
"""

import argparse
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import soundfile as sf
import torch
import yaml

from espnet2_ext.bin.make_fbank import read_recordings, sample_range
from espnet2_ext.inference.speech2translation import Speech2Translation

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "mustc_conformer_ctc"
FRAMES_PER_SECOND = 100


def read_clips(data_dir: Path, count: int) -> List[Tuple[np.ndarray, int]]:
    """The first ``count`` utterances of a Kaldi data dir, cut as the feature stage cuts them."""
    clips = []
    for recording in read_recordings(data_dir):
        info = sf.info(recording.wav)
        for utt in recording.utterances[: count - len(clips)]:
            start, stop = sample_range(utt, info.samplerate, info.frames, recording.wav)
            clips.append((sf.read(recording.wav, start=start, stop=stop, dtype="float32")[0], info.samplerate))
    return clips


def full_size_translator(args: argparse.Namespace) -> Speech2Translation:
    train = yaml.safe_load((RECIPE / "conf/train.yaml").read_text())
    config = dict(
        encoder=train["encoder"], encoder_conf=train["encoder_conf"], decoder=train["decoder"],
        decoder_conf=train["decoder_conf"], model_conf=train["model_conf"],
        token_list=["<blank>", "<unk>", "<lang:de>", *(f"w{i}" for i in range(7996)), "<sos/eos>"],
        src_token_list=["<blank>", "<unk>", *(f"s{i}" for i in range(4998))],
        token_type="word", src_token_type="word", bpemodel=None, src_bpemodel=None,
        input_size=80, frontend=None, frontend_conf={}, specaug=None, specaug_conf={},
        normalize=None, normalize_conf={}, init=None,
    )
    torch.manual_seed(0)
    translator = Speech2Translation(
        config, None, device=args.device, beam_size=args.beam_size, no_repeat_ngram_size=5,
        maxlen_a=args.tokens_per_second / FRAMES_PER_SECOND, maxlen_b=0,
    )
    with torch.no_grad():
        translator.model.encoder.ctc_head.bias[0] += args.blank_bias
    return translator


def timed_run(translator: Speech2Translation, clips, batch_size: int) -> Tuple[float, list]:
    start = time.perf_counter()
    prepared = [translator.prepare(samples, rate) for samples, rate in clips]
    results = translator.translate_prepared(prepared, batch_size)
    return time.perf_counter() - start, [[h.token_ids for h in r.nbest] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="packed model.zip")
    which.add_argument("--full-size", action="store_true", help="FBK's size, random weights")
    parser.add_argument("--data-dir", default=str(RECIPE / "data/tst-COMMON"), help="Kaldi data dir of the clips")
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--batch-sizes", default="1,10")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tokens-per-second", type=float, default=4.3)
    parser.add_argument("--blank-bias", type=float, default=2.5)
    args = parser.parse_args()

    if not (Path(args.data_dir) / "segments").is_file():
        parser.error(f"{args.data_dir} has no wav.scp/segments: run `make demo` first, or give --data-dir")
    torch.set_num_threads(args.threads)
    if args.full_size:
        translator = full_size_translator(args)
    else:
        translator = Speech2Translation.from_pretrained(
            args.model, device=args.device, beam_size=args.beam_size, no_repeat_ngram_size=5
        )
    clips = read_clips(Path(args.data_dir), args.clips)
    seconds = sum(len(samples) / rate for samples, rate in clips)
    parameters = sum(p.numel() for p in translator.model.parameters()) / 1e6
    print(f"model: {'full size, random weights' if args.full_size else args.model} ({parameters:.1f}M parameters)")
    print(f"{len(clips)} clips, {seconds:.1f} s of audio, beam {args.beam_size}, {args.threads} threads, {args.device}")
    timed_run(translator, clips[: max(map(int, args.batch_sizes.split(",")))], 10)  # warm-up

    reference, first_time = None, None
    for batch_size in map(int, args.batch_sizes.split(",")):
        elapsed, hypotheses = timed_run(translator, clips, batch_size)
        if reference is None:
            reference, first_time = hypotheses, elapsed
        assert hypotheses == reference, f"batch size {batch_size} changed a hypothesis"
        print(f"batch {batch_size:3d}: {elapsed:7.2f} s  RTF {elapsed / seconds:.3f}  "
              f"{1000 * elapsed / len(clips):7.1f} ms/clip  time ratio vs first: {elapsed / first_time:.2f}")


if __name__ == "__main__":
    main()
