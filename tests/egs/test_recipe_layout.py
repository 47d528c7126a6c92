"""The design card's layout: the YAML configs live in the project's top-level conf/, which
the recipe links as conf (as ESPnet recipes link utils/)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "mustc_conformer_ctc"
CONFIGS = {"bpe.yaml", "data.yaml", "decode.yaml", "fbank.yaml", "finetune.yaml", "simulate.yaml", "stream.yaml", "train.yaml"}


def test_recipe_conf_is_a_relative_link_to_the_top_level_conf():
    for name in ("conf", "utils"):
        link = RECIPE / name
        assert link.is_symlink() and os.readlink(link) == f"../../{name}", name
        assert link.resolve() == REPO / name


def test_top_level_conf_holds_fbk_s_settings_and_the_demo_s():
    conf = REPO / "conf"
    assert conf.is_dir() and not conf.is_symlink()
    assert {p.name for p in conf.glob("*.yaml")} == CONFIGS
    assert {p.name for p in (conf / "demo").glob("*.yaml")} == CONFIGS
