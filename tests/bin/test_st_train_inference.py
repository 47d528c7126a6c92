"""Train a tiny model on espeak-ng speech with ESPnet's trainer, then decode it.

The data path is the recipe's own: the embedded corpus generator, data_prep,
make_fbank, SentencePiece, ESPnet's collect_stats; only the sizes are tiny.
"""

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml
from espnet2.train.reporter import Reporter

from espnet2_ext.bin import st_inference, st_train
from espnet2_ext.bin.st_inference import Speech2Translation

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "mustc_conformer_ctc"
EPOCHS = 8

TINY_CONFIG = dict(
    encoder="ctc_compress_conformer",
    encoder_conf=dict(
        output_size=64, attention_heads=4, linear_units=128, num_blocks=4, cnn_module_kernel=7,
        subsampling_channels=64, ctc_block=2, compression="avg", dropout_rate=0.0,
        positional_dropout_rate=0.0, attention_dropout_rate=0.0,
    ),
    decoder="transformer",
    decoder_conf=dict(attention_heads=4, linear_units=128, num_blocks=2, dropout_rate=0.0),
    model_conf=dict(ctc_weight=0.5, lsm_weight=0.1, ignore_prefix_size=1),
    optim="adam",
    optim_conf=dict(lr=0.003, betas=[0.9, 0.98]),
    scheduler="warmuplr",
    scheduler_conf=dict(warmup_steps=5),
    grad_clip=10,
    batch_type="numel",
    batch_bins=200000,
    seed=1,
)


def run_script(*argv: str) -> None:
    result = subprocess.run([sys.executable, *argv], cwd=RECIPE, capture_output=True, text=True)
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"


def data_triples(dump: Path):
    return [
        f"{dump}/feats.scp,speech,kaldi_ark",
        f"{dump}/text.tgt.tagged,text,text",
        f"{dump}/text.src.norm,src_text,text",
    ]


def common_args(work: Path):
    return [
        "--input_size", "80", "--ngpu", "0", "--num_workers", "0", "--use_preprocessor", "true",
        "--token_type", "bpe", "--bpemodel", str(work / "spm/tgt.model"),
        "--src_token_type", "bpe", "--src_bpemodel", str(work / "spm/src.model"),
        "--token_list", str(work / "spm/tgt_tokens.txt"), "--src_token_list", str(work / "spm/src_tokens.txt"),
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Corpus -> features -> pieces -> stats -> EPOCHS epochs of training."""
    work = tmp_path_factory.mktemp("tiny_recipe")
    corpus, data, dump = work / "corpus", work / "data", work / "dump"
    run_script(
        "local/make_mini_corpus.py", "--out", str(corpus), "--n-train", "24", "--n-dev", "4",
        "--n-test", "12", "--talk-size", "4", "--seed", "3",
    )
    run_script(
        "local/data_prep.py", "--mustc-root", str(corpus), "--tgt-lang", "de", "--out", str(data),
        "--char-ratio-filter", "false",
    )
    for split in ("train", "dev", "tst-COMMON"):
        run_script("-m", "espnet2_ext.bin.make_fbank", "--data-dir", str(data / split), "--out-dir", str(dump / split))
    run_script(
        "local/train_bpe.py", "--data-dir", str(dump / "train"), "--out-dir", str(work / "spm"),
        "--tgt-vocab-size", "120", "--src-vocab-size", "80",
    )
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))

    stats = work / "stats"
    data_args = []
    for triple in data_triples(dump / "train"):
        data_args += ["--train_data_path_and_name_and_type", triple]
    for triple in data_triples(dump / "dev"):
        data_args += ["--valid_data_path_and_name_and_type", triple]
    st_train.main([
        "--collect_stats", "true", "--config", str(config), *common_args(work), *data_args,
        "--train_shape_file", str(dump / "train/feats.scp"), "--valid_shape_file", str(dump / "dev/feats.scp"),
        "--output_dir", str(stats), "--batch_type", "unsorted", "--batch_size", "4",
    ])
    exp = work / "exp"
    shapes = []
    for split, option in (("train", "--train_shape_file"), ("valid", "--valid_shape_file")):
        for name in ("speech_shape", "text_shape", "src_text_shape"):
            shapes += [option, str(stats / split / name)]
    st_train.main([
        "--config", str(config), *common_args(work), *data_args, *shapes,
        "--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats / 'train/feats_stats.npz'}",
        "--output_dir", str(exp), "--max_epoch", str(EPOCHS), "--keep_nbest_models", "1", "--num_att_plot", "0",
        "--best_model_criterion", "valid,loss,min",
    ])
    return work, exp, dump


def test_collect_stats_wrote_global_cmvn_and_shapes(trained):
    work, _, dump = trained
    stats = np.load(work / "stats/train/feats_stats.npz")
    assert stats["sum"].shape == (80,) and stats["count"] == sum(
        m.shape[0] for _, m in kaldiio.load_scp_sequential(str(dump / "train/feats.scp"))
    )


def test_training_lowers_the_loss(trained):
    _, exp, _ = trained
    reporter = Reporter()
    reporter.load_state_dict(torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"])
    assert reporter.get_epoch() == EPOCHS
    first = reporter.get_value("train", "loss", 1)
    last = reporter.get_value("train", "loss", EPOCHS)
    assert last < 0.8 * first, (first, last)
    assert reporter.get_value("valid", "loss", EPOCHS) < reporter.get_value("valid", "loss", 1)
    logged = set(reporter.get_keys2("train"))
    assert {"loss_ce", "loss_ctc", "acc", "compression_ratio", "ctc_infeasible"} <= logged


def decode(work: Path, exp: Path, dump: Path, out: Path, batch_size: int) -> dict:
    st_inference.main([
        "--output_dir", str(out), "--batch_size", str(batch_size),
        "--data_path_and_name_and_type", f"{dump}/feats.scp,speech,kaldi_ark",
        "--st_train_config", str(exp / "config.yaml"), "--st_model_file", str(exp / "valid.loss.best.pth"),
        "--beam_size", "3", "--no_repeat_ngram_size", "3", "--maxlen_b", "40",
    ])
    lines = (out / "1best_recog/text").read_text(encoding="utf-8").splitlines()
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in lines)


def test_decoding_at_batch_1_and_10_gives_identical_hypotheses(trained):
    work, exp, dump = trained
    single = decode(work, exp, dump / "tst-COMMON", work / "decode_b1", batch_size=1)
    batched = decode(work, exp, dump / "tst-COMMON", work / "decode_b10", batch_size=10)
    assert len(single) == 12
    assert single == batched
    assert any(text.strip() for text in single.values())
    assert not any("<lang:" in text for text in single.values())


def test_reloaded_model_decodes_the_same(trained):
    work, exp, dump = trained
    reference = decode(work, exp, dump / "tst-COMMON", work / "decode_ref", batch_size=4)
    translator = Speech2Translation(
        exp / "config.yaml", exp / "valid.loss.best.pth", beam_size=3, no_repeat_ngram_size=3, maxlen_b=40
    )
    for key, feats in kaldiio.load_scp_sequential(str(dump / "tst-COMMON/feats.scp")):
        speech = torch.tensor(feats).unsqueeze(0)
        (best, *_), = translator(speech, torch.tensor([len(feats)]))
        assert best.text == reference[key], key
        assert best.token_ids and best.token_ids[0] != translator.primer[1]
