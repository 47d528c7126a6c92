#!/usr/bin/env python3
"""Beam-search translation speed: ours at several batch sizes against ESPnet's stock decoding.

Time counts everything after the models are loaded: features
(``compute_fbank``), encoding and beam search (beam 5), for the same clips (not
our voice-activity check and segmentation, which the stock decoding lacks:
``long_talk.py`` measures them); the
real-time factor (RTF) is that time over the seconds of audio (wall time; the
CPU time of the process is kept too: at one thread, what a core of its own gives). Ours is
``espnet2_ext.inference.Speech2Translation`` with fairseq's search (our
default) and no repeated 5-grams; the stock decoding is ESPnet's
``espnet2.bin.st_inference.Speech2Text`` (its ``BatchBeamSearch`` with ESPnet's
``TransformerDecoder``, no CTC or length bonus) over the peer of
``models.peer_namespace``, which ESPnet decodes one utterance at a time only (its
``st_inference`` raises ``NotImplementedError`` for a batch size above 1).
Configurations take turns, a warm-up round then the median of ``--repeats``
(``timing.interleaved``);
ours must give the same hypotheses at every batch size (checked).

A random decoder never ends a hypothesis on its own, so each search runs to a
length fixed per utterance: ours ``maxlen = floor(--tokens_per_second / 100 x
feature frames)`` tokens after <sos> (language tag included) plus the forced
<eos>, ESPnet ``maxlen + 1`` (a negative ``maxlenratio``), so that both make
the same number of decoder calls per utterance. Ours' CTC head gets the blank
bias that compresses to ``--target_ratio`` (the ratio reached is reported).

Models: both at full size with random weights (default), or ``--model
model.zip``, a packed model (e.g. ``make demo``'s), ours only (the stock decoder
cannot load it). Clips: ``--clips`` of noise, 3-9 s (mean 6 s, as MuST-C's
tst-COMMON; content does not matter to random weights), or the first
``--clips`` utterances of a Kaldi data dir (``--data_dir``).

Usage:
    python bench/decoding.py --clips 20 --threads 1
    python bench/decoding.py --data_dir egs/mustc_conformer_ctc/data/tst-COMMON --clips 20 --threads 2
    python bench/decoding.py --model egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip \\
        --data_dir egs/mustc_conformer_ctc/data/tst-COMMON --clips 50 --threads 2
"""

import argparse
import logging
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import models
import numpy as np
import torch
from timing import interleaved

from espnet2_ext.fileio.data_dir import read_recordings, read_utterances
from espnet2_ext.inference import Speech2Translation
from espnet2_ext.inference.speech2translation import pad_features
from espnet2_ext.utils.fbank import SAMPLE_RATE, compute_fbank
from espnet2_ext.utils.waveform import mix_to_mono

FRAMES_PER_SECOND = 100
Clip = tuple[np.ndarray, int]


def synthetic_clips(count: int, shortest: float = 3.0, longest: float = 9.0, seed: int = 0) -> list[Clip]:
    """``count`` noise clips at 16 kHz, lengths evenly spread over [shortest, longest] s, shuffled."""
    rng = np.random.default_rng(seed)
    seconds = rng.permutation(np.linspace(shortest, longest, count))
    return [((0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32), SAMPLE_RATE) for s in seconds]


def data_dir_clips(data_dir: Path, count: int) -> list[Clip]:
    """The first ``count`` utterances of a Kaldi data dir, cut as the feature stage cuts them."""
    clips: list[Clip] = []
    for recording in read_recordings(data_dir):
        for _, samples, rate in read_utterances(recording):
            if len(clips) == count:
                return clips
            clips.append((mix_to_mono(samples), rate))
    return clips


def our_maxlen(frames: int, tokens_per_second: float) -> int:
    return max(1, int(tokens_per_second / FRAMES_PER_SECOND * frames))


def our_translator(blank_bias: float, beam_size: int, tokens_per_second: float, device: str) -> Speech2Translation:
    torch.manual_seed(0)
    translator = Speech2Translation(
        models.our_config("avg"), None, device=device, search="fairseq", beam_size=beam_size,
        no_repeat_ngram_size=5, maxlen_a=tokens_per_second / FRAMES_PER_SECOND, maxlen_b=0,
    )
    models.raise_blank(translator.model, blank_bias)
    return translator


def stock_translator(workdir: Path, beam_size: int, device: str):
    """ESPnet's ``Speech2Text`` over the peer's config (random weights, as ESPnet builds it)."""
    from espnet2.bin.st_inference import Speech2Text

    logging.getLogger("espnet.nets.beam_search").setLevel(logging.ERROR)  # "stopped by the max output length"
    torch.manual_seed(0)
    config = models.write_peer_config(workdir / "config.yaml")
    return Speech2Text(st_train_config=config, st_model_file=None, device=device, beam_size=beam_size, nbest=1)


