"""The one way our programs fail: an ``ERROR:`` line and exit status 1."""

import argparse

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
