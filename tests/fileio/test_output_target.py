"""Output where the user says: a new or regular file (atomic), a symlink (through it), a
FIFO, a device or a descriptor (directly), stdout; refused before any work when it
cannot be written; a failed write is one error line. All on real files, no mocks."""

import os
import pwd
import queue
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from espnet2_ext.fileio.output_target import OutputError, check_output_target, open_output
from espnet2_ext.utils.cli import CommandError

ROOT = Path(__file__).resolve().parents[2]


def refusal(path: str | Path) -> str:
    with pytest.raises(CommandError) as err:
        check_output_target(str(path), "--output")
    assert "\n" not in str(err.value)
    return str(err.value)


def write_three(path: str | Path | None) -> None:
    with open_output(None if path is None else str(path)) as out:
        for i in range(3):
            out.write(f"line {i}")


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def run_python(code: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (``-X dev``: ResourceWarnings and the like show)."""
    return subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------- check_output_target


def test_a_new_file_in_an_existing_directory_passes_and_nothing_is_created(tmp_path):
    check_output_target(str(tmp_path / "out.tsv"), "--output")
    assert listing(tmp_path) == []


def test_a_missing_directory_is_refused_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refusal("no/such/dir/out.tsv") == "--output no/such/dir/out.tsv: directory no/such/dir does not exist"
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "path, message",
    [
        ("/proc/nope/out.tsv", "--output /proc/nope/out.tsv: directory /proc/nope does not exist"),
        ("/proc/out.tsv", "--output /proc/out.tsv: cannot create files in /proc"),
        ("/proc/version", "--output /proc/version: cannot create files in /proc"),  # exists, cannot be replaced
    ],
)
def test_a_filesystem_where_no_file_can_be_created_is_refused(path, message):
    assert refusal(path).startswith(message)


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="no sysfs mounted here")
def test_sysfs_refuses_even_root():
    assert refusal("/sys/kernel/out.tsv").startswith("--output /sys/kernel/out.tsv: ")


def test_a_directory_and_a_path_under_a_file_are_refused(tmp_path):
    (tmp_path / "plain").write_text("")
    assert refusal(tmp_path) == f"--output {tmp_path} is a directory; expected a file to write"
    assert refusal(tmp_path / "plain" / "out.tsv") == (
        f"--output {tmp_path}/plain/out.tsv: {tmp_path}/plain is a file, not a directory"
    )


def test_a_socket_is_refused(tmp_path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        assert refusal(tmp_path / "sock").endswith("is a socket; expected a file, a FIFO or a character device")


def test_symlinks_are_judged_by_their_final_target(tmp_path):
    (tmp_path / "dangling").symlink_to("/no/such/dir/out.tsv")
    assert refusal(tmp_path / "dangling") == (
        f"--output {tmp_path}/dangling -> /no/such/dir/out.tsv: directory /no/such/dir does not exist"
    )
    (tmp_path / "to_dir").symlink_to(tmp_path)
    assert refusal(tmp_path / "to_dir").endswith(f"-> {tmp_path} is a directory; expected a file to write")
    (tmp_path / "loop").symlink_to("loop")
    assert refusal(tmp_path / "loop") == f"--output {tmp_path}/loop: too many levels of symbolic links"
    (tmp_path / "new_target").symlink_to("sub/../new.tsv")
    (tmp_path / "sub").mkdir()
    check_output_target(str(tmp_path / "new_target"), "--output")  # dangling, but its directory exists


def test_streams_and_our_descriptors_pass_without_being_opened(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no reader: opening it to write would block
    read_end, write_end = os.pipe()
    try:
        for path in (fifo, "/dev/null", "/dev/full", "/dev/stdout", f"/dev/fd/{write_end}"):
            check_output_target(str(path), "--output")
        assert refusal(f"/dev/fd/{read_end}") == (
            f"--output /dev/fd/{read_end}: file descriptor {read_end} is not open for writing"
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert refusal(f"/dev/fd/{write_end}") == f"--output /dev/fd/{write_end}: file descriptor {write_end} is not open"


def unprivileged_refusal(path: Path) -> str:
    """check_output_target's message for a user without root's rights: root passes any
    permission bits, so when we are root a forked child drops to nobody to ask."""
    if os.geteuid() != 0:
        return refusal(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns into pytest
        try:
            os.close(read_end)
            nobody = pwd.getpwnam("nobody")
            os.setgroups([])
            os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
            os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            try:
                check_output_target(str(path), "--output")
                message = "accepted"
            except CommandError as err:
                message = str(err)
            os.write(write_end, message.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        message = answer.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unwritable_directory_and_file_are_refused():
    with tempfile.TemporaryDirectory() as top:  # outside tmp_path, whose parents nobody may not enter
        top = Path(top)
        top.chmod(0o755)
        (top / "ro_dir").mkdir(mode=0o555)
        (top / "ro_file").write_text("old\n")
        (top / "ro_file").chmod(0o444)
        assert unprivileged_refusal(top / "ro_dir" / "out.tsv") == (
            f"--output {top}/ro_dir/out.tsv: {top}/ro_dir is not writable"
        )
        assert unprivileged_refusal(top / "ro_file") == f"--output {top}/ro_file exists and is not writable"
        (top / "ro_dir").chmod(0o755)


# --------------------------------------------------------------------------- open_output: files


def test_a_new_file_appears_whole_only_when_the_block_ends(tmp_path):
    path = tmp_path / "out.tsv"
    with open_output(str(path)) as out:
        out.write("line 0")
        out.write("line 1")
        assert not path.exists()
        (temp,) = tmp_path.iterdir()  # the lines so far are flushed to a temporary file beside it
        assert temp.name.startswith(".out.tsv.") and temp.read_text() == "line 0\nline 1\n"
    assert path.read_text() == "line 0\nline 1\n" and listing(tmp_path) == ["out.tsv"]


def test_an_existing_file_is_replaced_atomically_keeping_its_permissions(tmp_path):
    path = tmp_path / "out.tsv"
    path.write_text("old\n")
    path.chmod(0o640)
    with open_output(str(path)) as out:
        out.write("new")
        assert path.read_text() == "old\n"
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("exception", [KeyboardInterrupt, ValueError, OSError])
def test_an_exception_in_the_block_leaves_the_old_file_and_no_temp(tmp_path, exception):
    path = tmp_path / "out.tsv"
    path.write_text("old\n")
    with pytest.raises(exception):  # the block's own errors pass unchanged
        with open_output(str(path)) as out:
            out.write("new")
            raise exception("stopped")
    assert path.read_text() == "old\n" and listing(tmp_path) == ["out.tsv"]


def test_a_failed_write_is_one_error_and_leaves_the_old_file(tmp_path):
    """A real write error for root too: a file size limit (EFBIG, as ENOSPC on a full disk)."""
    path = tmp_path / "out.tsv"
    path.write_text("old content, longer than the limit\n")
    code = f"""
import resource, signal
from espnet2_ext.fileio.output_target import open_output, OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))
try:
    with open_output({str(path)!r}) as out:
        for i in range(10):
            out.write(f"line {{i}}")
