"""Fine-tuning configs: nested settings merge, the rest is replaced."""

import subprocess
import sys
from pathlib import Path

import yaml

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "mustc_conformer_ctc"


def test_finetune_changes_only_what_it_names(tmp_path):
    base = tmp_path / "config.yaml"
    base.write_text(yaml.safe_dump({
        "encoder_conf": {"output_size": 512, "num_blocks": 12},
        "optim": "adam", "optim_conf": {"lr": 0.002, "betas": [0.9, 0.98]},
        "scheduler": "warmuplr", "seed": 7, "patience": 5, "required": ["output_dir"], "version": "202511", "distributed": False,
    }))
    out = tmp_path / "finetune" / "finetune_config.yaml"
    subprocess.run(
        [sys.executable, "local/merge_configs.py", "--base_config", str(base),
         "--override_config", str(RECIPE / "conf" / "finetune.yaml"), "--out", str(out)],
        cwd=RECIPE, capture_output=True, text=True, check=True,
    )
    merged = yaml.safe_load(out.read_text())
    assert merged["encoder_conf"] == {"output_size": 512, "num_blocks": 12}
    assert merged["optim_conf"] == {"lr": 0.001, "betas": [0.9, 0.98]}
    assert merged["scheduler"] is None
    assert (merged["seed"], merged["patience"], merged["max_epoch"]) == (1, 30, 200)  # FBK: seed 1, patience 30, 200k updates
    assert not {"required", "version", "distributed"} & set(merged)  # ESPnet bookkeeping, no options


def test_malformed_override_is_one_line_and_writes_nothing(tmp_path):
    base, override = tmp_path / "config.yaml", tmp_path / "finetune.yaml"
    base.write_text("seed: 7\n")
    override.write_text("optim_conf: [lr: 0.001\n")
    out = tmp_path / "out" / "finetune_config.yaml"
    result = subprocess.run(
        [sys.executable, "local/merge_configs.py", "--base_config", str(base), "--override_config", str(override),
         "--out", str(out)],
        cwd=RECIPE, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"ERROR: {override}:2:1: not valid YAML") and "Traceback" not in result.stderr
    assert not out.parent.exists()
