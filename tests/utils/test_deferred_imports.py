"""Tests for espnet2_ext/utils/deferred_imports.py: ESPnet's unused g2p_en and nltk are not
run when our task is imported, and still work when used."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from espnet2_ext.utils.deferred_imports import DeferredModule, defer_import


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_importing_our_task_runs_neither_g2p_en_nor_nltk():
    """They cost seconds, and g2p_en's import tries to download NLTK data."""
    result = run_python(
        "import sys\n"
        "import espnet2_ext.tasks.st_ctc_compress\n"
        "from espnet2_ext.utils.deferred_imports import DeferredModule\n"
        "print(*(type(sys.modules[name]).__name__ for name in ('g2p_en', 'nltk')))\n"
        "print('nltk.data' in sys.modules, 'g2p_en.g2p' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["DeferredModule DeferredModule", "False False"]  # after ESPnet's notices
    assert "nltk_data" not in result.stderr


def test_espnet_still_gets_the_real_modules_when_it_uses_them():
    result = run_python(
        "import sys\n"
        "import espnet2_ext.tasks.st_ctc_compress\n"
        "from espnet2.text import phoneme_tokenizer\n"
        "print(phoneme_tokenizer.g2p_en.G2p.__module__, type(sys.modules['g2p_en']).__name__)\n"
        "from espnet.nets import e2e_mt_common\n"
        "print(e2e_mt_common.nltk.bleu_score.corpus_bleu.__name__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["g2p_en.g2p module", "corpus_bleu"]


@pytest.fixture
def probe_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable package that records in a file each time its body runs."""
    package = tmp_path / "deferred_probe"
    package.mkdir()
    runs = tmp_path / "runs"
    (package / "__init__.py").write_text(
        f"with open({str(runs)!r}, 'a') as f:\n    f.write('run\\n')\nVALUE = 42\n", encoding="utf-8"
    )
    (package / "part.py").write_text("PART = 'p'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "deferred_probe", raising=False)
    monkeypatch.delitem(sys.modules, "deferred_probe.part", raising=False)
    return runs


def test_the_module_runs_once_at_the_first_use_of_a_name(probe_package: Path):
    defer_import("deferred_probe")
    deferred_probe = importlib.import_module("deferred_probe")  # the probe made by the fixture

    assert isinstance(deferred_probe, DeferredModule) and not probe_package.exists()
    # What inspect.getmodule does to every module in sys.modules (torch calls it while importing):
    assert deferred_probe.__file__.endswith("__init__.py") and not probe_package.exists()
    assert deferred_probe.VALUE == 42 and deferred_probe.VALUE == 42
    assert probe_package.read_text() == "run\n"
    assert sys.modules["deferred_probe"].VALUE == 42 and not isinstance(sys.modules["deferred_probe"], DeferredModule)
    assert importlib.import_module("deferred_probe.part").PART == "p" and probe_package.read_text() == "run\n"


def test_missing_or_already_imported_modules_are_left_alone(probe_package: Path):
    defer_import("no_such_module_here")
    assert "no_such_module_here" not in sys.modules
    deferred_probe = importlib.import_module("deferred_probe")

    defer_import("deferred_probe")
    assert sys.modules["deferred_probe"] is deferred_probe and probe_package.read_text() == "run\n"
