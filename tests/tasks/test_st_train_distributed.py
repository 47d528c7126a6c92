"""Several processes through ESPnet's distributed options: our task trains the same
weights on every rank. On CPU (gloo), as the multi-GPU path runs without GPUs."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from espnet2.train.reporter import Reporter
from kaldiio import WriteHelper

from tests.conftest import TINY_CONFIG, WORDS, write_pieces

REPO = Path(__file__).resolve().parents[2]
WORLD_SIZE = 2
EPOCHS = 3
UTTERANCES = 16

# One rank: st_train's main with ESPnet's argv; afterwards the rank's trained weights
# (rank 1 writes no files of its own) are saved to argv[1].
RANK = """
import sys, torch
from espnet2_ext.bin import st_train
from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask

built = []
build = STCTCCompressTask.build_model.__func__
STCTCCompressTask.build_model = classmethod(lambda cls, args: built.append(build(cls, args)) or built[-1])
st_train.main(sys.argv[2:])
torch.save(built[0].state_dict(), sys.argv[1])
with open(sys.argv[1] + ".synced", "w") as f:  # each conv module: are its statistics summed over the ranks?
    f.write(" ".join(str(m.sync_statistics) for m in built[0].modules() if hasattr(m, "sync_statistics")))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_data(work: Path) -> list[str]:
    """Random features with a word-per-second pattern, their texts and pieces: st_train's data options."""
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(WORDS[:8], size=4)) for _ in range(UTTERANCES)]
    write_pieces(work, "tgt", [f"<lang:de> {s[::-1]}" for s in sentences], 40, ["<lang:de>"])
    write_pieces(work, "src", sentences, 30, [])
    ids = [f"utt{i:02d}" for i in range(UTTERANCES)]
    with WriteHelper(f"ark,scp:{work / 'feats.ark'},{work / 'feats.scp'}") as writer:
        for utt_id in ids:
            writer(utt_id, rng.standard_normal((int(rng.integers(60, 90)), 80)).astype(np.float32))
    (work / "text").write_text("".join(f"{u} <lang:de> {s[::-1]}\n" for u, s in zip(ids, sentences)))
    (work / "src_text").write_text("".join(f"{u} {s}\n" for u, s in zip(ids, sentences)))
    triples = [f"{work}/feats.scp,speech,kaldi_ark", f"{work}/text,text,text", f"{work}/src_text,src_text,text"]
    return [
        *[arg for t in triples for arg in ("--train_data_path_and_name_and_type", t)],
        *[arg for t in triples for arg in ("--valid_data_path_and_name_and_type", t)],
        "--train_shape_file", str(work / "feats.scp"), "--valid_shape_file", str(work / "feats.scp"),
        "--token_type", "bpe", "--bpemodel", str(work / "spm/tgt.model"),
        "--token_list", str(work / "spm/tgt_tokens.txt"),
        "--src_token_type", "bpe", "--src_bpemodel", str(work / "spm/src.model"),
        "--src_token_list", str(work / "spm/src_tokens.txt"),
    ]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[Path, list[str]]:
    """Train with WORLD_SIZE CPU processes; the exp dir and each rank's stderr."""
    work = tmp_path_factory.mktemp("distributed")
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump({
        **TINY_CONFIG, "optim": "adam", "optim_conf": {"lr": 0.005}, "scheduler": None,
        "batch_type": "unsorted", "batch_size": 4, "max_epoch": EPOCHS, "seed": 1,
    }))
    argv = [
        "--config", str(config), "--input_size", "80", "--use_preprocessor", "true", *write_data(work),
        "--ngpu", "0", "--num_workers", "0", "--output_dir", str(work / "exp"), "--num_att_plot", "0",
        "--multiprocessing_distributed", "false", "--dist_backend", "gloo", "--dist_world_size", str(WORLD_SIZE),
        "--dist_init_method", f"tcp://127.0.0.1:{free_port()}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", RANK, str(work / f"rank{rank}.pth"), *argv, "--dist_rank", str(rank)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for rank in range(WORLD_SIZE)
    ]
    try:
        logs = [process.communicate(timeout=300)[1] for process in ranks]
    finally:
        for process in ranks:
            process.kill()
    for rank, (process, log) in enumerate(zip(ranks, logs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{log[-4000:]}"
    return work, logs


def test_every_rank_ends_with_the_same_weights(two_ranks):
    work, _ = two_ranks
    states = [torch.load(work / f"rank{rank}.pth", weights_only=True) for rank in range(WORLD_SIZE)]
    saved = torch.load(work / "exp" / f"{EPOCHS}epoch.pth", weights_only=True)
    assert states[0].keys() == states[1].keys() == saved.keys()
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]) and torch.equal(value, saved[name]), name
    initial = torch.load(work / "exp" / "1epoch.pth", weights_only=True)
    assert any(not torch.equal(initial[name], value) for name, value in saved.items())


def test_the_loss_falls(two_ranks):
    work, _ = two_ranks
    reporter = Reporter()
    reporter.load_state_dict(torch.load(work / "exp" / "checkpoint.pth", weights_only=False)["reporter"])
    assert reporter.get_epoch() == EPOCHS
    losses = [reporter.get_value("train", "loss", epoch) for epoch in range(1, EPOCHS + 1)]
    assert losses[-1] < losses[0], losses


def test_the_conv_modules_sum_their_statistics_over_the_ranks_on_cpu_too(two_ranks):
    work, logs = two_ranks
    for rank in range(WORLD_SIZE):
        assert (work / f"rank{rank}.pth.synced").read_text() == "True True"  # one per block
    assert "SyncBatchNorm skipped" not in logs[0]  # the model has no BatchNorm of ESPnet's
