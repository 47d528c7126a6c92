"""What the README and the pages of docs/ claim that can be checked without running the recipe:
their Python imports resolve, the programs they run exist and take the options their commands
give, the files, make targets, run.sh options and pages (with their sections) they point to are
there. A renamed module, option or heading must not leave a page pointing at nothing.

docs/benchmarks.md is left out: bench/report.py writes it from a run's saved figures, so what it
cites is fixed in report.py and by the next ``make bench``, not by hand; checking it here would
make this test wait on a benchmark run. That the pages link to it is checked."""

import importlib
import importlib.util
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"docs/benchmarks.md"}  # bench/report.py's
PAGES = {
    path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    if path.relative_to(ROOT).as_posix() not in GENERATED
}
PATH_PREFIXES = ("espnet2_ext", "bench", "conf", "docs", "egs", "tests", "utils")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def commands(text: str) -> list[str]:
    """The shell commands of a page's bash blocks, continuation lines joined, comments dropped."""
    joined = "\n".join(code_blocks(text, "bash")).replace("\\\n", " ")
    return [line.split(" # ")[0] for line in joined.splitlines()]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor (a repeated one numbered, as GitHub numbers it), code blocks skipped."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.DOTALL), re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_every_page_is_read():
    assert "README.md" in PAGES
    assert {"docs/recipe.md", "docs/translate.md", "docs/simultaneous.md", "docs/fbk.md", "docs/design.md"} <= set(PAGES)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_python_imports_resolve(page):
    imports = [
        found
        for block in code_blocks(PAGES[page], "python")
        for found in re.findall(r"^from (\S+) import (\w+)", block, re.MULTILINE)
    ]
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{page}: `from {module} import {name}` fails"


def test_the_readme_shows_the_python_api():
    assert any("from espnet2_ext" in block for block in code_blocks(PAGES["README.md"], "python"))


@pytest.mark.parametrize("page", sorted(PAGES))
def test_programs_exist_and_take_the_options_given(page):
    for command in commands(PAGES[page]):
        for program, arguments in re.findall(r"python -m (espnet2_ext\.bin\.\w+)([^|;&]*)", command):
            assert importlib.util.find_spec(program) is not None, f"{page} runs {program}, which does not exist"
            options = {
                option for action in importlib.import_module(program).get_parser()._actions
                for option in action.option_strings
            }
            unknown = sorted(set(re.findall(r"(?<![\w-])--\w[\w-]*", arguments)) - options)
            assert not unknown, f"{page}: {program} has no option {', '.join(unknown)}"
    cited = re.findall(r"python -m (espnet2_ext\.bin\.\w+)", PAGES[page])
    for program in cited:
        assert importlib.util.find_spec(program) is not None, f"{page} names {program}, which does not exist"


def test_pages_run_programs():
    assert any(re.search(r"python -m espnet2_ext\.bin\.\w+", text) for text in PAGES.values())


@pytest.mark.parametrize("page", sorted(PAGES))
def test_run_sh_options_exist(page):
    run_sh = (ROOT / "egs/mustc_conformer_ctc/run.sh").read_text(encoding="utf-8")
    variables = set(re.findall(r"^(\w+)=", run_sh, re.MULTILINE))
    for command in commands(PAGES[page]):
        if "./run.sh" in command:
            flags = re.findall(r"(?<![\w-])--(\w[\w-]*)", command.split("./run.sh", 1)[1])
            unknown = [f"--{flag}" for flag in flags if flag.replace("-", "_") not in variables]
            assert not unknown, f"{page}: run.sh has no option {', '.join(unknown)}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_paths_exist(page):
    prefixes = "|".join(PATH_PREFIXES)
    cited = set(re.findall(rf"`((?:{prefixes})/[\w./-]+)`", PAGES[page]))
    missing = [path for path in sorted(cited) if not (ROOT / path).exists() and "exp/" not in path
               and "<" not in path]
    assert not missing, f"{page} cites paths that do not exist: {missing}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_make_targets_exist(page):
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    cited = set(re.findall(r"`make ([\w-]+)", PAGES[page]))
    assert cited <= targets, f"{page} names make targets that do not exist: {sorted(cited - targets)}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_links_reach_their_pages_and_sections(page):
    text = re.sub(r"```.*?```", "", PAGES[page], flags=re.DOTALL)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        where = (ROOT / page).parent / path if path else ROOT / page
        assert where.exists(), f"{page} links to {target}, which does not exist"
        if anchor:
            linked = where.resolve().relative_to(ROOT).as_posix()
            assert anchor in anchors(PAGES.get(linked) or where.read_text(encoding="utf-8")), (
                f"{page} links to {target}: {linked} has no such section"
            )


def test_the_readme_maps_every_page():
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", PAGES["README.md"]))
    pages = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"README's map lacks {sorted(pages - linked)}"


def test_the_readme_fits_on_a_few_screens():
    assert len(PAGES["README.md"].splitlines()) <= 200
