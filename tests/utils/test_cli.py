"""The one way our programs fail: an ``ERROR:`` line and exit status 1."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from espnet2.utils import config_argparse
from espnet2.utils.types import int_or_none

from espnet2_ext.utils.cli import (
    ArgumentParser,
    CommandError,
    check_output_dir,
    check_output_file,
    command,
)


@command(OSError)
def main(argv=None):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("case", choices=["ok", "partial", "bad", "io"])
    case = parser.parse_args(argv).case
    if case == "bad":
        raise CommandError("input.txt:3: expected two fields")
    if case == "io":
        raise OSError("disk full")
    return 2 if case == "partial" else None


@pytest.mark.parametrize(
    "argv, status, err",
    [
        (["ok"], 0, ""),
        (["partial"], 2, ""),
        (["bad"], 1, "ERROR: input.txt:3: expected two fields\n"),
        (["io"], 1, "ERROR: disk full\n"),
        (["ok", "--nope"], 1, "ERROR: unrecognized arguments: --nope\n"),
    ],
)
def test_errors_become_one_line_and_status_1(capsys, argv, status, err):
    assert main(argv) == status
    assert capsys.readouterr().err == err


def test_other_exceptions_are_not_hidden():
    @command()
    def crash(argv=None):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        crash()


def test_interrupt_is_one_line_saying_how_to_resume(capsys):
    cleaned = []

    @command(on_interrupt="run it again to resume")
    def long_job(argv=None):
        try:
            raise KeyboardInterrupt
        finally:
            cleaned.append(True)

    assert long_job() == 130
    assert capsys.readouterr().err == "INTERRUPTED by SIGINT (Ctrl-C): run it again to resume\n"
    assert cleaned == [True]


# A program interrupted while it builds an object whose finalizer then fails as the process ends.
HALF_BUILT = """
import sys
from espnet2_ext.utils.cli import command

class Bar:
    def __init__(self):
        raise KeyboardInterrupt  # the signal lands before the attribute __del__ reads is set

    def __del__(self):
        self.closed

@command(on_interrupt="run it again")
def main(argv=None):
    Bar()

sys.exit(main())
"""


def test_a_finalizer_failing_after_an_interrupt_adds_nothing_to_the_one_line():
    """Ctrl-C inside a progress bar's constructor left tqdm's ``__del__`` to print "Exception ignored"
    and a traceback under the INTERRUPTED line as the program ended."""
    done = subprocess.run([sys.executable, "-c", HALF_BUILT], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 130 and done.stderr == "INTERRUPTED by SIGINT (Ctrl-C): run it again\n"


def test_sigterm_unwinds_like_ctrl_c_and_the_handler_is_restored(capsys):
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []

    @command(on_interrupt="run it again to resume")
    def long_job(argv=None):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            cleaned.append(True)

    assert long_job() == 143
    assert capsys.readouterr().err == "INTERRUPTED by SIGTERM: run it again to resume\n"
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) == before


def test_without_on_interrupt_ctrl_c_propagates():
    @command()
    def long_job(argv=None):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        long_job()


# --------------------------------------------------------------------------- ArgumentParser


def strict_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--max_frames", type=int_or_none, default=3000)
    parser.add_argument("--mode", choices=("around", "nbest"), default="around")
    return parser


def test_config_sets_options_and_a_required_one_may_come_from_it(tmp_path):
    config = tmp_path / "conf.yaml"
    config.write_text("data_dir: data/train\nmax_frames: none\nmode: nbest\n")
    args = strict_parser().parse_args(["--config", str(config)])
    assert (args.data_dir, args.max_frames, args.mode) == ("data/train", None, "nbest")
    assert strict_parser().parse_args(["--config", str(config), "--max_frames", "7"]).max_frames == 7


@pytest.mark.parametrize(
    "text, message",
    [
        ("data_dir: d\nmax_frame: 10\n", "conf.yaml:2: unknown key 'max_frame'; expected one of: data_dir, max_frames, mode"),
        ("data_dir: d\nmax_frames: lots\n", "conf.yaml:2: max_frames: invalid value 'lots'"),
        ("data_dir: d\nmode: best\n", "conf.yaml:2: mode: 'best' is not one of around, nbest"),
        ("[data_dir, d]\n", "conf.yaml: expected a YAML mapping of key: value, found a list"),
        ("data_dir: [d\n", "conf.yaml:2:1: not valid YAML: while parsing a flow sequence"),
    ],
    ids=["unknown key", "bad type", "bad choice", "not a mapping", "malformed"],
)
def test_bad_config_is_a_command_error_naming_file_line_and_key(tmp_path, text, message):
    config = tmp_path / "conf.yaml"
    config.write_text(text)
    with pytest.raises(CommandError, match="^" + re.escape(str(tmp_path / message))):
        strict_parser().parse_args(["--config", str(config)])


def test_missing_config_and_missing_option_are_command_errors(tmp_path):
    with pytest.raises(CommandError, match="no such config file .*nope.yaml"):
        strict_parser().parse_args(["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(CommandError, match="the following arguments are required: --data_dir"):
        strict_parser().parse_args([])


def test_parser_is_espnet_s():
    assert isinstance(strict_parser(), config_argparse.ArgumentParser)


# --------------------------------------------------------------------------- outputs


def test_output_file_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(CommandError, match=f"^--out {tmp_path} is a directory"):
        check_output_file(tmp_path, "--out")


def test_output_under_a_file_is_refused(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(CommandError, match="is a file, not a directory"):
        check_output_file(tmp_path / "plain" / "sub" / "x.json", "--out")
    with pytest.raises(CommandError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "plain", "--out_dir")


def test_unwritable_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere: simulate
    with pytest.raises(CommandError, match=f"--out_dir {tmp_path / 'new'}: {tmp_path} is not writable"):
        check_output_dir(tmp_path / "new", "--out_dir")


def test_creatable_outputs_pass_and_nothing_is_created(tmp_path):
    assert check_output_file(tmp_path / "a" / "b.txt", "--out") == tmp_path / "a" / "b.txt"
    assert check_output_dir(tmp_path / "c" / "d", "--out_dir") == tmp_path / "c" / "d"
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_no_file_can_be_created_is_refused_even_for_root():
    with pytest.raises(CommandError, match=r"^--out /proc/nope/model.zip: cannot create directories in /proc \("):
        check_output_file("/proc/nope/model.zip", "--out")
    with pytest.raises(CommandError, match=r"^--out_dir /proc/nope: cannot create directories in /proc \("):
        check_output_dir("/proc/nope", "--out_dir")


def test_without_parents_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(CommandError, match=f"^--out {tmp_path}/a/b.txt: directory {tmp_path}/a does not exist$"):
        check_output_file(tmp_path / "a" / "b.txt", "--out", parents=False)
    assert check_output_file(tmp_path / "b.txt", "--out", parents=False) == tmp_path / "b.txt"
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- abbreviations


def test_options_are_never_abbreviated(tmp_path):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--beam_size", type=int, default=5)
    with pytest.raises(CommandError, match="unrecognized arguments: --beam 3"):
        parser.parse_args(["--beam", "3"])
    config = tmp_path / "conf.yaml"
    config.write_text("beam_size: 7\n")
    with pytest.raises(CommandError, match=f"unrecognized arguments: --conf {config}"):
        parser.parse_args(["--conf", str(config)])  # nor is --config
    assert parser.parse_args(["--config", str(config)]).beam_size == 7
    assert ArgumentParser(prog="tool", config_option=False).allow_abbrev is False
