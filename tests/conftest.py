"""Fixtures shared by several test modules: tiny exp dirs, untrained and trained."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.bin import pack_model, st_train
from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask
from tests.helpers import DECODE_SEARCH, cut_segment_clips


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: threads only add overhead (much of it when the cores are busy).
    A module asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- untrained

TINY_CONFIG = dict(
    encoder="ctc_compress_conformer",
    encoder_conf=dict(
        output_size=32, attention_heads=2, linear_units=64, num_blocks=2, cnn_module_kernel=3,
        subsampling_channels=32, ctc_block=1, compression="avg",
    ),
    decoder="transformer",
    decoder_conf=dict(attention_heads=2, linear_units=64, num_blocks=1),
    model_conf=dict(ctc_weight=0.5, ignore_prefix_size=1),
)
WORDS = "the a small large house tree river stone light night day water fire green blue talk speech".split()


def write_pieces(work: Path, name: str, sentences: list, vocab_size: int, tags: list) -> None:
    """``spm/<name>.model`` and its ESPnet token list: <blank>, <unk>, pieces, <sos/eos>."""
    (work / "spm").mkdir(exist_ok=True)
    text = work / f"{name}.txt"
    text.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")
    prefix = work / "spm" / name
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=vocab_size, model_type="unigram",
        user_defined_symbols=tags, hard_vocab_limit=False, minloglevel=2,
    )
    model = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    tokens = ["<blank>", "<unk>", *pieces[3:], "<sos/eos>"]
    (work / "spm" / f"{name}_tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")


def write_stats(path: Path) -> None:
    """GlobalMVN's npz: frame count, per-bin sum and sum of squares (mean 1, variance 4)."""
    path.parent.mkdir(parents=True)
    count = 1000
    np.savez(path, count=np.array(count), sum=np.full(80, count * 1.0), sum_square=np.full(80, count * 5.0))


def build_exp(exp: Path, work: Path, paths: dict) -> None:
    """``config.yaml`` and ``1epoch.pth`` as ESPnet's trainer writes them, plus its best-model symlink."""
    config = work / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    args = STCTCCompressTask.get_parser().parse_args([
        "--config", str(config), "--input_size", "80", "--output_dir", str(exp),
        "--token_type", "bpe", "--bpemodel", paths["bpemodel"],
        "--src_token_type", "bpe", "--src_bpemodel", paths["src_bpemodel"],
        "--token_list", paths["token_list"], "--src_token_list", paths["src_token_list"],
        "--normalize", "global_mvn", "--normalize_conf", f"stats_file={paths['stats_file']}",
    ])
    torch.manual_seed(0)
    model = STCTCCompressTask.build_model(args)
    exp.mkdir()
    torch.save(model.state_dict(), exp / "1epoch.pth")
    (exp / "valid.loss.best.pth").symlink_to("1epoch.pth")
    with (exp / "config.yaml").open("w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)


@pytest.fixture(scope="session")
def tiny_exps(tmp_path_factory) -> Path:
    """Pieces and stats, and two exp dirs: config paths absolute (exp_abs), relative to ``work`` (exp_rel)."""
    work = tmp_path_factory.mktemp("pack")
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(WORDS, size=6)) for _ in range(40)]
    write_pieces(work, "tgt", [f"<lang:de> {s[::-1]}" for s in sentences], 60, ["<lang:de>"])
    write_pieces(work, "src", sentences, 40, [])
    write_stats(work / "stats/train/feats_stats.npz")
    relative = dict(
        bpemodel="spm/tgt.model", src_bpemodel="spm/src.model", token_list="spm/tgt_tokens.txt",
        src_token_list="spm/src_tokens.txt", stats_file="stats/train/feats_stats.npz",
    )
    build_exp(work / "exp_abs", work, {k: str(work / v) for k, v in relative.items()})
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        build_exp(work / "exp_rel", work, relative)
    return work


# --------------------------------------------------------------------------- trained
# The data path is the recipe's own: the embedded corpus generator, data_prep,
# make_fbank, SentencePiece, ESPnet's collect_stats; only the sizes are tiny.

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "mustc_conformer_ctc"
EPOCHS = 8

TRAIN_CONFIG = dict(
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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Corpus -> features -> pieces -> stats -> EPOCHS epochs of training."""
    work = tmp_path_factory.mktemp("tiny_recipe")
    corpus, data, dump = work / "corpus", work / "data", work / "dump"
    run_script(
        "local/make_mini_corpus.py", "--out", str(corpus), "--n_train", "24", "--n_dev", "4",
        "--n_test", "12", "--talk_size", "4", "--seed", "3",
    )
    run_script(
        "local/data_prep.py", "--mustc_root", str(corpus), "--tgt_lang", "de", "--out", str(data),
        "--char_ratio_filter", "false",
    )
    for split in ("train", "dev", "tst-COMMON"):
        run_script("-m", "espnet2_ext.bin.make_fbank", "--data_dir", str(data / split), "--out_dir", str(dump / split))
    run_script(
        "local/train_bpe.py", "--data_dir", str(dump / "train"), "--out_dir", str(work / "spm"),
        "--tgt_vocab_size", "120", "--src_vocab_size", "80",
    )
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(TRAIN_CONFIG))

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


@pytest.fixture(scope="session")
def packed_trained(trained) -> Path:
    """The trained exp packed by recipe stage 8's program."""
    work, exp, _ = trained
    zip_path = work / "packed" / "model.zip"
    code = pack_model.main(["--exp_dir", str(exp), "--model_file", str(exp / "valid.loss.best.pth"),
                            "--outpath", str(zip_path)])
    assert code == 0
    return zip_path


# --------------------------------------------------------------------------- translating


@pytest.fixture(scope="session")
def clips(trained, tmp_path_factory) -> dict:
    """The trained model's held-out test set, cut into one wav per utterance."""
    work, _, _ = trained
    return cut_segment_clips(work / "data/tst-COMMON", tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """Where the tests' model zips are extracted."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def translator(packed_trained, cache):
    """The packed tiny model with the recipe's search, for tests that do not change it."""
    from espnet2_ext.inference.speech2translation import Speech2Translation

    return Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, **DECODE_SEARCH)
