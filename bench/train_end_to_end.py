#!/usr/bin/env python3
"""End to end: ``st_train`` for a few hundred updates on a MuST-C-sized synthetic corpus, and its rate.

The step benchmarks (``train_step.py``, ``gpu_train_step.py``) time the model's
step alone. This one runs the real training program, ``espnet2_ext.bin.st_train``
with ``conf/train.yaml`` (its batches rescaled to ``--ngpu`` as the recipe does,
``local/batch_settings.py``), over a corpus shaped like MuST-C en-de's training
set: 229,703 utterances whose seconds are log-normal like MuST-C's segments
(:func:`utterance_seconds`), random 80-dim features, targets led by the language
tag and source transcripts at MuST-C's token rates, as words of the 8000- and
5002-token lists the step benchmarks use. So ESPnet's data loader, sampler,
trainer and logging are all in the measurement.

The features cost no more disk than their distinct lengths: every utterance of
the same number of frames points into the same matrix of one ``feats.ark``
(an ``ark:offset`` in ``feats.scp``), which the loader reads like any other, so a
full-size corpus takes about 1 GB.

Reported, from ``st_train``'s own log (one line every ``--log_interval``
mini-batches; the first interval, compilation included, is left out):

- updates per hour and GPU-hours per 100k updates, on the wall clock;
- the same counting only ESPnet's ``train_time`` (forward, backward and
  optimizer of each mini-batch): what a step benchmark would predict for these
  batches; their ratio says how much the rest (``iter_time``, the wait for
  data, and the trainer's own work) costs;
- with ``--step_json`` (``gpu_train_step.py``'s output), the prediction of that
  benchmark's row for the same precision and mode, and the ratio.

Usage (one GPU; ``--updates 300`` about 5 minutes on an H200 once the corpus exists):
    python bench/train_end_to_end.py --out /tmp/e2e --ngpu 1 --step_json docs/gpu_train_step.json \\
        --json docs/train_end_to_end.json
On the CPU, for a look at the harness:
    python bench/train_end_to_end.py --out /tmp/e2e --ngpu 0 --utterances 400 --updates 3 \\
        --config conf/demo/train.yaml --log_interval 2
"""

import argparse
import datetime
import json
import math
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

import kaldiio
import models
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mustc_conformer_ctc"
MUSTC_EN_DE_TRAIN_UTTERANCES = 229_703
LOG_VALUE = re.compile(r"([A-Za-z_]\w*)=(-?\d+\.?\d*(?:e[-+]?\d+)?|nan|-?inf)")
LOG_LINE = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?(\d+)epoch:train:(\d+)-(\d+)batch: (.*)$"
)


def utterance_seconds(count: int, seed: int = 0) -> list[float]:
    """``count`` segment durations shaped like MuST-C en-de's (:func:`models.mustc_like_seconds`)."""
    return models.mustc_like_seconds(count, random.Random(seed))


def write_corpus(directory: Path, seconds: list[float], prefix: str, seed: int = 0) -> None:
    """A dump dir as the recipe's stage 2 writes it (feats.scp, text.tgt.tagged, text.src.norm) and
    the shape files of stage 4 (``directory/shapes``)."""
    directory.mkdir(parents=True, exist_ok=True)
    shapes = directory / "shapes"
    shapes.mkdir(exist_ok=True)
    frames = [models.num_frames(int(s * models.SAMPLE_RATE)) for s in seconds]
    rng = np.random.default_rng(seed)
    offsets = {}
    with kaldiio.WriteHelper(f"ark,scp:{directory / 'feats.ark'},{directory / 'distinct.scp'}") as writer:
        for n in sorted(set(frames)):
            writer(str(n), rng.standard_normal((n, 80), dtype=np.float32))
    for line in (directory / "distinct.scp").read_text().splitlines():
        key, location = line.split(maxsplit=1)
        offsets[int(key)] = location
    target, source = models.token_lists()
    target_words, source_words = target[models.LANG_TAG_ID + 1:-1], source[2:-1]
    with (directory / "feats.scp").open("w") as scp, (directory / "text.tgt.tagged").open("w") as tgt, \
            (directory / "text.src.norm").open("w") as src, (shapes / "speech_shape").open("w") as speech_shape, \
            (shapes / "text_shape").open("w") as text_shape, (shapes / "src_text_shape").open("w") as src_shape:
        for i, (s, n) in enumerate(zip(seconds, frames)):
            key = f"{prefix}_{i:07d}"
            words = rng.choice(len(target_words), round(models.TARGET_TOKENS_PER_SECOND * s))
            sources = rng.choice(len(source_words), max(1, round(models.SOURCE_TOKENS_PER_SECOND * s)))
            scp.write(f"{key} {offsets[n]}\n")
            tgt.write(f"{key} {' '.join([target[models.LANG_TAG_ID], *(target_words[w] for w in words)])}\n")
            src.write(f"{key} {' '.join(source_words[w] for w in sources)}\n")
            speech_shape.write(f"{key} {n},80\n")
            text_shape.write(f"{key} {1 + len(words)}\n")
            src_shape.write(f"{key} {len(sources)}\n")
    (directory / "distinct.scp").unlink()


