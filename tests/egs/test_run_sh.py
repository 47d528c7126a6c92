"""The recipe, every stage, on a tiny generated corpus with a tiny model."""

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.helpers import cut_segment_clips, read_hypotheses

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "mustc_conformer_ctc"


def tiny_conf_dir(root: Path) -> Path:
    """conf/demo with a model and schedule small enough for a test."""
    conf = root / "conf_tiny"
    conf.mkdir()
    for path in (RECIPE / "conf" / "demo").glob("*.yaml"):
        (conf / path.name).write_text(path.read_text())
    train = yaml.safe_load((conf / "train.yaml").read_text())
    train["encoder_conf"].update(output_size=32, linear_units=64, num_blocks=2, ctc_block=1, subsampling_channels=32)
    train["decoder_conf"].update(linear_units=64, num_blocks=1)
    train.update(max_epoch=2, num_iters_per_epoch=3, batch_bins=400000, keep_nbest_models=2)
    (conf / "train.yaml").write_text(yaml.safe_dump(train))
    finetune = yaml.safe_load((conf / "finetune.yaml").read_text())
    finetune.update(max_epoch=1)
    (conf / "finetune.yaml").write_text(yaml.safe_dump(finetune))
    decode = yaml.safe_load((conf / "decode.yaml").read_text())
    decode.update(beam_size=2, maxlen_b=15)
    (conf / "decode.yaml").write_text(yaml.safe_dump(decode))
    (conf / "bpe.yaml").write_text("tgt_vocab_size: 120\nsrc_vocab_size: 60\n")
    simulate = yaml.safe_load((conf / "simulate.yaml").read_text())
    simulate.update(attention_layer=0, beam_size=2, maxlen_b=15, settings=simulate["settings"][:2])
    (conf / "simulate.yaml").write_text(yaml.safe_dump(simulate))
    stream = yaml.safe_load((conf / "stream.yaml").read_text())
    stream.update(attention_layer=0, beam_size=2, maxlen_b=15, settings=[
        {"history": "punctuation", "frame_num": 4}, {"history": "words", "frame_num": 2, "audio_cut": "fbk"},
        {"history": "vad", "frame_num": 4},
    ])
    (conf / "stream.yaml").write_text(yaml.safe_dump(stream))
    return conf


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    corpus = root / "corpus"
    subprocess.run(
        [sys.executable, "local/make_mini_corpus.py", "--out", str(corpus), "--n_train", "30", "--n_dev", "4",
         "--n_test", "6", "--talk_size", "5", "--seed", "2"],
        cwd=RECIPE, check=True, capture_output=True,
    )
    options = [
        "--conf-dir", str(tiny_conf_dir(root)), "--mustc-root", str(corpus), "--nj", "1",
        "--data", str(root / "data"), "--dump", str(root / "dump"), "--exp", str(root / "exp"), "--tag", "tiny",
        "--average-num", "2", "--compile", "false",
    ]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["./run.sh", *options, *extra], cwd=RECIPE, capture_output=True, text=True)

    return root, run