def decode_ours(translator: Speech2Translation, clips: Sequence[Clip], batch_size: int) -> list[list[int]]:
    """Features and search, as the stock decoding does (segmentation's own cost: ``long_talk.py``);
    the clips in batches of ``batch_size``."""
    features = [compute_fbank(samples, rate) for samples, rate in clips]
    hypotheses = []
    for first in range(0, len(features), batch_size):
        speech, lengths = pad_features(features[first : first + batch_size])
        hypotheses += [nbest[0].token_ids for nbest in translator.translate_features(speech, lengths)]
    return hypotheses


def decode_stock(speech2text, clips: Sequence[Clip], tokens_per_second: float) -> list[list[int]]:
    hypotheses = []
    for samples, rate in clips:
        features = compute_fbank(samples, rate)
        speech2text.maxlenratio = -float(our_maxlen(len(features), tokens_per_second) + 1)
        hypotheses.append(speech2text(torch.from_numpy(features))[0][2])
    return hypotheses


@torch.no_grad()
def decoding_compression(translator: Speech2Translation, clips: Sequence[Clip]) -> float:
    """Ours' compression ratio over the clips (eval mode)."""
    after = before = 0
    for samples, rate in clips:
        features = torch.from_numpy(compute_fbank(samples, rate))[None]
        out = translator.model.encode_with_ctc(features, torch.tensor([features.size(1)]))
        after, before = after + int(out.lengths.sum()), before + int(out.ctc_lengths.sum())
    return after / before


def measure(
    clips: Sequence[Clip], batch_sizes: Sequence[int], threads: int, repeats: int, blank_bias: float,
    beam_size: int = 5, tokens_per_second: float = 4.3, device: str = "cpu", model: str | None = None,
    stock: bool = True,
) -> list[dict]:
    """One row per configuration: ``decoder`` (ours/stock), ``batch_size``, time, RTF, tokens per clip."""
    torch.set_num_threads(threads)
    if model is None:
        translator = our_translator(blank_bias, beam_size, tokens_per_second, device)
    else:
        translator = Speech2Translation.from_pretrained(model, device=device, beam_size=beam_size,
                                                        no_repeat_ngram_size=5)
    runs = {f"ours/{b}": (lambda b=b: decode_ours(translator, clips, b)) for b in batch_sizes}
    with tempfile.TemporaryDirectory() as workdir:
        if stock:
            speech2text = stock_translator(Path(workdir), beam_size, device)
            runs = {"stock/1": lambda: decode_stock(speech2text, clips, tokens_per_second), **runs}
        results = interleaved(runs, repeats)
    ours = [results[f"ours/{b}"].last for b in batch_sizes]
    assert all(h == ours[0] for h in ours), "ours gave other hypotheses at another batch size"
    audio = sum(len(samples) / rate for samples, rate in clips)
    ratio = decoding_compression(translator, clips)
    rows = []
    for name, result in results.items():
        decoder, batch_size = name.split("/")
        rows.append(dict(
            decoder=decoder, batch_size=int(batch_size), threads=threads, clips=len(clips), audio_s=audio,
            seconds=result.wall_s, times=result.wall, rtf=result.wall_s / audio,
            cpu_seconds=result.cpu_s, cpu_times=result.cpu, cpu_rtf=result.cpu_s / audio,
            tokens_per_clip=statistics.mean(len(h) for h in result.last),
            compression_ratio=ratio if decoder == "ours" else None,
        ))
        print(f"  {threads} thr  {decoder:5} batch {batch_size:>3}: {result.wall_s:7.2f} s "
              f"(CPU {result.cpu_s:.2f} s)  RTF {rows[-1]['rtf']:.3f}  "
              f"{rows[-1]['tokens_per_clip']:.1f} tokens/clip", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a packed model.zip (ours only); default: full size, random weights")
    parser.add_argument("--data_dir", type=Path, help="Kaldi data dir of the clips (default: synthetic clips)")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--batch_sizes", default="1,10", help="ours' batch sizes")
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--threads", default="1", help="torch threads, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--tokens_per_second", type=float, default=4.3, help="output length limit (random models)")
    parser.add_argument("--target_ratio", type=float, default=0.4, help="compression ratio of ours' CTC head")
    parser.add_argument("--blank_bias", type=float, default=None, help="skip the calibration, use this bias")
    args = parser.parse_args()
    if args.data_dir is not None and not (args.data_dir / "wav.scp").is_file():
        parser.error(f"{args.data_dir} has no wav.scp: run `make demo` first, or give another --data_dir")
    clips = data_dir_clips(args.data_dir, args.clips) if args.data_dir else synthetic_clips(args.clips)
    bias = args.blank_bias
    if bias is None and args.model is None:
        bias, ratio = models.calibrated_bias(args.target_ratio)
        print(f"blank bias {bias:.3f}: compression ratio {ratio:.3f} on the calibration batch")
    audio = sum(len(samples) / rate for samples, rate in clips)
    print(f"{len(clips)} clips, {audio:.1f} s of audio, beam {args.beam_size}, {args.device}")
    for threads in args.threads.split(","):
        measure(clips, [int(b) for b in args.batch_sizes.split(",")], int(threads), args.repeats, bias or 0.0,
                args.beam_size, args.tokens_per_second, args.device, args.model, stock=args.model is None)


if __name__ == "__main__":
    main()
