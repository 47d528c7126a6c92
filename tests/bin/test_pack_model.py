"""Packing: the zip unpacks with ESPnet's ``unpack`` into a model that decodes as the original.

The exp dirs come from the ``tiny_exps`` fixture (``tests/conftest.py``): untrained.
"""

import importlib.metadata
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from espnet2.main_funcs.pack_funcs import pack, unpack

from espnet2_ext.bin import pack_model
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs import model_packing
from espnet2_ext.main_funcs.model_archive import GLOBAL_CMVN_KEY, open_model
from espnet2_ext.simultaneous.incremental_features import load_global_cmvn
from espnet2_ext.simultaneous.options import META_KEY as SIMULTANEOUS_KEY
from espnet2_ext.simultaneous.options import packed_settings

SEARCH = dict(beam_size=2, no_repeat_ngram_size=0, maxlen_b=8)
RECIPE = Path(__file__).resolve().parents[2] / "egs" / "mustc_conformer_ctc"


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


# --------------------------------------------------------------------------- global CMVN statistics


def pack_with_global_cmvn(capsys, exp: Path, zip_path: Path, stats: Path) -> tuple:
    return run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"), "--outpath", str(zip_path),
               "--global_cmvn", str(stats))


def test_global_cmvn_is_packed_and_opened_as_the_original_statistics(tiny_exps, tmp_path, capsys):
    """FBK's gcmvn.npz, beside a config with its own (other) stats_file: a member of its own."""
    gcmvn = tmp_path / "fbk/gcmvn.npz"
    gcmvn.parent.mkdir()
    mean, std = np.linspace(-3, 3, 80, dtype=np.float32), np.linspace(0.5, 2, 80, dtype=np.float32)
    np.savez(gcmvn, mean=mean, std=std)
    zip_path = tmp_path / "packed/model.zip"
    code, out, err = pack_with_global_cmvn(capsys, tiny_exps / "exp_abs", zip_path, gcmvn)
    assert code == 0, err
    with zipfile.ZipFile(zip_path) as archive:
        meta = yaml.safe_load(archive.read("meta.yaml"))
        member = meta[GLOBAL_CMVN_KEY]
        assert member.endswith("fbk/gcmvn.npz") and archive.read(member) == gcmvn.read_bytes()
        assert sum(name.endswith(".npz") for name in archive.namelist()) == 2  # and the config's stats_file
    assert f"(global CMVN statistics: {member})" in out

    packed = open_model(zip_path, tmp_path / "cache")
    assert packed.global_cmvn == packed.extraction / member
    loaded = load_global_cmvn(packed.global_cmvn)
    np.testing.assert_array_equal(loaded.mean, mean)
    np.testing.assert_array_equal(loaded.std, std)


def test_global_cmvn_that_is_the_config_s_stats_file_is_packed_once(tiny_exps, tmp_path, capsys, monkeypatch):
    """normalize: global_mvn with stage 4's statistics, given again (as run.sh does, here by a
    relative path): the stats_file member is reused, not copied."""
    monkeypatch.chdir(tiny_exps)
    zip_path = tmp_path / "model.zip"
    code, _, err = pack_with_global_cmvn(capsys, Path("exp_rel"), zip_path, Path("stats/train/feats_stats.npz"))
    assert code == 0, err
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == sorted([
            "meta.yaml", "exp_rel/config.yaml", "exp_rel/1epoch.pth",
            "spm/tgt.model", "spm/src.model", "stats/train/feats_stats.npz",
        ])
        assert yaml.safe_load(archive.read("meta.yaml"))[GLOBAL_CMVN_KEY] == "stats/train/feats_stats.npz"
    packed = open_model(zip_path, tmp_path / "cache")
    assert str(packed.global_cmvn) == packed.config["normalize_conf"]["stats_file"]
    expected = load_global_cmvn(tiny_exps / "stats/train/feats_stats.npz")  # ESPnet's: count, sum, sum_square
    loaded = load_global_cmvn(packed.global_cmvn)
    np.testing.assert_array_equal(loaded.mean, expected.mean)
    np.testing.assert_array_equal(loaded.std, expected.std)
    assert np.allclose(loaded.mean, 1.0) and np.allclose(loaded.std, 2.0)  # write_stats: mean 1, variance 4


