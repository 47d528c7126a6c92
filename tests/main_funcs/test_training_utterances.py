"""What the training utterances looked like: from collect_stats' shapes and their audio, packed, read back."""

import zipfile

import numpy as np
import pytest
import yaml

from espnet2_ext.bin import pack_model
from espnet2_ext.main_funcs.training_utterances import (
    TrainingUtterances,
    TrainingUtterancesError,
    segmentation_options,
)
from espnet2_ext.segmentation import SHAS_MUSTC


def write_shapes(path, frames) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"utt{i} {n},80\n" for i, n in enumerate(frames)))


def test_durations_from_frames_as_kaldi_frames_them(tmp_path):
    frames = list(range(101, 1101, 10))  # 100 utterances
    write_shapes(tmp_path / "speech_shape", frames)
    durations = TrainingUtterances.from_shape_file(tmp_path / "speech_shape")
    seconds = 0.025 + 0.01 * (np.array(frames) - 1)  # 25-ms windows every 10 ms
    assert durations.count == 100 and durations.max == pytest.approx(seconds.max())
    assert durations.mean == pytest.approx(seconds.mean()) and durations.p50 == pytest.approx(np.median(seconds))
    assert durations.p95 == pytest.approx(np.percentile(seconds, 95))
    assert TrainingUtterances.from_meta({"training_utterances": durations.to_meta()}) == TrainingUtterances(
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in vars(durations).items()}
    )
    assert durations.lead is None and "lead" not in durations.to_meta()


def test_bad_shape_files_and_meta_entries_are_named(tmp_path):
    (tmp_path / "speech_shape").write_text("utt1 many,80\n")
    with pytest.raises(TrainingUtterancesError, match="speech_shape: utt1: expected 'frames,dims', got 'many,80'"):
        TrainingUtterances.from_shape_file(tmp_path / "speech_shape")
    with pytest.raises(TrainingUtterancesError, match="must hold count, mean, p50, p95, max"):
        TrainingUtterances.from_meta({"training_utterances": {"mean": 3.0}})
    with pytest.raises(TrainingUtterancesError, match="must hold seconds >= 0"):
        TrainingUtterances.from_meta({"training_utterances": dict(count=3, mean=1, p50=1, p95=-2, max=3)})
    assert TrainingUtterances.from_meta({}) is None


def test_segmentation_defaults_come_from_the_training_utterances_else_shas():
    durations = TrainingUtterances(count=10, mean=6.0, p50=5.5, p95=14.2, max=29.9)
    assert segmentation_options(durations).max_seconds == 14.2
    assert segmentation_options(durations, max_seconds=20.0).max_seconds == 20.0
    assert segmentation_options(None) == SHAS_MUSTC
    assert (SHAS_MUSTC.pause_seconds, SHAS_MUSTC.pad_start_seconds, SHAS_MUSTC.pad_end_seconds) == (None, 0, 0)
    measured = TrainingUtterances(10, 6.0, 5.5, 14.2, 29.9, lead=0.1, trail=0.35, pause=0.8, sampled=10)
    options = segmentation_options(measured)
    assert (options.pause_seconds, options.pad_start_seconds, options.pad_end_seconds) == (0.8, 0.1, 0.35)
    given = segmentation_options(measured, pause_seconds=0, pad_start_seconds=0.0, pad_end_seconds=0.2)
    assert (given.pause_seconds, given.pad_start_seconds, given.pad_end_seconds) == (None, 0.0, 0.2)


def test_pack_records_the_durations_of_the_shape_file_the_config_names(tiny_exps, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tiny_exps)
    exp = tiny_exps / "exp_abs"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    shapes = tmp_path / "stats/train/speech_shape"
    write_shapes(shapes, [300, 500, 700])
    config["train_shape_file"] = [str(shapes), str(tmp_path / "stats/train/text_shape")]
    exp_copy = tmp_path / "exp"
    exp_copy.mkdir()
    (exp_copy / "config.yaml").write_text(yaml.safe_dump(config))
    (exp_copy / "1epoch.pth").write_bytes((exp / "1epoch.pth").read_bytes())
    zip_path = tmp_path / "model.zip"
    argv = ["--exp_dir", str(exp_copy), "--model_file", str(exp_copy / "1epoch.pth"), "--outpath", str(zip_path)]
    assert pack_model.main(argv) == 0
    meta = yaml.safe_load(zipfile.ZipFile(zip_path).read("meta.yaml"))
    assert meta["training_utterances"] == TrainingUtterances.from_shape_file(shapes).to_meta()
    assert meta["training_utterances"]["count"] == 3 and meta["training_utterances"]["max"] == pytest.approx(7.015)
    assert "no training audio found" in caplog.text, "the config names no features: no margins"

    shapes.unlink()  # a config naming no shapes that exist: packed without, and said so
    assert pack_model.main(argv) == 0
    assert "training_utterances" not in yaml.safe_load(zipfile.ZipFile(zip_path).read("meta.yaml"))
    assert "holds no training statistics" in caplog.text
