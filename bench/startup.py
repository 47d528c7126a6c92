#!/usr/bin/env python3
"""Start-up of the ``translate`` program: ``--help``, and one 3-s file end to end with a cached model.

Each figure is the wall time (and the CPU time, user + system) of a fresh
``python -m espnet2_ext.bin.translate`` process (interpreter start, imports, model loading, features, search, output),
median of ``--repeats`` after one warm-up run (which also extracts the zip into
the cache, so the timed runs find it there, as a user's second call does).

The model is ``make demo``'s packed model when it exists. Otherwise a model of
the demo's architecture (``conf/demo/train.yaml``, 3.0M parameters) with random
weights and small SentencePiece models is packed here by the recipe's packing
code (``espnet2_ext.main_funcs.model_packing``); a random decoder never ends a
hypothesis, so that run is given ``--maxlen_b`` = 4.3 tokens per second of audio.
The 3-s file is espeak-ng speech padded with silence to 3 s (white noise
without espeak-ng), 22.05 kHz, so it is resampled as a user's file would be.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from timing import interleaved

ROOT = Path(__file__).resolve().parents[1]
DEMO_ZIP = ROOT / "egs/mustc_conformer_ctc/exp/st_demo_finetune/packed/model.zip"
DEMO_CONFIG = ROOT / "conf/demo/train.yaml"
SENTENCE = "the father writes our cheap books today"
WORDS = "the a small large house tree river stone light night day water fire green blue talk speech book".split()
TOKENS_PER_SECOND = 4.3


def write_clip(path: Path, seconds: float = 3.0, rate: int = 22050) -> Path:
    """``seconds`` of espeak-ng speech (silence-padded) or, without espeak-ng, of noise."""
    samples = np.zeros(int(seconds * rate), dtype=np.float32)
    if shutil.which("espeak-ng"):
        spoken = path.with_suffix(".espeak.wav")
        subprocess.run(["espeak-ng", "-w", str(spoken), SENTENCE], check=True)
        speech, speech_rate = sf.read(spoken, dtype="float32")
        spoken.unlink()
        assert speech_rate == rate, f"espeak-ng wrote {speech_rate} Hz"
        samples[: min(len(speech), len(samples))] = speech[: len(samples)]
    else:
        samples[:] = 0.1 * np.random.default_rng(0).standard_normal(len(samples))
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def _pieces(work: Path, name: str, sentences: list[str], vocab_size: int, tags: list[str]) -> None:
    """``<name>.model`` and its ESPnet token list (<blank>, <unk>, pieces, <sos/eos>)."""
    import sentencepiece as spm

    text = work / f"{name}.txt"
    text.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(work / name), vocab_size=vocab_size, model_type="unigram",
        user_defined_symbols=tags, hard_vocab_limit=False, minloglevel=2,
    )
    model = spm.SentencePieceProcessor(model_file=str(work / f"{name}.model"))
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    (work / f"{name}_tokens.txt").write_text("\n".join(["<blank>", "<unk>", *pieces[3:], "<sos/eos>"]) + "\n")


def random_demo_zip(work: Path) -> Path:
    """A packed model of the demo's architecture with random weights."""
    import torch
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet2_ext.main_funcs.model_packing import pack_model
    from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask

    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(WORDS, size=8)) for _ in range(200)]
    _pieces(work, "tgt", [f"<lang:de> {s[::-1]}" for s in sentences], 100, ["<lang:de>"])
    _pieces(work, "src", sentences, 60, [])
    exp = work / "exp"
    args = STCTCCompressTask.get_parser().parse_args([
        "--config", str(DEMO_CONFIG), "--input_size", "80", "--output_dir", str(exp),
        "--token_type", "bpe", "--bpemodel", str(work / "tgt.model"), "--token_list", str(work / "tgt_tokens.txt"),
        "--src_token_type", "bpe", "--src_bpemodel", str(work / "src.model"),
        "--src_token_list", str(work / "src_tokens.txt"),
    ])
    torch.manual_seed(0)
    model = STCTCCompressTask.build_model(args)
    exp.mkdir()
    torch.save(model.state_dict(), exp / "model.pth")
    with (exp / "config.yaml").open("w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    pack_model(exp, exp / "model.pth", work / "packed" / "model.zip")
    return work / "packed" / "model.zip"


def command_run(command: list[str], env: dict[str, str]) -> Callable[[], str]:
    """A run of ``command`` for :func:`timing.interleaved`: it returns what the command printed."""

    def run() -> str:
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return result.stdout.strip()

    return run


def measure(repeats: int = 5, model: Path | None = None, threads: int | None = None) -> dict:
    """``help_s`` and ``file_s`` (medians) with ``OMP_NUM_THREADS=threads``, the model used and
    the clip's translation."""
    translate = [sys.executable, "-m", "espnet2_ext.bin.translate"]
    env = dict(os.environ, **({} if threads is None else {"OMP_NUM_THREADS": str(threads)}))
    if model is None and DEMO_ZIP.is_file():
        model = DEMO_ZIP
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        search = []
        if model is None:
            model = random_demo_zip(work)
            search = ["--maxlen_a", "0", "--maxlen_b", str(round(TOKENS_PER_SECOND * 3))]
        clip = write_clip(work / "clip.wav")
        command = [*translate, "--model", str(model), "--cache_dir", str(work / "cache"), *search, str(clip)]
        timed = interleaved({"help": command_run([*translate, "--help"], env), "file": command_run(command, env)},
                            repeats)
    return dict(
        help_s=timed["help"].wall_s, help_times=timed["help"].wall, help_cpu_s=timed["help"].cpu_s,
        file_s=timed["file"].wall_s, file_times=timed["file"].wall, file_cpu_s=timed["file"].cpu_s,
        model="demo" if model == DEMO_ZIP else ("random demo-size" if search else str(model)),
        output=timed["file"].last, threads=threads, repeats=repeats,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a packed model.zip (default: the demo's, else a random one)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after the warm-up run")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the runs (default: unset)")
    args = parser.parse_args()
    result = measure(args.repeats, args.model, args.threads)
    print(f"translate --help: {result['help_s']:.2f} s; one 3-s file with the {result['model']} model "
          f"(cached): {result['file_s']:.2f} s  -> {result['output']}")


if __name__ == "__main__":
    main()