except OutputError as err:
    print(err)
"""
    result = run_python(code)
    assert result.stdout == f"writing to {path} failed: File too large\n" and result.stderr == ""
    assert path.read_text() == "old content, longer than the limit\n" and listing(tmp_path) == ["out.tsv"]


def test_a_chain_of_symlinks_is_written_through_and_stays(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.tsv"
    target.write_text("old\n")
    target.chmod(0o604)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "first").symlink_to("second")  # relative: from the link's own directory
    (tmp_path / "links" / "second").symlink_to("../real/out.tsv")
    write_three(tmp_path / "links" / "first")
    assert os.readlink(tmp_path / "links" / "first") == "second"
    assert os.readlink(tmp_path / "links" / "second") == "../real/out.tsv"
    assert target.read_text() == "line 0\nline 1\nline 2\n" and stat.S_IMODE(target.stat().st_mode) == 0o604
    assert listing(tmp_path / "real") == ["out.tsv"] and listing(tmp_path / "links") == ["first", "second"]


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    (tmp_path / "link").symlink_to("new.tsv")
    write_three(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "new.tsv").read_text() == "line 0\nline 1\nline 2\n"


def test_a_missing_directory_is_not_created_by_open_output_either(tmp_path):
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path}/no/out.tsv: No such file or directory$"):
        write_three(tmp_path / "no" / "out.tsv")
    assert listing(tmp_path) == []


# --------------------------------------------------------------------------- open_output: streams


def test_a_fifo_gets_each_line_as_it_is_written_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    lines = queue.Queue()

    def read() -> None:
        with open(fifo, encoding="utf-8") as stream:
            for line in stream:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    with open_output(str(fifo)) as out:  # waits for the reader, as the shell's > does
        out.write("line 0")
        assert lines.get(timeout=10) == "line 0\n"  # before the block ends
        out.write("line 1")
        assert lines.get(timeout=10) == "line 1\n"
    assert lines.get(timeout=10) is None  # closed at the end
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and listing(tmp_path) == ["fifo"]


def test_a_fifo_whose_reader_left_is_one_error(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # present, so opening to write does not wait
    with pytest.raises(OutputError, match=f"^writing to {fifo} failed: Broken pipe$"):
        with open_output(str(fifo)) as out:
            os.close(reader)
            out.write("line 0")
    assert listing(tmp_path) == ["fifo"]


def test_dev_null_takes_everything_and_dev_full_is_one_error():
    write_three("/dev/null")
    with pytest.raises(OutputError, match="^writing to /dev/full failed: No space left on device$"):
        write_three("/dev/full")
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode) and stat.S_ISCHR(os.lstat("/dev/null").st_mode)


@pytest.mark.parametrize("name", ["/dev/fd/{}", "/proc/self/fd/{}", f"/proc/{os.getpid()}/fd/{{}}"])
def test_dev_fd_of_a_pipe_is_written_directly_line_by_line(name):
    read_end, write_end = os.pipe()  # what bash's >(cmd) passes as /dev/fd/N
    try:
        with open_output(name.format(write_end)) as out:
            out.write("line 0")
            assert os.read(read_end, 100) == b"line 0\n"
            out.write("line 1")
        assert os.read(read_end, 100) == b"line 1\n"
    finally:
        os.close(read_end)
        os.close(write_end)  # still ours: open_output wrote through a duplicate


def test_dev_fd_of_a_file_opened_to_append_is_appended_to(tmp_path):
    """As ``translate --output /dev/stdout >> log`` would: reopening would truncate the log."""
    path = tmp_path / "log"
    path.write_text("old\n")
    with open(path, "a", encoding="utf-8") as log:
        write_three(f"/dev/fd/{log.fileno()}")
    assert path.read_text() == "old\nline 0\nline 1\nline 2\n"


# --------------------------------------------------------------------------- open_output: stdout


@pytest.mark.parametrize("path", [None, "/dev/stdout"])
def test_stdout_gets_the_lines(capsys, path):
    write_three(path)
    assert capsys.readouterr().out == "line 0\nline 1\nline 2\n"


STDOUT_PROGRAM = """
import sys
from espnet2_ext.fileio.output_target import open_output
from espnet2_ext.utils.cli import command

@command()
def main(argv=None):
    try:
        with open_output(None) as out:
            for i in range(3):
                out.write(f"line {i}")
    except BrokenPipeError:
        return 141

sys.exit(main())
"""


def test_stdout_on_a_full_device_is_one_error_line_and_status_1():
    with open("/dev/full", "w") as full:
        result = run_python(STDOUT_PROGRAM, stdout=full)
    assert result.returncode == 1
    assert result.stderr == "ERROR: writing to stdout failed: No space left on device\n"  # no "Exception ignored"


def test_stdout_whose_reader_left_raises_broken_pipe_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = run_python(STDOUT_PROGRAM, stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == ""


def test_an_empty_path_is_refused():
    assert refusal("") == "--output '' (empty) is not a file name"
