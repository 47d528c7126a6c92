"""Rescaling FBK's batch settings to other GPU counts keeps the frames per update."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "mustc_conformer_ctc"
FBK_FRAMES_PER_UPDATE = 320_000
FEATURE_DIM = 80


def settings(config: Path, ngpu: int) -> dict:
    result = subprocess.run(
        [sys.executable, "local/batch_settings.py", "--train_config", str(config), "--ngpu", str(ngpu)],
        cwd=RECIPE, capture_output=True, text=True, check=True,
    )
    words = result.stdout.split()
    assert f"ngpu={ngpu}" in result.stderr
    return {words[i].lstrip("-"): int(words[i + 1]) for i in range(0, len(words), 2)}


@pytest.mark.parametrize(
    "ngpu, accum_grad", [(1, 8), (2, 4), (4, 2), (8, 1)],
)
def test_recipe_config_keeps_40k_frames_per_gpu_and_320k_per_update(ngpu, accum_grad):
    new = settings(RECIPE / "conf" / "train.yaml", ngpu)
    assert new["accum_grad"] == accum_grad
    assert new["batch_bins"] // ngpu == 40_000 * FEATURE_DIM
    assert new["batch_bins"] * new["accum_grad"] == FBK_FRAMES_PER_UPDATE * FEATURE_DIM
    assert new["num_iters_per_epoch"] // new["accum_grad"] == 1000  # validate every 1000 updates


def test_cpu_counts_as_one_device():
    assert settings(RECIPE / "conf" / "train.yaml", 0) == settings(RECIPE / "conf" / "train.yaml", 1)


def test_gpu_counts_not_dividing_the_batches_keep_the_update_size(tmp_path):
    new = settings(RECIPE / "conf" / "train.yaml", 3)
    assert new["accum_grad"] == 3
    assert abs(new["batch_bins"] * 3 - FBK_FRAMES_PER_UPDATE * FEATURE_DIM) < 3
    assert new["batch_bins"] // 3 <= 40_000 * FEATURE_DIM


def test_missing_key_is_named(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"batch_bins": 10, "accum_grad": 1, "ngpu": 1}))
    result = subprocess.run(
        [sys.executable, "local/batch_settings.py", "--train_config", str(config), "--ngpu", "2"],
        cwd=RECIPE, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "num_iters_per_epoch" in result.stderr and str(config) in result.stderr
