"""ESPnet's flash-attention notice is silenced, and nothing else printed while importing is."""

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from espnet2_ext.utils import espnet_notices
from espnet2_ext.utils.espnet_notices import ATTENTION_MODULE, NOTICE

ROOT = Path(__file__).resolve().parents[2]

BUILD_TINY_MODEL = """
import argparse
from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask  # ESPnet's registry, as training imports it
from espnet2_ext.tasks.model_building import build_st_model  # what translating builds with

config = vars(STCTCCompressTask.get_parser().parse_args([]))
config.update(
    input_size=80, token_list=["<blank>", "<unk>", "a", "b", "<sos/eos>"], src_token_list=["<blank>", "<unk>", "a"],
    encoder="ctc_compress_conformer", encoder_conf=dict(output_size=16, attention_heads=2, linear_units=32,
    num_blocks=2, subsampling_channels=16, ctc_block=1, compression="avg"),
    decoder="fbk_transformer", decoder_conf=dict(attention_heads=2, linear_units=32, num_blocks=1),
    model_conf=dict(ctc_weight=0.5),
)
model = build_st_model(argparse.Namespace(**config))
print("built", type(model).__name__)
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_building_a_model_prints_no_flash_attention_notice():
    result = run_python(BUILD_TINY_MODEL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "built ESPnetSTCTCCompressModel\n"
    assert "Flash Attention" not in result.stderr, result.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash_attn installed: no notice")
def test_the_notice_is_real_without_our_package():
    """ESPnet alone prints it: the test above is not passing for want of a notice."""
    result = run_python(f"import {ATTENTION_MODULE}")
    assert result.stdout.startswith(NOTICE), result


def fake_attention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """A module standing in for ESPnet's attention (never imported yet), with ``body`` as its code."""
    name = f"fake_attention_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(espnet_notices, "ATTENTION_MODULE", name)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_only_the_notice_is_dropped(tmp_path, monkeypatch, capfd):
    name = fake_attention(tmp_path, monkeypatch, (
        "import sys\n"
        f"print({NOTICE!r} + 'No module named flash_attn')\n"
        "print('something else ESPnet says')\n"
        "print('a warning', file=sys.stderr)\n"
        "VALUE = 3\n"
    ))
    assert importlib.import_module(name).VALUE == 3
    out, err = capfd.readouterr()
    assert out == "something else ESPnet says\n" and err == "a warning\n"


def test_a_failing_import_still_shows_what_it_printed(tmp_path, monkeypatch, capfd):
    name = fake_attention(tmp_path, monkeypatch, (
        f"print({NOTICE!r} + 'x')\n"
        "print('why it fails')\n"
        "raise ImportError('broken install')\n"
    ))
    with pytest.raises(ImportError, match="broken install"):
        importlib.import_module(name)
    assert capfd.readouterr().out == "why it fails\n"


def test_installing_twice_adds_one_hook():
    before = list(sys.meta_path)
    espnet_notices.silence_flash_attention_notice()
    assert sys.meta_path == before