def write_token_lists(directory: Path) -> tuple[Path, Path]:
    target, source = models.token_lists()
    paths = directory / "tgt_tokens.txt", directory / "src_tokens.txt"
    for path, tokens in zip(paths, (target, source)):
        path.write_text("\n".join(tokens) + "\n")
    return paths


def batch_options(config: Path, ngpu: int) -> dict[str, int]:
    """The recipe's rescaling of the config's batches to ``ngpu`` (``local/batch_settings.py``)."""
    printed = subprocess.run([sys.executable, "local/batch_settings.py", "--train_config", str(config),
                              "--ngpu", str(ngpu)], cwd=RECIPE, check=True, capture_output=True, text=True).stdout
    words = printed.split()
    return {words[i].lstrip("-"): int(words[i + 1]) for i in range(0, len(words), 2)}


def train_command(args: argparse.Namespace, dump: Path, tokens: tuple[Path, Path], batches: dict[str, int]) -> list:
    data = []
    for split, name in (("train", "train"), ("dev", "valid")):
        for file, key, kind in (("feats.scp", "speech", "kaldi_ark"), ("text.tgt.tagged", "text", "text"),
                                ("text.src.norm", "src_text", "text")):
            data += [f"--{name}_data_path_and_name_and_type", f"{dump / split / file},{key},{kind}"]
        for shape in ("speech_shape", "text_shape", "src_text_shape"):
            data += [f"--{name}_shape_file", str(dump / split / "shapes" / shape)]
    command = [
        sys.executable, "-m", "espnet2_ext.bin.st_train", "--config", str(args.config), "--input_size", "80",
        "--use_preprocessor", "true", "--token_type", "word", "--token_list", str(tokens[0]),
        "--src_token_type", "word", "--src_token_list", str(tokens[1]), *data,
        "--batch_bins", str(batches["batch_bins"]), "--accum_grad", str(batches["accum_grad"]),
        "--num_iters_per_epoch", str(args.updates * batches["accum_grad"]), "--max_epoch", "1",
        "--log_interval", str(args.log_interval), "--ngpu", str(args.ngpu), "--output_dir", str(args.out / "exp"),
        "--num_workers", str(args.num_workers),
    ]
    if args.ngpu > 1:
        command += ["--multiprocessing_distributed", "true"]
    if args.compile:
        command += ["--compile", args.compile]
    return command + args.train_args


def read_intervals(log: str) -> list[dict]:
    """Each training log line of ``st_train``: its time, mini-batches and logged means."""
    intervals = []
    for line in log.splitlines():
        match = LOG_LINE.search(line)
        if not match:
            continue
        stamp, _, first, last, values = match.groups()
        stats = {key: float(value) for key, value in LOG_VALUE.findall(values)}  # ESPnet drops some commas
        intervals.append(dict(time=datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f"),
                              batches=int(last) - int(first) + 1, stats=stats))
    return intervals


