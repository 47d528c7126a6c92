"""Every third-party module the project imports is pinned in requirements.txt (or in
requirements-nodeps.txt, installed without its declared dependencies)."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("espnet2_ext", "egs", "tests", "bench")
OWN = {"espnet2_ext", "tests", "mini_corpus"}  # mini_corpus: the recipe's local/ package


def imported_modules() -> dict[str, Path]:
    """Top-level module -> one file importing it (absolute imports only; a script's
    sibling modules, as bench/'s, are its own)."""
    found: dict[str, Path] = {}
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            siblings = {p.stem for p in path.parent.glob("*.py")}
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] not in siblings:
                        found.setdefault(name.split(".")[0], path.relative_to(REPO))
    return found


def pinned() -> set[str]:
    files = ("requirements.txt", "requirements-nodeps.txt")
    lines = [line for name in files for line in (REPO / name).read_text(encoding="utf-8").splitlines()]
    return {_normalise(re.split(r"[=<>\[ ;]", line, maxsplit=1)[0]) for line in lines if line and line[0].isalnum()}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_pinned():
    distributions = importlib.metadata.packages_distributions()
    requirements = pinned()
    missing = {}
    for module, path in imported_modules().items():
        if module in OWN or module in sys.stdlib_module_names:
            continue
        names = {_normalise(d) for d in distributions.get(module, [module])}
        if not names & requirements:
            missing[module] = f"{path} (distribution {', '.join(sorted(names))})"
    assert not missing, f"imported but not in requirements.txt: {missing}"
