"""Pack a trained model with ESPnet's ``pack`` into a self-contained zip (recipe stage 8).

The archive holds ESPnet's ``st`` contents (``st_train_config``: ``<exp>/config.yaml``,
``st_model_file``: the model), the files inference needs that the config refers to
(``bpemodel``, ``src_bpemodel``, ``normalize_conf.stats_file``), and ESPnet's
``meta.yaml`` with our version added as ``mustc_conformer_ctc``. Given global CMVN
statistics (stage 4's ``feats_stats.npz``, or FBK's ``gcmvn.npz``), which simultaneous
translation normalises a growing prefix with, it holds them too, named by ``meta.yaml``'s
``global_cmvn``; the config's own ``stats_file``, when it is the same file, is that member.
Given stage 9's ``conf/simulate.yaml``, ``meta.yaml``'s ``simultaneous`` holds its keys
shared by every setting (chunk, attention layer, f, ...): what programs running the model
simultaneously take by default (:func:`espnet2_ext.simultaneous.options.packed_settings`).
``espnet2.main_funcs.pack_funcs.unpack(zip, dir)`` gives back the keyword arguments
of :class:`espnet2_ext.inference.Speech2Translation`;
:mod:`espnet2_ext.main_funcs.model_archive` opens and checks it.

Two things ESPnet's ``pack`` does not do are done here, on a copy of its archive:

- ``unpack`` points the config at the unpacked files only where a config value
  equals a member's name, and ``pack`` names members by their path relative to the
  current directory. Absolute or symlinked paths in the config would keep pointing
  at the original files, so the packed config's references are set to the member names.
- ``pack`` has no way to add fields to ``meta.yaml``: our version, what the training
  utterances looked like (:mod:`espnet2_ext.main_funcs.training_utterances`), which sets
  how ``translate`` cuts long audio, the global CMVN statistics' member and the
  simultaneous settings.

Members are named relative to the deepest directory holding all packed files
(ESPnet: the current one), so files outside the recipe dir get relative names too.
Relative paths in the config are read from the current directory, as in training.
The zip is built under temporary names and renamed at the end (:func:`espnet2_ext.fileio.atomic.atomic_path`):
a killed run leaves no partial archive.
"""

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml
from espnet2.main_funcs.pack_funcs import pack
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet2_ext.fileio.atomic import atomic_path
from espnet2_ext.fileio.input_file import not_a_file
from espnet2_ext.fileio.kaldi_table import TableError
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.main_funcs.model_archive import (
    GLOBAL_CMVN_KEY,
    META_KEY,
    REFERENCED_KEYS,
    ConfigKey,
    ModelArchiveError,
    installed_version,
    lookup,
)
from espnet2_ext.main_funcs.training_utterances import META_KEY as TRAINING_KEY
from espnet2_ext.main_funcs.training_utterances import TrainingUtterances, TrainingUtterancesError
from espnet2_ext.simultaneous.incremental_features import CMVNStatsError, load_global_cmvn
from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError


class PackError(Exception):
    """A missing or bad experiment file, or a bad output name."""


# --------------------------------------------------------------------------- inputs


def read_config(path: Path) -> dict:
    if not path.is_file():
        raise PackError(f"training config {path} not found")
    try:
        return read_yaml_mapping(path)
    except YamlFileError as err:
        raise PackError(f"{err} (not a config.yaml written by ESPnet)") from None


def referenced_files(config: dict, config_path: Path) -> dict[ConfigKey, Path]:
    """The inference files the config names (unset keys skipped), each checked to exist."""
    files = {}
    for keys in REFERENCED_KEYS:
        value = lookup(config, keys)
        if value is None:
            continue
        path = Path(value)
        if not path.is_file():
            raise PackError(f"{config_path}: {'.'.join(keys)} is {value}, which is not a file")
        files[keys] = path
    return files


def global_cmvn_problem(path: Path, what: str) -> str | None:
    """Why ``path`` (given as ``what``: an option, or a description) holds no global CMVN
    statistics :func:`~espnet2_ext.simultaneous.incremental_features.load_global_cmvn`
    reads (a sentence starting with ``what`` and naming ``path``); None when it does."""
    problem = not_a_file(path, what, "an .npz file (ESPnet's feats_stats.npz or FBK's gcmvn.npz)")
    if problem is not None:
        return problem
    try:
        load_global_cmvn(path)
    except CMVNStatsError as err:  # its message starts with the path
        return f"{what} {err}"
    except OSError as err:
        return f"{what} {path}: {err.strerror or err}"
    return None


