"""The README's claims that can be checked without running the recipe: its Python
imports resolve, the programs it names exist, the files and make targets it points to
are there (a renamed module must not leave the README pointing at nothing)."""

import importlib
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_python_imports_resolve():
    blocks = re.findall(r"```python\n(.*?)```", README, re.DOTALL)
    imports = [m for block in blocks for m in re.findall(r"^from (\S+) import (\w+)", block, re.MULTILINE)]
    assert imports, "the README shows the Python API"
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"README: `from {module} import {name}` fails"


def test_programs_exist():
    programs = set(re.findall(r"python -m (espnet2_ext\.bin\.\w+)", README))
    assert programs
    for program in programs:
        assert importlib.util.find_spec(program) is not None, f"README runs {program}, which does not exist"


def test_paths_exist():
    cited = set(re.findall(r"`((?:espnet2_ext|bench|conf|egs|tests|utils)/[\w./-]+)`", README))
    assert cited
    missing = [path for path in sorted(cited) if not (ROOT / path).exists() and "exp/" not in path
               and "<" not in path]
    assert not missing, f"README cites paths that do not exist: {missing}"


def test_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    cited = set(re.findall(r"`make ([\w-]+)", README))
    assert cited
    assert cited <= targets, f"README names make targets that do not exist: {sorted(cited - targets)}"
