"""Packing: the zip unpacks with ESPnet's ``unpack`` into a model that decodes as the original.

The exp dirs come from the ``tiny_exps`` fixture (``tests/conftest.py``): untrained.
"""

import importlib.metadata
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from espnet2.main_funcs.pack_funcs import pack, unpack

from espnet2_ext.bin import pack_model
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs import model_packing

SEARCH = dict(beam_size=2, no_repeat_ngram_size=0, maxlen_b=8)


def translate(config: Path, model: Path) -> list:
    translator = Speech2Translation(config, model, **SEARCH)
    torch.manual_seed(1)
    (hyps,) = translator.translate_features(torch.randn(1, 100, 80), torch.tensor([100]))
    return [(hyp.text, hyp.token_ids, hyp.score) for hyp in hyps]


def run(capsys, *argv: str) -> tuple:
    code = pack_model.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("exp_name", ["exp_abs", "exp_rel"])
def test_unpacked_archive_decodes_like_the_exp_dir(tiny_exps, tmp_path, capsys, monkeypatch, exp_name):
    monkeypatch.chdir(tiny_exps)  # relative config paths are read from where training ran
    exp = tiny_exps / exp_name
    zip_path = tmp_path / "packed/model.zip"
    code, out, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "valid.loss.best.pth"),
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


def test_espnet_unpack_alone_leaves_absolute_config_paths_pointing_at_the_originals(tiny_exps, tmp_path, monkeypatch):
    """Why pack_model rewrites the packed config: ESPnet matches config values to member names."""
    monkeypatch.chdir(tiny_exps)
    exp = tiny_exps / "exp_abs"
    stats = tiny_exps / "stats/train/feats_stats.npz"
    pack(files={"st_model_file": exp / "1epoch.pth"}, yaml_files={"st_train_config": exp / "config.yaml"},
         option=[stats], outpath=tmp_path / "plain.zip")
    paths = unpack(tmp_path / "plain.zip", tmp_path / "unpacked")
    config = yaml.safe_load(Path(paths["st_train_config"]).read_text(encoding="utf-8"))
    assert config["normalize_conf"]["stats_file"] == str(stats)


def test_missing_referenced_file_is_named_and_leaves_no_zip(tiny_exps, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(tiny_exps / "exp_abs", exp, symlinks=True)
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    config["src_bpemodel"] = str(tmp_path / "gone/src.model")
    (exp / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out_dir = tmp_path / "packed"
    code, _, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"),
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
def test_missing_config_or_model_is_named(tiny_exps, tmp_path, capsys, missing, message):
    exp = tmp_path / "exp"
    shutil.copytree(tiny_exps / "exp_abs", exp, symlinks=True)
    (exp / missing).unlink()
    code, _, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"),
                       "--outpath", str(tmp_path / "model.zip"))
    assert code == 1 and err == f"ERROR: {message.format(exp=exp)}\n"
    assert not (tmp_path / "model.zip").exists()


def test_broken_config_is_one_line_placing_the_problem(tiny_exps, tmp_path, capsys):
    """A config.yaml cut mid-way (a full disk during training): where it breaks, not a traceback."""
    exp = tmp_path / "exp"
    shutil.copytree(tiny_exps / "exp_abs", exp, symlinks=True)
    config = exp / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.unlink()  # it may be a symlink into the shared fixture
    config.write_text(text + "optim_conf: {lr: [0.002\n", encoding="utf-8")
    code, _, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"),
                       "--outpath", str(tmp_path / "model.zip"))
    line = text.count("\n") + 2
    assert code == 1 and err.startswith(f"ERROR: {config}:{line}:1: not valid YAML: "), err
    assert err.rstrip().endswith("(not a config.yaml written by ESPnet)") and err.count("\n") == 1
    assert not (tmp_path / "model.zip").exists()


def test_failure_while_writing_keeps_the_previous_zip_and_no_temporaries(tiny_exps, tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "packed"
    out_dir.mkdir()
    (out_dir / "model.zip").write_bytes(b"previous")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_packing, "copy_archive", crash)
    with pytest.raises(KeyboardInterrupt):
        exp = tiny_exps / "exp_abs"
        pack_model.main(["--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"),
                         "--outpath", str(out_dir / "model.zip")])
    assert [p.name for p in out_dir.iterdir()] == ["model.zip"]
    assert (out_dir / "model.zip").read_bytes() == b"previous"


def test_outpath_must_be_a_zip(tiny_exps, tmp_path, capsys):
    exp = tiny_exps / "exp_abs"
    code, _, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"),
                       "--outpath", str(tmp_path / "model.tar"))
    assert code == 1 and err.startswith("ERROR: the archive must be a .zip file")


def test_outpath_that_is_a_directory_is_refused_before_packing(tiny_exps, tmp_path, capsys):
    exp = tiny_exps / "exp_abs"
    target = tmp_path / "model.zip"
    target.mkdir()
    code, _, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"), "--outpath", str(target))
    assert code == 1 and err == f"ERROR: --outpath {target} is a directory; expected a file to write\n"
    assert list(target.iterdir()) == []