def project_version() -> str:
    try:
        return installed_version()
    except ModelArchiveError as err:
        raise PackError(f"{err}; meta.yaml records its version") from None


# --------------------------------------------------------------------------- archive


def archive_root(paths: Iterable[Path]) -> Path:
    """The deepest directory holding all (symlink-resolved) ``paths``."""
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))


def member_name(path: Path, root: Path) -> str:
    """The name ESPnet's ``pack`` gives ``path`` when run from ``root``."""
    return path.resolve().relative_to(root).as_posix()


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """ESPnet's ``pack`` names members relative to the current directory."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def simultaneous_settings(path: Path, config: dict, global_cmvn: Path | None, kind: type[SimulOptions]) -> dict:
    """The keys of stage 9's ``conf/simulate.yaml`` (``kind`` SimulOptions) or stage 10's
    ``conf/stream.yaml`` (``kind`` the streaming options' class) shared by its settings (all but
    ``settings``), checked as simulate checks them (``kind.checked``) and against the model: a
    decoder layer it has, global CMVN statistics packed when they say ``cmvn: global``."""
    try:
        values = read_yaml_mapping(path)
    except YamlFileError as err:
        raise PackError(str(err)) from None
    values.pop("settings", None)
    try:
        options = kind.checked(**values)
    except SimulOptionsError as err:
        raise PackError(f"{path}: {err}") from None
    layers = lookup(config, ("decoder_conf", "num_blocks"))
    if options.reads_attention and isinstance(layers, int) and options.attention_layer >= layers:
        raise PackError(
            f"{path}: attention_layer {options.attention_layer}: the model's decoder has {layers} layers "
            f"(0 to {layers - 1}); name one of them"
        )
    if options.cmvn == "global" and global_cmvn is None:
        raise PackError(f"{path}: cmvn: global needs the global CMVN statistics packed too (--global_cmvn)")
    return values


def add_meta(
    version: str,
    training: TrainingUtterances | None,
    global_cmvn: str | None,
    settings: Mapping[str, dict] | None = None,
) -> Callable[[bytes], bytes]:
    """Add our version, what the training utterances looked like, the global CMVN statistics'
    member name and the programs' settings (``meta.yaml`` key -> settings) to ESPnet's
    ``meta.yaml``, which ``pack`` gives no way to extend."""

    def edit(meta: bytes) -> bytes:
        data = yaml.safe_load(meta)
        data[META_KEY] = version
        if training is not None:
            data[TRAINING_KEY] = training.to_meta()
        if global_cmvn is not None:
            data[GLOBAL_CMVN_KEY] = global_cmvn
        data.update(settings or {})
        return yaml.safe_dump(data).encode()

    return edit


def training_utterances(config: dict, config_path: Path) -> TrainingUtterances | None:
    """What the model's training utterances looked like (their durations from the config's
    speech shape file, the kept training utterances; their margins and pauses from the audio
    of a sample); None, with a note, when the config names no shape file that is there."""
    try:
        training = TrainingUtterances.from_config(config)
    except (TrainingUtterancesError, TableError) as err:
        raise PackError(f"{config_path}: the training utterances: {err}") from None
    if training is None:
        logging.warning(
            "%s names no speech_shape file that exists: the archive holds no training statistics, "
            "so translate cuts long audio with SHAS's MuST-C settings", config_path,
        )
    return training


def point_config_at(members: dict[ConfigKey, str]) -> Callable[[bytes], bytes]:
    """Set each referenced path to its member name, which ``unpack`` then rewrites."""

    def edit(config_text: bytes) -> bytes:
        config = yaml.safe_load(config_text)
        for keys, name in members.items():
            parent = config
            for key in keys[:-1]:
                parent = parent[key]
            parent[keys[-1]] = name
        return yaml_no_alias_safe_dump(config, indent=4, sort_keys=False).encode()

    return edit


def copy_archive(source: Path, target: Path, edits: dict[str, Callable[[bytes], bytes]]) -> None:
    """Copy a zip member by member, passing the members named in ``edits`` through them."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        names = set(zin.namelist())
        missing = sorted(set(edits) - names)
        if missing:
            raise PackError(f"ESPnet's pack wrote no member {missing[0]} (members: {', '.join(sorted(names))})")
        for info in zin.infolist():
            copy = zipfile.ZipInfo(info.filename, info.date_time)
            copy.compress_type, copy.external_attr = info.compress_type, info.external_attr
            if info.filename in edits:
                zout.writestr(copy, edits[info.filename](zin.read(info)))
                continue
            copy.file_size = info.file_size  # lets zipfile choose ZIP64 for files over 2 GiB
            with zin.open(info) as reader, zout.open(copy, "w") as writer:
                shutil.copyfileobj(reader, writer, 1 << 20)


