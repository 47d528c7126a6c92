#!/usr/bin/env python3
"""Whole talks: what a recording translated in one piece keeps of its sentences, and what segmenting costs.

The talk: the first ``--sentences`` utterances of a Kaldi data dir (the demo's
tst-COMMON: espeak-ng sentences), joined with pauses of 0.15-0.6 s drawn with
``--seed``. It is translated three ways with a packed model (beam 5, no repeated
5-grams): each sentence alone; the whole talk, segmented by ``Speech2Translation``
(Silero VAD, SHAS's divide-and-conquer, the model's default maximum); and the
whole talk fed as a stream of 1-s chunks (``translate_stream``), which must give
the same segments and translations. Reported: words written (whole / sentences
alone), segments, BLEU and chrF of the whole talk re-segmented onto the
sentences' references by mweralign (as stage 7 scores talks) against the
sentences translated alone.

Then the segmenter alone on one hour of that talk, repeated, fed in 1-s chunks
that are made as they are needed (the hour never sits in memory): wall and CPU
seconds, and how far the process's resident memory rose above where it started
(read every 10 s of audio).

Usage:
    python bench/long_talk.py --model egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip \\
        --data_dir egs/mustc_conformer_ctc/data/tst-COMMON [--sentences 80] [--threads 2]
"""

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from espnet2_ext.fileio.data_dir import read_recordings, read_utterances
from espnet2_ext.fileio.kaldi_table import read_text
from espnet2_ext.inference import Speech2Translation
from espnet2_ext.main_funcs.scoring import score_lines
from espnet2_ext.main_funcs.talk_alignment import TalkReference, align_talk
from espnet2_ext.segmentation import StreamSegmenter
from espnet2_ext.utils.fbank import SAMPLE_RATE, resample
from espnet2_ext.utils.waveform import mix_to_mono

SEARCH = dict(beam_size=5, no_repeat_ngram_size=5, maxlen_a=0.0, maxlen_b=200)


def sentences(data_dir: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """(utterance id, 16 kHz samples) of the data dir's first ``count`` utterances."""
    clips: list[tuple[str, np.ndarray]] = []
    for recording in read_recordings(data_dir):
        for utterance, samples, rate in read_utterances(recording):
            if len(clips) == count:
                return clips
            clips.append((utterance.utt_id, resample(mix_to_mono(samples), rate)))
    return clips


def join(clips: list[np.ndarray], seed: int) -> np.ndarray:
    """The clips, each after a pause of 0.15-0.6 s, then a last pause; the pauses hold a
    noise floor at -72 dBFS, as a recording's (and the demo corpus') do."""
    rng = np.random.default_rng(seed)
    pauses = [
        (2.5e-4 * rng.standard_normal(int(rng.uniform(0.15, 0.6) * SAMPLE_RATE))).astype(np.float32)
        for _ in range(len(clips) + 1)
    ]
    return np.concatenate([part for pause, clip in zip(pauses, clips) for part in (pause, clip)] + [pauses[-1]])


def words(texts: list[str]) -> int:
    return sum(len(text.split()) for text in texts)


def rss_mib() -> float:
    """The process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def segment_an_hour(translator: Speech2Translation, talk: np.ndarray) -> dict[str, float]:
    """The segmenter over one hour of the talk repeated, in 1-s chunks made on demand."""
    segmenter = StreamSegmenter(translator.segmentation)
    segmenter.feed(talk[:SAMPLE_RATE])  # loads Silero's network: not part of the hour
    segmenter.reset()
    before = largest = rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    count = 0
    for second in range(3600):
        positions = (np.arange(second * SAMPLE_RATE, (second + 1) * SAMPLE_RATE)) % len(talk)
        count += len(segmenter.feed(talk[positions]))
        if second % 10 == 0:
            largest = max(largest, rss_mib())
    count += len(segmenter.finish())
    return dict(
        wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu,
        rss_rise_mib=largest - before, segments=count,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a packed model.zip")
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir with text.tgt")
    parser.add_argument("--sentences", type=int, default=80)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    clips = sentences(args.data_dir, args.sentences)
    references = read_text(args.data_dir / "text.tgt")
    refs = [references[utt] for utt, _ in clips]
    talk = join([samples for _, samples in clips], args.seed)
    translator = Speech2Translation.from_pretrained(args.model, **SEARCH)
    print(f"talk: {len(clips)} sentences, {len(talk) / SAMPLE_RATE:.1f} s; "
          f"maximum segment {translator.segmentation.max_seconds:.2f} s")

    start = time.perf_counter()
    alone = [r.text for r in translator.translate_batch([(samples, SAMPLE_RATE) for _, samples in clips], 10)]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    whole = translator(talk, SAMPLE_RATE)
    whole_s = time.perf_counter() - start
    streamed = list(translator.translate_stream(
        (talk[i : i + SAMPLE_RATE] for i in range(0, len(talk), SAMPLE_RATE)), SAMPLE_RATE, batch_size=10
    ))
    same = [(s.start, s.end, s.nbest[0].text) for s in streamed] == [
        (s.start, s.end, s.nbest[0].text) for s in whole.segments
    ]

    aligned = align_talk(TalkReference("talk", tuple(u for u, _ in clips), tuple(refs)), whole.text)
    reference = str(args.data_dir / "text.tgt")
    alone_score = score_lines(alone, refs, "de", hyp="each sentence alone", ref=reference)
    whole_score = score_lines(list(aligned.lines), refs, "de", hyp="the whole talk", ref=reference)
    print()
    print("| translated | segments | words | words / alone | BLEU | chrF | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| each sentence alone | {len(clips)} | {words(alone)} | 1.00 | {alone_score.bleu:.2f} "
          f"| {alone_score.chrf:.2f} | {alone_s:.1f} |")
    print(f"| the whole talk | {len(whole.segments)} | {words([whole.text])} | "
          f"{words([whole.text]) / max(1, words(alone)):.2f} | {whole_score.bleu:.2f} | {whole_score.chrf:.2f} "
          f"| {whole_s:.1f} |")
    print(f"\nthe talk as a stream of 1-s chunks gives the same segments and translations: {same}")

    hour = segment_an_hour(translator, talk)
    print(f"\nsegmenting one hour (1-s chunks, {args.threads} threads): {hour['wall_s']:.1f} s wall, "
          f"{hour['cpu_s']:.1f} s CPU, {hour['segments']} segments, resident memory +{hour['rss_rise_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