def stage(run, n: int) -> str:
    result = run("--stage", str(n), "--stop-stage", str(n))
    assert result.returncode == 0, f"stage {n} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_every_stage_in_turn(recipe):
    root, run = recipe
    stage(run, 1)
    assert (root / "data/train/text.tgt.tagged").read_text().startswith("ted_")
    stage(run, 2)
    assert (root / "dump/tst-COMMON/feats.scp").read_text().count("\n") == 6
    stage(run, 3)
    tokens = (root / "data/spm/tgt_tokens.txt").read_text().split("\n")
    assert tokens[0] == "<blank>" and "<lang:de>" in tokens
    stage(run, 4)
    assert (root / "exp/st_stats/train/feats_stats.npz").is_file()
    kept = (root / "data/train/segments").read_text().count("\n")  # 30 sentences and runs of 2 and 3 joined
    assert kept > 30 and (root / "exp/st_stats/train/speech_shape").read_text().count("\n") == kept
    stage(run, 5)
    train_exp = root / "exp/tiny"
    assert (train_exp / "2epoch.pth").is_file() and (train_exp / "valid.loss.best.pth").exists()
    assert "st_train" in (train_exp / "run.cmd").read_text()
    assert yaml.safe_load((train_exp / "config.yaml").read_text())["compile"] == "false"  # the recipe's flag
    stage(run, 6)
    finetune_exp = root / "exp/tiny_finetune"
    config = yaml.safe_load((finetune_exp / "config.yaml").read_text())
    assert config["optim_conf"]["lr"] == 0.001 and config["scheduler"] is None and config["seed"] == 1
    assert config["encoder_conf"]["output_size"] == 32  # architecture from the trained model
    log = stage(run, 7)
    decoded = finetune_exp / "decode_conf_tiny/tst-COMMON"
    assert (decoded / "1best_recog/text").read_text().count("\n") == 6
    result = json.loads((decoded / "score/result.json").read_text())
    assert 0 <= result["bleu"] <= 100 and "nrefs:1" in result["signatures"]["bleu"]
    talks = json.loads((decoded / "talks/score/result.json").read_text())  # whole talks, own segmentation
    assert talks["n_segments"] == 6 and talks["talks"]["n_talks"] >= 1 and talks["talks"]["n_segments"] >= 1
    assert (decoded / "talks/score/aligned.txt").read_text().count("\n") == 6
    assert [s["timing"] for s in talks["subtitles"]] == ["proportional", "attention"]  # the default first
    subtitles = decoded / "talks/score/subtitles"
    assert sorted(p.name for p in subtitles.iterdir()) == ["attention", "proportional", "reference"]
    assert sorted(p.name for p in (subtitles / "attention").iterdir()) == sorted(
        p.name for p in (subtitles / "reference").iterdir())
    assert "tst-COMMON, subtitles (" in log and "SubER attention: " in log
    assert (finetune_exp / "curves.png").stat().st_size > 1000
    assert (train_exp / "curves.png").stat().st_size > 1000  # stage 5's curves, not only the fine-tuning's
    assert "tst-COMMON" in (finetune_exp / "RESULTS.md").read_text()
    assert "BLEU" in log and "tst-COMMON, own segmentation: BLEU|" in log
    stage(run, 8)
    with zipfile.ZipFile(finetune_exp / "packed/model.zip") as archive:
        names = archive.namelist()
        meta = yaml.safe_load(archive.read("meta.yaml"))
    assert "meta.yaml" in names and any(n.endswith("tgt.model") for n in names)
    shared = yaml.safe_load((root / "conf_tiny/simulate.yaml").read_text())
    del shared["settings"]
    assert meta["simultaneous"] == shared  # stage 9's shared keys: the zip's simultaneous defaults
    streaming = yaml.safe_load((root / "conf_tiny/stream.yaml").read_text())
    del streaming["settings"]
    assert meta["streaming"] == streaming  # stage 10's: the defaults of streams
    log = stage(run, 9)
    simulated = finetune_exp / "simulate_conf_tiny/tst-COMMON"
    assert sorted(p.name for p in simulated.iterdir() if p.is_dir()) == ["alignatt_f2", "alignatt_f4"]
    for setting in ("alignatt_f2", "alignatt_f4"):
        assert (simulated / setting / "instances.log").read_text().count("\n") == 6
        assert (simulated / setting / "scores.tsv").read_text().startswith("BLEU\tLAAL\tLAAL_CA\t")
    assert (simulated / "bleu_laal.png").stat().st_size > 1000
    results = (finetune_exp / "RESULTS.md").read_text()
    assert "### Simultaneous translation (stage 9)" in results and "| alignatt_f4 |" in results
    assert "simulate_conf_tiny/tst-COMMON/bleu_laal.png" in results
    log = stage(run, 10)
    streamed = finetune_exp / "stream_conf_tiny/tst-COMMON"
    names = ["alignatt_f2_words20", "alignatt_f4_punct_pd", "alignatt_f4_vad"]
    assert sorted(p.name for p in streamed.iterdir() if p.is_dir()) == names
    talks = len((root / "data/tst-COMMON/wav.scp").read_text().splitlines())
    for setting in names:
        assert (streamed / setting / "instances.log").read_text().count("\n") == talks
        assert (streamed / setting / "scores.tsv").read_text().startswith("BLEU\tchrF\tLongYAAL\tStreamLAAL\t")
        assert (streamed / setting / "aligned.txt").read_text().count("\n") == 6
    assert (streamed / "bleu_longyaal.png").stat().st_size > 1000
    results = (finetune_exp / "RESULTS.md").read_text()
    assert "### Whole talks streamed (stage 10)" in results and "| alignatt_f4_punct_pd |" in results
    assert "stream_conf_tiny/tst-COMMON/bleu_longyaal.png" in results