def rates(intervals: list[dict], accum_grad: int) -> dict:
    """Updates per hour from the intervals after the first (compilation, warm-up), on the wall clock
    and counting only each mini-batch's ``train_time``."""
    if len(intervals) < 3:
        raise SystemExit(f"ERROR: st_train logged {len(intervals)} training intervals; 3 or more are needed "
                         "(more --updates, or a smaller --log_interval)")
    timed = intervals[1:]
    batches = sum(i["batches"] for i in timed[1:])
    wall_s = (timed[-1]["time"] - timed[0]["time"]).total_seconds()
    train_s = sum(i["stats"].get("train_time", math.nan) * i["batches"] for i in timed[1:])
    wait_s = sum(i["stats"].get("iter_time", math.nan) * i["batches"] for i in timed[1:])
    updates = batches / accum_grad
    return dict(
        minibatches=batches, wall_s=wall_s, train_time_s=train_s, iter_time_s=wait_s,
        updates_per_hour=updates / wall_s * 3600, updates_per_hour_train_time=updates / train_s * 3600,
        train_time_share=train_s / wall_s,
        compression_ratio=statistics.fmean(i["stats"].get("compression_ratio", math.nan) for i in timed),
    )


def predicted_from_step_json(path: Path, precision: str, mode: str, accum_grad: int) -> dict:
    """Updates per hour that ``gpu_train_step.py``'s 66 x 6 s row predicts at ``accum_grad`` mini-batches
    per update (its mini-batch is FBK's 40k frames per GPU, as the recipe's)."""
    rows = json.loads(path.read_text())["rows"]
    row = next(r for r in rows if r["model"] == "ours" and r["precision"] == precision and r["mode"] == mode)
    return dict(step_json=str(path), step_row=f"{row['shape']} {precision} {mode}", step_s=row["step_s"],
                step_compression_ratio=row.get("compression_ratio"),
                predicted_updates_per_hour=3600 / (row["step_s"] * accum_grad))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="corpus, st_train's experiment, result.json")
    parser.add_argument("--ngpu", type=int, default=1)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--utterances", type=int, default=MUSTC_EN_DE_TRAIN_UTTERANCES)
    parser.add_argument("--config", type=Path, default=ROOT / "conf" / "train.yaml")
    parser.add_argument("--compile", choices=("true", "false", "auto"), default=None,
                        help="st_train --compile (default: the config's)")
    parser.add_argument("--log_interval", type=int, default=50, help="mini-batches per log line")
    parser.add_argument("--num_workers", type=int, default=4, help="data loader processes")
    parser.add_argument("--step_json", type=Path, help="gpu_train_step.py's output: its prediction beside ours")
    parser.add_argument("--precision", default="fp32", help="the row of --step_json (the config trains fp32 "
                        "unless it sets use_amp)")
    parser.add_argument("--json", type=Path, help="a copy of result.json, e.g. docs/train_end_to_end.json "
                        "(which report.py shows)")
    parser.add_argument("train_args", nargs="*", help="more st_train options, after --")
    args = parser.parse_args()
    args.out, args.config = args.out.resolve(), args.config.resolve()
    dump = args.out / "dump"
    if not (dump / "train" / "feats.scp").is_file():
        write_corpus(dump / "dev", utterance_seconds(200, seed=1), "dev", seed=1)
        write_corpus(dump / "train", utterance_seconds(args.utterances), "train")
    tokens = write_token_lists(args.out)
    batches = batch_options(args.config, args.ngpu)
    command = train_command(args, dump, tokens, batches)
    log_path = args.out / "st_train.log"
    with log_path.open("w") as log:
        finished = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise SystemExit(f"ERROR: st_train failed (exit {finished.returncode}): see {log_path}")
    device = "CPU"
    if args.ngpu > 0:
        import torch

        device = torch.cuda.get_device_name()
    result = dict(command=command, device=device, ngpu=args.ngpu, accum_grad=batches["accum_grad"],
                  batch_bins=batches["batch_bins"], updates=args.updates, utterances=args.utterances,
                  **rates(read_intervals(log_path.read_text()), batches["accum_grad"]))
    result["gpu_hours_100k_updates"] = max(args.ngpu, 1) * 100_000 / result["updates_per_hour"]
    if args.step_json:
        mode = "compiled" if (args.compile or "auto") != "false" and args.ngpu > 0 else "eager"
        result.update(predicted_from_step_json(args.step_json, args.precision, mode, batches["accum_grad"]))
        result["measured_over_predicted"] = result["updates_per_hour"] / result["predicted_updates_per_hour"]
    for path in filter(None, (args.out / "result.json", args.json)):
        path.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "command"}, indent=1, default=str))


if __name__ == "__main__":
    main()
