"""Tests for egs/mustc_conformer_ctc/local/train_bpe.py (SentencePiece models and token lists)."""

from pathlib import Path

import pytest
import sentencepiece as spm

from tests.helpers import load_recipe_script

train_bpe = load_recipe_script("train_bpe")
WORDS = "the a small large house tree river stone light night day water fire green blue".split()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "train"
    directory.mkdir()
    sentences = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(6)) for i in range(30)]
    (directory / "text.src.norm").write_text("".join(f"utt{i:02d} {s}\n" for i, s in enumerate(sentences)))
    (directory / "text.tgt.tagged").write_text(
        "".join(f"utt{i:02d} <lang:de> {s.upper()}\n" for i, s in enumerate(sentences)))
    return directory


def run(data_dir: Path, out: Path, *extra: str) -> int:
    return train_bpe.main(["--data_dir", str(data_dir), "--out_dir", str(out),
                           "--tgt_vocab_size", "40", "--src_vocab_size", "30", *extra])


def test_models_and_espnet_token_lists(data_dir: Path, tmp_path: Path):
    out = tmp_path / "spm"
    assert run(data_dir, out) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "src.model", "src.vocab", "src_tokens.txt", "tgt.model", "tgt.vocab", "tgt_tokens.txt",
    ]
    tokens = (out / "tgt_tokens.txt").read_text().splitlines()
    assert tokens[:3] == ["<blank>", "<unk>", "<lang:de>"] and tokens[-1] == "<sos/eos>"
    model = spm.SentencePieceProcessor(model_file=str(out / "tgt.model"))
    assert model.encode("<lang:de> THE HOUSE", out_type=str)[0] == "<lang:de>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spm", "train"]  # no temporary dir left


def test_empty_text_is_named_and_keeps_the_previous_models(data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "spm"
    assert run(data_dir, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with (data_dir / "text.src.norm").open("a") as stream:
        stream.write("utt99\n")
    assert run(data_dir, out) == 1
    assert capsys.readouterr().err == f"ERROR: {data_dir / 'text.src.norm'}: utterance utt99 has an empty text\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_out_dir_that_is_a_file_is_refused(data_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "spm"
    out.write_text("a file\n")
    assert run(data_dir, out) == 1
    assert capsys.readouterr().err == f"ERROR: --out_dir {out} exists and is not a directory\n"
