"""How our programs parse options and fail: bad input or options end as one ``ERROR:``
line and exit status 1.

Every program parses with :class:`ArgumentParser` (ESPnet's ``--config`` parser whose
errors raise :class:`CommandError` and which refuses unknown config keys, naming the
file, line and key), checks its outputs with :func:`check_output_file` /
:func:`check_output_dir` before any work, and wraps its ``main`` in :func:`command`,
which turns :class:`CommandError` (and the library errors it names) into one line.
Options are spelled as ESPnet spells them: ``--data_dir``, ``--exp_dir``, ...

A long-running program also says how to resume when it is stopped: with
``command(on_interrupt=...)``, Ctrl-C and SIGTERM unwind it like an exception (its
``finally`` blocks stop workers and remove temp files) and end as one
``INTERRUPTED`` line instead of a ``KeyboardInterrupt`` traceback.
"""

import argparse
import functools
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

import yaml
from espnet2.utils import config_argparse

from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping

Main = Callable[[Sequence[str] | None], int | None]


class CommandError(Exception):
    """Bad input or options; :func:`command` prints the message as one ``ERROR:`` line."""


class ArgumentParser(config_argparse.ArgumentParser):
    """ESPnet's parser (``--config file.yaml`` sets any option by its underscored name),
    made strict: its errors raise :class:`CommandError`, and the config is checked first.

    A config key that is no option is refused naming the file, the line and the key
    (ESPnet names neither the line nor the options there are); a string value goes
    through the option's ``type`` and ``choices`` as on the command line (ESPnet
    passes YAML values unchecked, so ``max_frames: none`` stayed the string "none");
    an option given in the config no longer counts as missing when it is
    ``required`` (ESPnet's parser asks for it on the command line anyway).

    ``config_option=False`` leaves ``--config`` to the program (``import_fbk``'s
    ``--config`` is FBK's data config, as FBK's instructions spell it).

    Options are matched whole (``allow_abbrev=False``): argparse would take ``--beam``
    for ``--beam_size``, and a later ``--beam_width`` would turn it into an error.
    """

    def __init__(self, *args: Any, config_option: bool = True, **kwargs: Any):
        if config_option:
            super().__init__(*args, allow_abbrev=False, **kwargs)
        else:  # ESPnet's __init__ only adds --config
            argparse.ArgumentParser.__init__(self, *args, allow_abbrev=False, **kwargs)
        self.config_option = config_option

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if not self.config_option:  # past ESPnet's, which would read --config as options
            return argparse.ArgumentParser.parse_known_args(self, args, namespace)
        pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        pre.add_argument("--config")
        config = pre.parse_known_args(args)[0].config
        if config is not None:
            values = self._read_config(Path(config))
            for action in self._actions:
                if action.dest in values:
                    action.required = False
            self.set_defaults(**values)
        return super().parse_known_args(args, namespace)

    def given_on_command_line(self, args: Sequence[str] | None = None) -> set[str]:
        """The options (their ``dest``) that ``args`` writes out, as opposed to those left at
        their defaults or taken from ``--config``: what outranks any other source of values
        (a program's settings file, a model's packed defaults)."""
        unset = object()
        dests = [a.dest for a in self._actions if a.dest not in (argparse.SUPPRESS, "config")]  # ESPnet reads config
        namespace = argparse.Namespace(**{dest: unset for dest in dests})
        parsed, _ = self.parse_known_args(args, namespace)  # argparse fills in defaults only where absent
        return {dest for dest in dests if getattr(parsed, dest) is not unset}

    def _read_config(self, path: Path) -> dict[str, Any]:
        """The config's options, each checked and typed as on the command line."""
        if not path.is_file():
            raise CommandError(f"no such config file {path}")
        try:
            values = read_yaml_mapping(path)
        except YamlFileError as err:
            raise CommandError(str(err)) from None
        node = yaml.compose(path.read_bytes(), Loader=yaml.SafeLoader)  # read above: here for the keys' lines
        actions = {action.dest: action for action in self._actions if action.dest not in ("help", "config")}
        for key, _ in node.value:
            where = f"{path}:{key.start_mark.line + 1}"
            if key.value not in actions:
                raise CommandError(f"{where}: unknown key {key.value!r}; expected one of: {', '.join(sorted(actions))}")
            values[key.value] = self._typed(actions[key.value], values[key.value], where)
        return values

    @staticmethod
    def _typed(action: argparse.Action, value: Any, where: str) -> Any:
        """``value`` converted by the option's ``type`` (strings only) and checked against its ``choices``."""
        if isinstance(value, str) and callable(action.type):
            try:
                value = action.type(value)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as err:
                raise CommandError(f"{where}: {action.dest}: invalid value {value!r} ({err})") from None
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise CommandError(f"{where}: {action.dest}: {value!r} is not one of {choices}")
        return value


# --------------------------------------------------------------------------- outputs