def test_packed_model_translates_audio_like_the_decode_stage(recipe, tmp_path):
    """The round trip a user makes: stage 8's zip + raw audio -> stage 7's hypotheses."""
    root, _ = recipe
    finetune_exp = root / "exp/tiny_finetune"
    clips = cut_segment_clips(root / "data/tst-COMMON", tmp_path / "clips")
    result = subprocess.run(
        [sys.executable, "-m", "espnet2_ext.bin.translate", "--config", str(root / "conf_tiny/decode.yaml"),
         "--model", str(finetune_exp / "packed/model.zip"), "--cache_dir", str(tmp_path / "cache"),
         str(tmp_path / "clips")],
        cwd=RECIPE, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    translated = {Path(key).stem: text for key, text in (line.split("\t") for line in result.stdout.splitlines())}
    assert len(clips) == 6
    assert translated == read_hypotheses(finetune_exp / "decode_conf_tiny/tst-COMMON/1best_recog/text")


def test_rerun_skips_completed_stages(recipe):
    _, run = recipe
    log = stage(run, 3)
    assert "already done, skipped" in log


def test_a_changed_stage_makes_the_stages_after_it_run_again(recipe):
    """A new conf/data.yaml reruns stage 1, and then stages 2 and 3, which read its output,
    although their own commands did not change; putting it back does the same."""
    root, run = recipe
    data_yaml = root / "conf_tiny/data.yaml"
    original = data_yaml.read_text()
    try:
        data_yaml.write_text(original.replace("join_segments: 3", "join_segments: 2"))
        log = run("--stage", "1", "--stop-stage", "3").stdout
        assert "already done" not in log and "fbank_train" not in log.split("Stage 2")[0]
        assert "skipped" not in log.split("Stage 2")[1]
    finally:
        data_yaml.write_text(original)
        restored = run("--stage", "1", "--stop-stage", "3")
    assert restored.returncode == 0 and "already done" not in restored.stdout
    assert "bpe: already done" in run("--stage", "3", "--stop-stage", "3").stdout


def test_missing_corpus_root_is_named(recipe):
    root, run = recipe
    result = run("--stage", "1", "--stop-stage", "1", "--mustc-root", str(root / "nowhere"))
    assert result.returncode != 0
    assert "nowhere" in result.stderr


def test_unknown_option_fails(recipe):
    _, run = recipe
    result = run("--stgae", "1")
    assert result.returncode != 0 and "unknown option --stgae" in result.stderr


# --------------------------------------------------------------------------- options (no stage runs)


def run_sh_quickly(tmp_path: Path, *args: str, timeout: float = 30) -> tuple[int, str]:
    """(status, stderr) of run.sh ending before stage 1 (``--stage 99 --stop-stage 99``: there is no
    stage 99), its stdout discarded.

    ``--finetune yes`` used to run the ``yes`` command: gigabytes on stdout, never ending,
    so the whole process group is killed at ``timeout``.
    """
    command = ["./run.sh", "--stage", "99", "--stop-stage", "99", "--exp", str(tmp_path / "exp"), *args]
    process = subprocess.Popen(command, cwd=RECIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"run.sh {' '.join(args)} still running after {timeout} s")
    return process.returncode, stderr


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--finetune", "yes", "expects true or false, got 'yes'"),
        ("--finetune", "True", "expects true or false, got 'True'"),
        ("--stage", "abc", "expects a non-negative integer, got 'abc'"),
        ("--stop-stage", "", "expects a non-negative integer, got ''"),
        ("--ngpu", "-1", "expects a non-negative integer, got '-1'"),
        ("--average-num", "2.5", "expects a non-negative integer, got '2.5'"),
        ("--nj", "0", "expects an integer >= 1, got 0"),
        ("--compile", "yes", "expects true, false or auto, got 'yes'"),
    ],
)
def test_mistyped_option_is_one_line_and_exit_1(tmp_path: Path, option: str, value: str, expected: str):
    args = [f"{option}={value}"] if value == "" else [option, value]
    status, stderr = run_sh_quickly(tmp_path, *args)
    assert status == 1 and stderr == f"./run.sh: option {option} {expected}\n"
    assert not (tmp_path / "exp").exists()  # nothing ran


def test_well_typed_options_are_accepted(tmp_path: Path):
    status, stderr = run_sh_quickly(
        tmp_path, "--finetune", "false", "--ngpu", "0", "--nj=2", "--compile", "auto", "--stop-stage", "099"
    )
    assert status == 0 and stderr == ""


def test_stage_after_stop_stage_is_one_line_and_exit_1(tmp_path: Path):
    """It used to say "Done" having run nothing."""
    status, stderr = run_sh_quickly(tmp_path, "--stage", "5", "--stop-stage", "2")
    assert status == 1 and stderr == "./run.sh: --stage 5 is after --stop-stage 2: nothing would run\n"
    assert not (tmp_path / "exp").exists()  # refused before any stage


def stage6_without(tmp_path: Path, missing: str) -> tuple[int, str, Path]:
    """Stage 6 with stage 5's exp dir lacking ``missing`` (or complete when ``missing`` is empty)."""
    train_exp = tmp_path / "exp" / "t"
    train_exp.mkdir(parents=True)
    for name in {"config.yaml", "valid.loss.best.pth"} - {missing}:
        (train_exp / name).write_text("encoder: ctc_compress_conformer\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "finetune.yaml").write_text("optim_conf: [lr: 0.001\n")  # malformed: the merge fails
    command = ["./run.sh", "--stage", "6", "--stop-stage", "6", "--exp", str(tmp_path / "exp"), "--tag", "t",
               "--conf-dir", str(conf)]
    result = subprocess.run(command, cwd=RECIPE, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stderr, tmp_path / "exp" / "t_finetune"


@pytest.mark.parametrize("missing", ["config.yaml", "valid.loss.best.pth"])
def test_stage6_without_stage5_names_what_is_missing_and_writes_nothing(tmp_path: Path, missing: str):
    status, stderr, finetune_exp = stage6_without(tmp_path, missing)
    assert status == 1
    assert stderr == f"./run.sh: stage 6 needs stage 5's {tmp_path}/exp/t/{missing}, which is missing: " \
                     "run stage 5 first\n"
    assert not finetune_exp.exists()


def test_failed_config_merge_leaves_no_finetune_config(tmp_path: Path):
    status, _, finetune_exp = stage6_without(tmp_path, "")
    assert status != 0
    assert list(finetune_exp.iterdir()) == []
