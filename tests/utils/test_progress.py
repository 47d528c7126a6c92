"""Progress bars are drawn on a terminal and never into a file."""

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

COUNT_TO_5 = """
import sys
from espnet2_ext.utils.progress import progress_bar
with progress_bar(total=5, desc="items", disable=sys.argv[1] == "disabled") as bar:
    for _ in range(5):
        bar.update(1)
print("done")
"""


COUNT_SECONDS = """
from espnet2_ext.utils.progress import seconds_bar
with seconds_bar(813.3) as bar:
    for _ in range(3277):
        bar.update(0.1)
print("done")
"""


def run(stderr: int, caller_disables: bool = False, code: str = COUNT_TO_5) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, "disabled" if caller_disables else "enabled"],
        stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, timeout=60,
    )


def read_terminal(caller_disables: bool = False, code: str = COUNT_TO_5) -> str:
    """What the program draws on stderr when stderr is a terminal (a pty's slave end)."""
    master, slave = pty.openpty()
    try:
        result = run(slave, caller_disables, code)
    finally:
        os.close(slave)
    assert result.returncode == 0 and result.stdout == "done\n"
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every end of the terminal is closed and its buffer read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks).decode()


def test_bar_is_drawn_on_a_terminal():
    drawn = read_terminal()
    assert "items: 100%" in drawn and "5/5" in drawn, drawn


def test_no_bar_in_a_log_file(tmp_path):
    log = tmp_path / "log"
    with log.open("w") as stream:
        result = run(stream.fileno())
    assert result.returncode == 0 and result.stdout == "done\n"
    assert log.read_text() == ""  # `make demo > log 2>&1` used to fill logs with bars


@pytest.mark.parametrize("where", ["terminal", "file"])
def test_caller_s_own_reason_not_to_draw_is_kept(tmp_path, where):
    if where == "terminal":
        assert read_terminal(caller_disables=True) == ""
    else:
        with (tmp_path / "log").open("w") as stream:
            run(stream.fileno(), caller_disables=True)
        assert (tmp_path / "log").read_text() == ""


def test_seconds_are_shown_to_the_tenth():
    drawn = read_terminal(code=COUNT_SECONDS)
    assert "327.7/813.3" in drawn and "00000" not in drawn, drawn
