"""The one way our programs fail: an ``ERROR:`` line and exit status 1."""

import argparse
import os
import signal
import time

import pytest

from espnet2_ext.utils.cli import CommandError, ErrorsRaise, command


class _Parser(ErrorsRaise, argparse.ArgumentParser):
    pass


@command(OSError)
def main(argv=None):
    parser = _Parser(prog="tool")
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