def test_without_global_cmvn_meta_names_none_and_the_model_has_none(tiny_exps, tmp_path, capsys):
    exp = tiny_exps / "exp_abs"
    zip_path = tmp_path / "model.zip"
    code, out, err = run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"),
                         "--outpath", str(zip_path))
    assert code == 0, err
    assert GLOBAL_CMVN_KEY not in yaml.safe_load(zipfile.ZipFile(zip_path).read("meta.yaml"))
    assert "global CMVN" not in out
    assert open_model(zip_path, tmp_path / "cache").global_cmvn is None


def _bad_statistics(path: Path, what: str) -> str:
    """Write (or not) bad statistics at ``path``; the error's text after ``global CMVN statistics {path}``."""
    if what == "missing":
        return " not found"
    if what == "directory":
        path.mkdir()
        return " is a directory; expected an .npz file (ESPnet's feats_stats.npz or FBK's gcmvn.npz)"
    if what == "text":
        path.write_text("mean 0\nstd 1\n")
        return ": not a readable .npz archive of numeric arrays"
    if what == "other keys":
        np.savez(path, mu=np.zeros(80), sigma=np.ones(80))
        return ": expected the keys count, sum, sum_square (ESPnet's feats_stats.npz) or mean, std"
    if what == "zero std":
        np.savez(path, mean=np.zeros(80), std=np.r_[np.ones(79), 0.0])
        return ": std must be > 0 everywhere"
    if what == "wrong dimension":
        np.savez(path, mean=np.zeros(40), std=np.ones(40))
        return ": mean has shape (40,), expected (80,); std has shape (40,), expected (80,)"
    raise ValueError(what)


@pytest.mark.parametrize("what", ["missing", "directory", "text", "other keys", "zero std", "wrong dimension"])
def test_bad_global_cmvn_is_one_error_line_and_leaves_no_zip(tiny_exps, tmp_path, capsys, what):
    stats = tmp_path / "gcmvn.npz"
    expected = _bad_statistics(stats, what)
    out_dir = tmp_path / "packed"
    code, out, err = pack_with_global_cmvn(capsys, tiny_exps / "exp_abs", out_dir / "model.zip", stats)
    assert code == 1 and out == ""
    assert err.startswith(f"ERROR: global CMVN statistics {stats}{expected}") and err.count("\n") == 1, err
    assert not out_dir.exists() or not list(out_dir.iterdir())


