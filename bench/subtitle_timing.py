#!/usr/bin/env python3
"""Subtitle timing measured: the cross-attention (SBAAM, each decoder layer) against proportional timing.

The test set's whole recordings (a Kaldi data dir: ``wav.scp`` of talks, ``segments``,
``text.tgt``) are translated once per decoder layer with a packed model and the
recipe's search (``--config``, e.g. ``conf/demo/decode.yaml``), as ``translate
--format jsonl`` writes them, then scored as stage 7 scores talks
(:func:`~espnet2_ext.main_funcs.talk_scoring.score_talks`): SubER against the reference
sentences at their ``segments`` times, and the mean absolute error of the start of
every block that starts a reference sentence. The translation does not depend on the
layer, so proportional timing is scored once. Also reported: the start error over the
blocks that do not start their segment, the only ones whose start the timing decides
(a segment's first block starts with it either way), and, finer, the error of the time
given to the first word of each reference sentence that begins inside a segment
(mweralign says which translated word that is), whether or not a block starts there.
Where the segmentation cuts at
every sentence (the demo's talks, whose sentences are separated by clear pauses, with
the recipe's settings), no block but a segment's first starts a sentence and the
timings score the same: ``--max_segment_seconds 12 --pause_seconds 0`` (no cut forced
at pauses) gives segments of several sentences, as SHAS's on MuST-C's talks are.

Usage:
    python bench/subtitle_timing.py --model egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip \\
        --data_dir egs/mustc_conformer_ctc/data/tst-COMMON --config egs/mustc_conformer_ctc/conf/demo/decode.yaml \\
        --out /tmp/subtitle_timing [--threads 2] [--max_segment_seconds 12 --pause_seconds 0]
"""

import argparse
import json
from pathlib import Path

import torch

from espnet2_ext.fileio.atomic import write_lines_atomically
from espnet2_ext.fileio.kaldi_table import read_wav_scp
from espnet2_ext.fileio.yaml_file import read_yaml_mapping
from espnet2_ext.inference import Speech2Translation
from espnet2_ext.inference.output_formats import jsonl_record
from espnet2_ext.main_funcs.subtitle_scoring import start_errors
from espnet2_ext.main_funcs.talk_alignment import align_talk
from espnet2_ext.main_funcs.talk_scoring import paired_talks, score_talks
from espnet2_ext.subtitles import build_blocks
from espnet2_ext.subtitles.blocks import proportional_spans, to_ms

TRANSLATOR_OPTIONS = (
    "search", "beam_size", "no_repeat_ngram_size", "maxlen_a", "maxlen_b", "max_segment_seconds",
    "min_segment_seconds", "vad_threshold", "pause_seconds", "pad_start_seconds", "pad_end_seconds",
)


def inner_start_error(jsonl: Path, data_dir: Path, timing: str) -> tuple[float | None, int]:
    """Mean start error over the blocks that start a reference sentence but not their segment."""
    references, translations = paired_talks(jsonl, data_dir)
    errors = []
    for reference in references:
        talk = translations[reference.recording_id]
        blocks, firsts = [], set()
        for segment in talk.segments:
            firsts.add(len(blocks))
            blocks += build_blocks([segment], timing=timing)
        lines = align_talk(reference, talk.text).lines
        found = start_errors(blocks, lines, [start for start, _ in reference.times])
        errors += [error for index, error in found.items() if index not in firsts]
    return (sum(errors) / len(errors) if errors else None), len(errors)


def inner_word_start_error(jsonl: Path, data_dir: Path, timing: str) -> tuple[float | None, int]:
    """Mean error of the start given to the first translated word of each reference sentence,
    over the sentences whose first word is not the first of its segment."""
    references, translations = paired_talks(jsonl, data_dir)
    errors = []
    for reference in references:
        talk = translations[reference.recording_id]
        starts, firsts = [], set()
        for segment in talk.segments:
            words = segment.text.split()
            firsts.add(len(starts))
            if timing == "attention" and segment.word_times is not None:
                starts += [start for start, _ in segment.word_times]
            else:
                starts += [s / 1000 for s, _ in proportional_spans(words, to_ms(segment.start), to_ms(segment.end))]
        offset = 0
        for line, (start, _) in zip(align_talk(reference, talk.text).lines, reference.times):
            if line.split() and offset not in firsts:
                errors.append(abs(starts[offset] - start))
            offset += len(line.split())
    return (sum(errors) / len(errors) if errors else None), len(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True, help="the recipe's decode.yaml")
    parser.add_argument("--out", type=Path, required=True, help="where the jsonl files go")
    parser.add_argument("--layers", type=int, nargs="*", default=None, help="decoder layers (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tgt_lang", default="de")
    parser.add_argument("--max_segment_seconds", type=float, default=None, help="instead of the config's")
    parser.add_argument("--pause_seconds", type=float, default=None, help="instead of the config's (0: no cut)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = read_yaml_mapping(args.config)
    options = {key: config[key] for key in TRANSLATOR_OPTIONS if key in config}
    for key in ("max_segment_seconds", "pause_seconds"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    wavs = read_wav_scp(args.data_dir / "wav.scp")
    translator = Speech2Translation.from_pretrained(args.model, **options)
    layers = args.layers if args.layers is not None else range(len(translator.model.decoder.decoders))
    rows = []
    for layer in layers:
        translator.attention_layer = layer
        results = translator.translate_batch(list(wavs.values()), batch_size=config.get("batch_size", 10))
        jsonl = args.out / f"talks.layer{layer}.jsonl"
        write_lines_atomically(
            jsonl, [json.dumps(jsonl_record(key, r), ensure_ascii=False) for key, r in zip(wavs, results)]
        )
        scores = score_talks(jsonl, args.data_dir, args.tgt_lang, subtitles=True).result
        for score in scores.subtitles:
            if score.timing == "proportional" and any(row[0] == "proportional" for row in rows):
                continue  # the translation, so proportional timing, is the same for every layer
            inner = inner_start_error(jsonl, args.data_dir, score.timing)
            words = inner_word_start_error(jsonl, args.data_dir, score.timing)
            name = f"attention, layer {layer}" if score.timing == "attention" else "proportional"
            rows.append((name, score, inner, words, scores.bleu))
    segmentation = translator.segmentation
    print(f"{len(wavs)} talks of {args.data_dir}, model {args.model}, {args.threads} threads; segments shorter than "
          f"{segmentation.max_seconds:g} s, cut at pauses of {segmentation.pause_seconds} s; "
          f"{scores.talks.n_segments} segments for {scores.n_segments} sentences\n")
    print("| timing | SubER | block start error (s) | inside segments | first words inside segments | blocks "
          "| within cps | BLEU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s, inner, words, bleu in rows:
        print(f"| {name} | {s.suber:.2f} | {_error(s.start_error, s.starts_compared)} | {_error(*inner)} "
              f"| {_error(*words)} | {s.blocks} | {s.within_cps:.1f}% | {bleu:.2f} |")


def _error(mean: float | None, count: int) -> str:
    return "–" if mean is None else f"{mean:.3f} ({count})"


if __name__ == "__main__":
    main()
