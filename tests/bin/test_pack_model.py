"""Packing: the zip unpacks with ESPnet's ``unpack`` into a model that decodes as the original.

The exp dir is built without training: real SentencePiece models and token lists, a
CMVN stats file, and a randomly initialised tiny model built by the task from
parsed arguments, its ``config.yaml`` dumped as ESPnet's trainer dumps it.
"""

import importlib.metadata
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
import yaml
from espnet2.main_funcs.pack_funcs import pack, unpack
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.bin import pack_model
from espnet2_ext.bin.st_inference import Speech2Translation
from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask

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
SEARCH = dict(beam_size=2, no_repeat_ngram_size=0, maxlen_b=8)


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


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
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


def translate(config: Path, model: Path) -> list:
    translator = Speech2Translation(config, model, **SEARCH)
    torch.manual_seed(1)
    (hyps,) = translator(torch.randn(1, 100, 80), torch.tensor([100]))
    return [(hyp.text, hyp.token_ids, hyp.score) for hyp in hyps]


def run(capsys, *argv: str) -> tuple:
    code = pack_model.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("exp_name", ["exp_abs", "exp_rel"])
def test_unpacked_archive_decodes_like_the_exp_dir(work, tmp_path, capsys, monkeypatch, exp_name):
    monkeypatch.chdir(work)  # relative config paths are read from where training ran
    exp = work / exp_name
    zip_path = tmp_path / "packed/model.zip"
    code, out, err = run(capsys, "--exp-dir", str(exp), "--model-file", str(exp / "valid.loss.best.pth"),
                         "--outpath", str(zip_path))
    assert code == 0, err
    assert f"packed {exp_name}/1epoch.pth and {exp_name}/config.yaml" in out
    assert sorted(zipfile.ZipFile(zip_path).namelist()) == sorted([
        "meta.yaml", f"{exp_name}/config.yaml", f"{exp_name}/1epoch.pth",
        "spm/tgt.model", "spm/src.model", "stats/train/feats_stats.npz",
    ])
    assert [p.name for p in zip_path.parent.iterdir()] == ["model.zip"]

    unpacked = tmp_path / "unpacked"
    paths = unpack(zip_path, unpacked)
    assert paths == {
        "st_train_config": str(unpacked / exp_name / "config.yaml"),
        "st_model_file": str(unpacked / exp_name / "1epoch.pth"),
    }
    config = yaml.safe_load(Path(paths["st_train_config"]).read_text(encoding="utf-8"))
    rewritten = [config["bpemodel"], config["src_bpemodel"], config["normalize_conf"]["stats_file"]]
    members = ["spm/tgt.model", "spm/src.model", "stats/train/feats_stats.npz"]
    assert rewritten == [str(unpacked / member) for member in members]
    assert all(Path(path).is_file() for path in rewritten)
    meta = yaml.safe_load((unpacked / "meta.yaml").read_text(encoding="utf-8"))
    assert meta["mustc_conformer_ctc"] == importlib.metadata.version("mustc-conformer-ctc")
    assert meta["torch"] == torch.__version__ and {"espnet", "python", "timestamp"} <= set(meta)

    original = translate(exp / "config.yaml", exp / "valid.loss.best.pth")
    assert original and original[0][1], "an empty hypothesis would make the comparison weak"
    assert translate(Path(paths["st_train_config"]), Path(paths["st_model_file"])) == original


def test_espnet_unpack_alone_leaves_absolute_config_paths_pointing_at_the_originals(work, tmp_path, monkeypatch):
    """Why pack_model rewrites the packed config: ESPnet matches config values to member names."""
    monkeypatch.chdir(work)
    exp = work / "exp_abs"
    stats = work / "stats/train/feats_stats.npz"
    pack(files={"st_model_file": exp / "1epoch.pth"}, yaml_files={"st_train_config": exp / "config.yaml"},
         option=[stats], outpath=tmp_path / "plain.zip")
    paths = unpack(tmp_path / "plain.zip", tmp_path / "unpacked")
    config = yaml.safe_load(Path(paths["st_train_config"]).read_text(encoding="utf-8"))
    assert config["normalize_conf"]["stats_file"] == str(stats)


def test_missing_referenced_file_is_named_and_leaves_no_zip(work, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(work / "exp_abs", exp, symlinks=True)
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    config["src_bpemodel"] = str(tmp_path / "gone/src.model")
    (exp / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out_dir = tmp_path / "packed"
    code, _, err = run(capsys, "--exp-dir", str(exp), "--model-file", str(exp / "1epoch.pth"),
                       "--outpath", str(out_dir / "model.zip"))
    assert code == 1
    assert err == f"ERROR: {exp / 'config.yaml'}: src_bpemodel is {tmp_path / 'gone/src.model'}, which is not a file\n"
    assert not out_dir.exists() or not list(out_dir.iterdir())


@pytest.mark.parametrize(
    "missing, message",
    [
        ("config.yaml", "training config {exp}/config.yaml not found"),
        ("1epoch.pth", "model file {exp}/1epoch.pth not found"),
    ],
)
def test_missing_config_or_model_is_named(work, tmp_path, capsys, missing, message):
    exp = tmp_path / "exp"
    shutil.copytree(work / "exp_abs", exp, symlinks=True)
    (exp / missing).unlink()
    code, _, err = run(capsys, "--exp-dir", str(exp), "--model-file", str(exp / "1epoch.pth"),
                       "--outpath", str(tmp_path / "model.zip"))
    assert code == 1 and err == f"ERROR: {message.format(exp=exp)}\n"
    assert not (tmp_path / "model.zip").exists()


def test_failure_while_writing_keeps_the_previous_zip_and_no_temporaries(work, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "packed"
    out_dir.mkdir()
    (out_dir / "model.zip").write_bytes(b"previous")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pack_model, "copy_archive", crash)
    with pytest.raises(KeyboardInterrupt):
        pack_model.main(["--exp-dir", str(work / "exp_abs"), "--model-file", str(work / "exp_abs/1epoch.pth"),
                         "--outpath", str(out_dir / "model.zip")])
    assert [p.name for p in out_dir.iterdir()] == ["model.zip"]
    assert (out_dir / "model.zip").read_bytes() == b"previous"


def test_outpath_must_be_a_zip(work, tmp_path, capsys):
    code, _, err = run(capsys, "--exp-dir", str(work / "exp_abs"), "--model-file", str(work / "exp_abs/1epoch.pth"),
                       "--outpath", str(tmp_path / "model.tar"))
    assert code == 1 and err.startswith("ERROR: --outpath must end in .zip")