def pack_model(
    exp_dir: Path,
    model_file: Path,
    outpath: Path,
    global_cmvn: Path | None = None,
    settings: Mapping[str, tuple[Path, type[SimulOptions]]] | None = None,
) -> dict[str, str]:
    """Write the archive; returns its ``meta.yaml`` ``files`` and ``yaml_files`` member names,
    and with ``global_cmvn`` (statistics checked to be readable) its member, as ``global_cmvn``.

    ``global_cmvn`` that is the config's ``normalize_conf.stats_file`` (the same file, as
    with ``normalize: global_mvn``) is packed once: ``meta.yaml`` names that member.
    ``settings`` gives the programs' packed defaults, ``meta.yaml`` key -> (a conf, the options'
    class that checks it; :func:`simultaneous_settings`): stage 9's ``conf/simulate.yaml`` under
    ``simultaneous`` (:class:`~espnet2_ext.simultaneous.options.SimulOptions`), stage 10's
    ``conf/stream.yaml`` under ``streaming`` (the streaming options, whose room is above this one).
    """
    if outpath.suffix != ".zip":
        raise PackError(f"the archive must be a .zip file, got {outpath}")
    config_path = exp_dir / "config.yaml"
    config = read_config(config_path)
    if not model_file.is_file():
        raise PackError(f"model file {model_file} not found")
    if global_cmvn is not None and (problem := global_cmvn_problem(global_cmvn, "global CMVN statistics")):
        raise PackError(problem)
    packed = {key: simultaneous_settings(path, config, global_cmvn, kind) for key, (path, kind) in (settings or {}).items()}
    references = referenced_files(config, config_path)
    extra = [global_cmvn] if global_cmvn is not None else []
    root = archive_root([config_path, model_file, *references.values(), *extra])
    members = {keys: member_name(path, root) for keys, path in references.items()}
    contents = {"st_train_config": member_name(config_path, root), "st_model_file": member_name(model_file, root)}
    if global_cmvn is not None:  # the same name as stats_file's member when it is the same file
        contents["global_cmvn"] = member_name(global_cmvn, root)
    edits = {
        "meta.yaml": add_meta(
            project_version(), training_utterances(config, config_path), contents.get("global_cmvn"), packed
        ),
        contents["st_train_config"]: point_config_at(members),
    }

    # Absolute before changing directory: relative paths are relative to the caller's.
    files = {"st_model_file": model_file.resolve()}
    yaml_files = {"st_train_config": config_path.resolve()}
    option = list(dict.fromkeys(path.resolve() for path in [*references.values(), *extra]))
    outpath.parent.mkdir(parents=True, exist_ok=True)
    raw = _temporary_zip(outpath)
    try:
        with working_directory(root):
            pack(files=files, yaml_files=yaml_files, option=option, outpath=raw)
        with atomic_path(outpath) as final:
            copy_archive(raw, final, edits)
    finally:
        raw.unlink(missing_ok=True)
    return contents


def _temporary_zip(outpath: Path) -> Path:
    """ESPnet's own archive, edited into the final one: an absolute hidden name next to
    ``outpath`` (ESPnet picks the format from the ``.zip`` suffix)."""
    fd, name = tempfile.mkstemp(prefix=f".{outpath.stem}.", suffix=".zip", dir=outpath.parent.resolve())
    os.close(fd)
    return Path(name)