@pytest.mark.parametrize("with_stats", [True, False], ids=["stage-4-stats", "no-stats"])
def test_run_sh_stage_8_packs_stage_4_statistics_when_there(tiny_exps, tmp_path, with_stats):
    """run.sh's stage 8 alone, on an exp dir laid out as stages 4-7 leave it (no fine-tuning)."""
    exp = tmp_path / "exp"
    shutil.copytree(tiny_exps / "exp_abs", exp / "t", symlinks=True)
    (exp / "t/valid.loss.ave_5around.pth").symlink_to("1epoch.pth")  # stage 7's average
    stats = exp / "st_stats/train/feats_stats.npz"
    if with_stats:
        stats.parent.mkdir(parents=True)
        np.savez(stats, count=np.array(50), sum=np.full(80, 100.0), sum_square=np.full(80, 1000.0))
    conf = tmp_path / "conf"  # stage 9's settings, for the tiny model's one decoder layer
    conf.mkdir()
    simulate = yaml.safe_load((RECIPE / "conf/simulate.yaml").read_text())
    simulate.update(attention_layer=0, cmvn="global" if with_stats else "prefix")
    (conf / "simulate.yaml").write_text(yaml.safe_dump(simulate))
    stream = yaml.safe_load((RECIPE / "conf/stream.yaml").read_text())  # stage 10's, packed when there
    stream.update(attention_layer=0, cmvn="global" if with_stats else "prefix")
    if with_stats:
        (conf / "stream.yaml").write_text(yaml.safe_dump(stream))
    result = subprocess.run(
        ["./run.sh", "--stage", "8", "--stop-stage", "8", "--exp", str(exp), "--tag", "t", "--finetune", "false",
         "--conf-dir", str(conf)],
        cwd=RECIPE, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    packed = open_model(exp / "t/packed/model.zip", tmp_path / "cache")
    del simulate["settings"]
    assert packed.meta[SIMULTANEOUS_KEY] == simulate  # the shared keys: the zip's simultaneous defaults
    del stream["settings"]
    assert packed.meta.get("streaming") == (stream if with_stats else None)  # and the stream defaults
    if not with_stats:
        assert packed.global_cmvn is None and "--global_cmvn" not in (exp / "t/run.cmd").read_text()
        return
    assert packed.meta[GLOBAL_CMVN_KEY].endswith("exp/st_stats/train/feats_stats.npz")
    loaded = load_global_cmvn(packed.global_cmvn)
    np.testing.assert_allclose(loaded.mean, 2.0)  # sum / count
    np.testing.assert_allclose(loaded.std, 4.0)  # sqrt(sum_square / count - mean^2)


# --------------------------------------------------------------------------- simultaneous settings


def pack_with_simulate_conf(capsys, tmp_path: Path, exp: Path, conf: dict, *extra: str) -> tuple:
    path = tmp_path / "simulate.yaml"
    path.write_text(yaml.safe_dump(conf))
    zip_path = tmp_path / "packed/model.zip"
    return (*run(capsys, "--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"), "--outpath", str(zip_path),
                 "--simulate_conf", str(path), *extra), zip_path, path)


def test_simulate_conf_s_shared_keys_are_the_zip_s_simultaneous_settings(tiny_exps, tmp_path, capsys):
    conf = {"policy": "alignatt", "frame_num": 3, "segment_ms": 400, "attention_layer": 0, "cmvn": "global",
            "settings": [{"frame_num": 2}, {"frame_num": 6}]}
    code, _, err, zip_path, _ = pack_with_simulate_conf(
        capsys, tmp_path, tiny_exps / "exp_abs", conf, "--global_cmvn", str(tiny_exps / "stats/train/feats_stats.npz")
    )
    assert code == 0, err
    meta = open_model(zip_path, tmp_path / "cache").meta
    assert packed_settings(meta) == {"policy": "alignatt", "frame_num": 3, "segment_ms": 400, "attention_layer": 0,
                                     "cmvn": "global"}
    plain = tmp_path / "plain.zip"  # packed without: no settings, FBK's apply
    code, _, err = run(capsys, "--exp_dir", str(tiny_exps / "exp_abs"), "--model_file",
                       str(tiny_exps / "exp_abs/1epoch.pth"), "--outpath", str(plain))
    assert code == 0, err
    assert SIMULTANEOUS_KEY not in open_model(plain, tmp_path / "cache").meta
    assert packed_settings(open_model(plain, tmp_path / "cache").meta) == {}


@pytest.mark.parametrize("conf, message", [
    ({"attention_layer": 1}, "attention_layer 1: the model's decoder has 1 layers (0 to 0)"),
    ({"policy": "alignatt"}, "attention_layer 3: the model's decoder has 1 layers"),  # FBK's default layer
    ({"attention_layer": 0, "cmvn": "global"}, "cmvn: global needs the global CMVN statistics packed too"),
    ({"attention_layer": 0, "beam": 5}, "unknown option(s) beam"),
    ({"attention_layer": 0, "frame_num": -2}, "frame_num must be an integer >= 0, got -2"),
])
def test_simulate_conf_that_does_not_fit_the_model_is_one_error_line_and_no_zip(
    tiny_exps, tmp_path, capsys, conf, message
):
    code, out, err, zip_path, path = pack_with_simulate_conf(capsys, tmp_path, tiny_exps / "exp_abs",
                                                             {"cmvn": "prefix", **conf})
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"ERROR: {path}: ") and message in err
    assert not zip_path.exists()