def check_output_file(path: str | Path, option: str, *, parents: bool = True) -> Path:
    """``path`` as a Path, or :class:`CommandError` naming ``option`` when no file could be
    written there (see :func:`output_file_problem`).

    Programs call this before any work, so a typo costs one line, not an hour.
    ``parents=False`` for a program that will not create the file's directory.
    """
    problem = output_file_problem(Path(path), parents=parents)
    if problem is not None:
        raise CommandError(f"{option} {problem}")
    return Path(path)


def output_file_problem(path: Path, *, parents: bool = True) -> str | None:
    """Why no file can be written at ``path`` (a sentence starting with ``path``), or None.

    It is a directory or an existing file we may not write; or its directory cannot
    hold a new file: under a file, unwritable, on a filesystem such as /proc where
    none can be created, or (``parents=False``) missing, where by default it may be
    created.
    """
    if path.is_dir():
        return f"{path} is a directory; expected a file to write"
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} exists and is not writable"
    return _creatable_problem(path.parent, path, parents)


def check_output_dir(path: str | Path, option: str, *, parents: bool = True) -> Path:
    """``path`` as a Path, or :class:`CommandError` when it could not be a writable directory;
    ``parents=False`` refuses one whose parent directory is missing (a typo there should
    not grow a tree)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path} exists and is not a directory")
    if not parents and not path.exists():
        problem = _creatable_problem(path.parent, path, parents=False)
    else:
        problem = _creatable_problem(path, path, parents=True)
    if problem is not None:
        raise CommandError(f"{option} {problem}")
    return path


def _creatable_problem(directory: Path, path: Path, parents: bool) -> str | None:
    """None when ``directory`` exists and takes new files, or (``parents``) its nearest
    existing ancestor takes new directories; else why not, as ``"<path>: ..."``."""
    wanted = Path(os.path.abspath(directory))
    existing = wanted
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{path}: {existing} is a file, not a directory"
    if existing != wanted and not parents:
        return f"{path}: directory {directory} does not exist"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path}: {existing} is not writable"
    return _probe(existing, path, directories=existing != wanted)


def _probe(directory: Path, path: Path, directories: bool) -> str | None:
    """Create and remove a file (a directory) in ``directory``: the only test that holds for
    root (whom ``os.access`` lets write anywhere) and for /proc, /sys or read-only mounts."""
    try:
        if directories:
            os.rmdir(tempfile.mkdtemp(prefix=".write-probe-", dir=directory))
        else:
            fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        what = "directories" if directories else "files"
        return f"{path}: cannot create {what} in {directory} ({err.strerror})"
    return None


class Interrupted(KeyboardInterrupt):
    """A termination signal raised as an exception, so the program cleans up as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: object) -> NoReturn:
    raise Interrupted(signum)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Interrupted` instead of killing the process outright.

    Killed outright, a program leaves its workers' temp files and its semaphores
    (``resource_tracker: There appear to be N leaked semaphore objects``) behind.
    Only the main thread can install handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted_status(err: KeyboardInterrupt, how_to_resume: str) -> int:
    """Print the one ``INTERRUPTED`` line; the status is the shell's 128 + signal number."""
    signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
    name = signal.Signals(signum).name + (" (Ctrl-C)" if signum == signal.SIGINT else "")
    print(f"INTERRUPTED by {name}: {how_to_resume}", file=sys.stderr)
    sys.unraisablehook = _ignore_unraisable  # the one line stays one: see _ignore_unraisable
    return 128 + signum


def _ignore_unraisable(unraisable: object) -> None:
    """After an interrupt, say nothing of errors in finalizers: an object whose construction the
    signal cut short (a progress bar, say) fails in its ``__del__`` as the process ends, and Python
    would print that traceback ("Exception ignored in ...") under the ``INTERRUPTED`` line."""


def command(
    *also: type[Exception], on_interrupt: str | None = None
) -> Callable[[Main], Callable[[Sequence[str] | None], int]]:
    """Wrap ``main(argv)``: :class:`CommandError` and the ``also`` exceptions become
    ``ERROR: <message>`` on stderr and exit status 1; otherwise main's status (None: 0).

    With ``on_interrupt`` (what a re-run does, e.g. "run the same command again to
    resume"), Ctrl-C and SIGTERM print ``INTERRUPTED by <signal>: <on_interrupt>``
    and give status 130 / 143, after main's own cleanup has run.
    """

    def wrap(main: Main) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(main)
        def run(argv: Sequence[str] | None = None) -> int:
            try:
                with sigterm_interrupts() if on_interrupt else nullcontext():
                    status = main(argv)
            except (CommandError, *also) as err:
                print(f"ERROR: {err}", file=sys.stderr)
                return 1
            except KeyboardInterrupt as err:
                if on_interrupt is None:
                    raise
                return _interrupted_status(err, on_interrupt)
            return 0 if status is None else status

        return run

    return wrap
