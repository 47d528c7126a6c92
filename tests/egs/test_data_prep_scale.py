"""Stage 1 at scale: memory flat and time linear in the corpus size.

The corpus is generated like MuST-C en-de (talks of ~100 segments of ~6.5 s, one
one-line flow mapping per segment) with sparse wavs: a header, then ``truncate``,
so a talk of 10 minutes costs no disk and no time to write.
"""

import re
import struct
import time
import tracemalloc
from pathlib import Path

from tests.helpers import load_recipe_script

data_prep = load_recipe_script("data_prep")

SAMPLE_RATE = 16000
SEGMENT_SECONDS = 6.5


def write_sparse_wav(path: Path, seconds: float) -> None:
    """A 16 kHz mono 16-bit PCM wav of ``seconds`` of silence that takes no disk space."""
    data_bytes = round(seconds * SAMPLE_RATE) * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
    header += b"data" + struct.pack("<I", data_bytes)
    with path.open("wb") as stream:
        stream.write(header)
        stream.truncate(len(header) + data_bytes)


def write_sparse_split(root: Path, split: str, talks: int, per_talk: int, tgt: str = "de") -> None:
    """One split in MuST-C layout: ``talks`` talks of ``per_talk`` segments, yaml in talk order."""
    directory = root / f"en-{tgt}" / "data" / split
    (directory / "wav").mkdir(parents=True)
    (directory / "txt").mkdir()
    txt = directory / "txt"
    with (txt / f"{split}.yaml").open("w") as yaml_file, (txt / f"{split}.en").open("w") as en, \
            (txt / f"{split}.{tgt}").open("w") as de:
        for talk in range(1, talks + 1):
            wav = f"ted_{talk * 7919 % 10007}.wav"  # distinct for talks < 10007; yaml order is not id order
            write_sparse_wav(directory / "wav" / wav, per_talk * SEGMENT_SECONDS + 1.0)
            for number in range(per_talk):
                offset = number * SEGMENT_SECONDS
                yaml_file.write(
                    f"- {{duration: {SEGMENT_SECONDS - 0.3:.6f}, offset: {offset:.6f}, rW: 14, uW: 0, "
                    f"speaker_id: spk.{talk}, wav: {wav}}}\n"
                )
                en.write(f"In talk {talk}, sentence {number} says something about our world and its people.\n")
                de.write(f"Im Vortrag {talk} sagt Satz {number} etwas über unsere Welt und ihre Menschen.\n")


def write_sparse_corpus(root: Path, train_talks: int, per_talk: int = 100) -> Path:
    """A MuST-C en-de tree: ``train_talks`` train talks, small dev and tst-COMMON."""
    write_sparse_split(root, "train", train_talks, per_talk)
    write_sparse_split(root, "dev", 2, 20)
    write_sparse_split(root, "tst-COMMON", 2, 20)
    return root


def run_stage(corpus: Path, out: Path) -> tuple[int, float]:
    """(peak bytes allocated by Python, CPU seconds) of stage 1 on ``corpus``: two runs, the
    CPU time one untraced since tracemalloc slows allocation-heavy code unevenly."""
    argv = ["--mustc_root", str(corpus), "--tgt_lang", "de"]
    started = time.process_time()
    assert data_prep.main([*argv, "--out", str(out / "timed")]) == 0
    seconds = time.process_time() - started
    tracemalloc.start()
    try:
        assert data_prep.main([*argv, "--out", str(out / "traced")]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, seconds


def test_memory_flat_and_time_linear_in_the_corpus_size(tmp_path: Path):
    """2,000 then 8,000 train segments (MuST-C en-de has 250k): 4x the segments, same peak memory.

    Loading each yaml whole took 6 KB per segment (1.6 GB for MuST-C); streaming keeps
    about 1 KB per talk. CPU time must grow about 4x; a quadratic step would give 16x.
    """
    small = run_stage(write_sparse_corpus(tmp_path / "small", 20), tmp_path / "out_small")
    large = run_stage(write_sparse_corpus(tmp_path / "large", 80), tmp_path / "out_large")
    assert large[0] < 1.5 * small[0], f"peak {small[0]} B -> {large[0]} B"
    assert large[1] < 8 * small[1], f"CPU {small[1]:.2f} s -> {large[1]:.2f} s"
    segments = (tmp_path / "out_large" / "timed" / "train" / "segments").read_text().splitlines()
    assert len(segments) == 8000 and segments == sorted(segments)


def test_both_passes_state_their_progress(tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(data_prep, "PROGRESS_SECONDS", 0.0)
    caplog.set_level("INFO")
    corpus = write_sparse_corpus(tmp_path / "corpus", 3, per_talk=10)
    assert data_prep.main(["--mustc_root", str(corpus), "--tgt_lang", "de", "--out", str(tmp_path / "data")]) == 0
    assert re.search(r"train: 30 segments checked \(\d+%\)", caplog.text)
    assert "train: 3 talks written (100%)" in caplog.text
