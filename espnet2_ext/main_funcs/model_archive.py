"""Opening a packed model (stage 8's ``model.zip``, or that zip unpacked) for inference.

The archive is ESPnet's ``pack`` format: ``meta.yaml`` names the training config
(``yaml_files.st_train_config``) and the weights (``files.st_model_file``); the config
names the SentencePiece models and CMVN stats by their member names
(:data:`REFERENCED_KEYS`). ``meta.yaml``'s :data:`GLOBAL_CMVN_KEY`, when there, names the
member holding global CMVN statistics for simultaneous translation (archives packed
before it have none). Everything is checked before a model is built, so a bad
archive fails with one message naming what is wrong, before any audio is read.

A zip is extracted once into a cache directory keyed by its SHA-256 (extracted
under a temporary name, then renamed, so a killed extraction is never reused);
zipfile checks every member's CRC while extracting, which catches corrupt
members. A directory (``unzip model.zip``, or ESPnet's ``unpack``) is used in place.

Weights are only read when the model is built. Weights torch cannot load (a truncated
member, or a pickle ``weights_only`` refuses because it would run code) are reported
by :meth:`PackedModel.unreadable_weights`, naming the zip and the member, not the
cache, and removing the zip's extraction so a retry extracts it again; weights damaged
in the cache after extraction (their CRC is not the member's) are reported as the
cache's, the zip being intact.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espnet2_ext.fileio.yaml_file import YamlFileError, parse_yaml_mapping

PROJECT = "mustc-conformer-ctc"
# meta.yaml key holding the version of this project that packed the archive.
META_KEY = "mustc_conformer_ctc"
# meta.yaml key naming the member that holds global CMVN statistics (ESPnet's feats_stats.npz
# or FBK's gcmvn.npz): simultaneous translation normalises a growing prefix with them.
GLOBAL_CMVN_KEY = "global_cmvn"
# Config keys (nested as tuples) naming files that inference reads.
REFERENCED_KEYS: tuple[tuple[str, ...], ...] = (("bpemodel",), ("src_bpemodel",), ("normalize_conf", "stats_file"))
# Config keys a model cannot be built without.
REQUIRED_CONFIG_KEYS = ("encoder", "encoder_conf", "decoder", "decoder_conf", "token_list", "src_token_list")
CACHE_ENV = "MUSTC_CONFORMER_CTC_CACHE"
# A zip's "end of central directory" record: its signature, and its size before the comment.
_END_RECORD_SIGNATURE = b"PK\x05\x06"
_END_RECORD_SIZE = 22

ConfigKey = tuple[str, ...]


class ModelArchiveError(Exception):
    """A model archive that cannot be used; the message names the archive and the problem."""


@dataclass(frozen=True)
class PackedModel:
    """An opened archive: its training config (file paths resolved), weights and meta data.

    ``model_member`` is the weights' name in the archive (``meta.yaml``'s
    ``files.st_model_file``); ``extraction`` is the zip's extraction in our cache, None
    for a directory used in place (the user's own files, never removed). ``global_cmvn``
    is the global CMVN statistics file (``meta.yaml``'s :data:`GLOBAL_CMVN_KEY`; read it with
    :func:`espnet2_ext.simultaneous.incremental_features.load_global_cmvn`), None for an
    archive packed without them. ``digest`` tells models apart (what a run's results depend
    on): the zip's SHA-256, or for a directory its weights'.
    """

    source: Path
    config: dict[str, Any]
    model_file: Path
    meta: dict[str, Any]
    model_member: str
    extraction: Path | None
    global_cmvn: Path | None
    zip_digest: str | None = None  # the zip's SHA-256; None for a directory

    @functools.cached_property
    def digest(self) -> str:
        """The zip's SHA-256, or the weights' for a directory (hashed when first asked for)."""
        return self.zip_digest if self.zip_digest is not None else _sha256(self.model_file)

    def unreadable_weights(self, reason: str) -> ModelArchiveError:
        """The error for weights torch could not load (``reason``: torch's, on one line),
        naming the archive and the member rather than the cache path.

        A zip's cached extraction is discarded first, so a retry extracts it afresh;
        if it cannot be removed (a read-only cache), the message says to remove it.
        """
        if self.extraction is None:
            return ModelArchiveError(f"{self.model_file}: not a readable PyTorch weights file ({reason})")
        damaged = self._cached_weights_damaged()
        if damaged:  # the zip's member is intact: the copy in the cache was damaged since
            message = (
                f"{self.model_file}: not a readable PyTorch weights file ({reason}): this copy in the cache is "
                f"damaged, not {self.source}'s member {self.model_member}, which is intact"
            )
        else:
            message = f"{self.source}: member {self.model_member}: not a readable PyTorch weights file ({reason})"
        try:
            discard_extraction(self.extraction)
        except OSError as err:
            message += f"; remove its extraction {self.extraction} ({err.strerror or err}) before retrying"
        else:
            message += "; the extraction was removed: run again to extract the zip afresh" if damaged else ""
        return ModelArchiveError(message)

    def _cached_weights_damaged(self) -> bool:
        """Whether the extracted weights differ from the zip's member (its CRC-32)."""
        with _open_zip(self.source) as archive:
            expected = archive.getinfo(self.model_member).CRC
        crc = 0
        try:
            with self.model_file.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    crc = zlib.crc32(block, crc)
        except OSError:
            return True
        return crc != expected


def installed_version() -> str:
    try:
        return importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        raise ModelArchiveError(f"package {PROJECT} is not installed (pip install -e .)") from None


def breaking_part(version: str) -> tuple[int, ...]:
    """The part of a semantic version whose change breaks compatibility (0.x: the minor)."""
    try:
        numbers = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        raise ModelArchiveError(f"unparsable version {version!r}") from None
    return numbers[:2] if numbers[0] == 0 else numbers[:1]


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mustc_conformer_ctc" / "models"


def lookup(config: dict[str, Any], keys: ConfigKey) -> Any:
    """``config[k1][k2]...``, or None where a level is missing."""
    value: Any = config
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def open_model(path: str | Path, cache_dir: str | Path | None = None) -> PackedModel:
    """Check a model zip or unpacked directory and return its resolved contents.

    Args:
        path: ``model.zip`` from stage 8, or a directory it was unpacked into.
        cache_dir: where zips are extracted (default: ``$MUSTC_CONFORMER_CTC_CACHE``,
            else ``~/.cache/mustc_conformer_ctc/models``).

    Raises:
        ModelArchiveError: missing, corrupt or truncated archive; no or bad
            ``meta.yaml``; a member it names is missing; packed by a newer,
            incompatible version; a config without the model's keys or naming an
            unknown encoder.
    """
    path = Path(path)
    if path.is_dir():
        checked = _check(path, _DirectoryMembers(path), "directory")
        return _resolve(path, path, checked, extraction=None)
    if not path.is_file():
        raise ModelArchiveError(f"model {path} not found")
    with _open_zip(path) as archive:
        checked = _check(path, _ZipMembers(archive), "archive")
    digest = _sha256(path)
    root = extract(path, Path(cache_dir) if cache_dir is not None else default_cache_dir(), digest)
    return _resolve(root, path, checked, extraction=root, digest=digest)


class _ZipMembers:
    """The members of an open zip, by name."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive
        self.names = set(archive.namelist())

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> bytes:
        return self.archive.read(name)


class _DirectoryMembers:
    """The files of an unpacked archive; config paths may be member names or absolute (ESPnet's ``unpack``)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, name: str) -> Path:
        return Path(name) if Path(name).is_absolute() else self.root / name

    def has(self, name: str) -> bool:
        return self.path(name).is_file()

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()


@dataclass(frozen=True)
class _Checked:
    """What :func:`_check` read: ``meta.yaml``, the training config, the member names it gives."""

    meta: dict[str, Any]
    config: dict[str, Any]
    model_name: str
    global_cmvn_name: str | None


def _check(source: Path, members: _ZipMembers | _DirectoryMembers, kind: str) -> _Checked:
    """``meta.yaml``, the training config and the member names, every reference checked."""
    meta = _read_meta(source, members.read("meta.yaml") if members.has("meta.yaml") else None)
    config_name, model_name = _meta_members(source, meta)
    global_cmvn_name = _global_cmvn_member(source, meta)
    for name in (config_name, model_name, global_cmvn_name):
        if name is not None and not members.has(name):
            raise ModelArchiveError(f"{source}: meta.yaml names {name}, which is not in the {kind}")
    config = _parse_config(source, config_name, members.read(config_name))
    for keys, value in _references(config).items():
        if not members.has(value):
            raise ModelArchiveError(
                f"{source}: the config's {'.'.join(keys)} is {value}, which is not in the {kind}"
            )
    return _Checked(meta, config, model_name, global_cmvn_name)


def _resolve(
    root: Path, source: Path, checked: _Checked, extraction: Path | None, digest: str | None = None
) -> PackedModel:
    """Point the checked config's file references at the files under ``root``.

    The files are checked to be there, because a cached extraction could have lost some since.
    ``digest``: the zip's; None for a directory (its weights' is taken when asked for).
    """
    files = _DirectoryMembers(root)
    config, model_name, global_cmvn_name = checked.config, checked.model_name, checked.global_cmvn_name
    extra = [global_cmvn_name] if global_cmvn_name is not None else []
    for name in [model_name, *_references(config).values(), *extra]:
        if not files.has(name):
            raise ModelArchiveError(f"{source}: {files.path(name)} is missing; delete {root} and retry")
    for keys, value in _references(config).items():
        parent = lookup(config, keys[:-1]) if len(keys) > 1 else config
        parent[keys[-1]] = str(files.path(value))
    return PackedModel(
        source=source,
        config=config,
        model_file=files.path(model_name),
        meta=checked.meta,
        model_member=model_name,
        extraction=extraction,
        global_cmvn=files.path(global_cmvn_name) if global_cmvn_name is not None else None,
        zip_digest=digest,
    )


def extract(zip_path: Path, cache_dir: Path, digest: str | None = None) -> Path:
    """Extract ``zip_path`` into ``cache_dir/<sha256 prefix>`` unless already there
    (``digest``: the zip's SHA-256, when known).

    A cache that already holds the extraction is only read, so it may be read-only;
    one that cannot take a new extraction (not a directory, not writable, full) is
    a :class:`ModelArchiveError` naming it.
    """
    target = cache_dir / (digest or _sha256(zip_path))[:20]
    if target.is_dir():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    except OSError as err:
        raise _cache_error(zip_path, cache_dir, err) from None
    try:
        logging.info("extracting %s into %s", zip_path, target)
        with _open_zip(zip_path) as archive:
            try:
                archive.extractall(partial)
            except (zipfile.BadZipFile, EOFError) as err:
                raise ModelArchiveError(f"{zip_path}: corrupt archive ({err})") from None
            except OSError as err:
                raise _cache_error(zip_path, cache_dir, err) from None
        try:
            partial.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent extraction winning the race
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def discard_extraction(target: Path) -> None:
    """Remove an extraction from the cache: renamed to a hidden name first, so a
    concurrent :func:`extract` sees it whole or not at all, then deleted.

    Raises:
        OSError: it could not be renamed (a read-only cache); it is then left as it was.
    """
    doomed = Path(tempfile.mkdtemp(prefix=f".{target.name}.discarded.", dir=target.parent))
    try:
        target.rename(doomed)  # onto the empty directory, which POSIX's rename replaces
    except FileNotFoundError:  # already discarded by a concurrent run
        pass
    finally:
        shutil.rmtree(doomed, ignore_errors=True)


def _cache_error(zip_path: Path, cache_dir: Path, err: OSError) -> ModelArchiveError:
    reason = "it is a file" if cache_dir.is_file() else err.strerror or str(err)
    return ModelArchiveError(
        f"{zip_path}: cannot extract into the cache directory {cache_dir}: {reason}; "
        f"give another (--cache_dir or ${CACHE_ENV})"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_zip(path: Path) -> zipfile.ZipFile:
    """The archive, checked to end with its own end record.

    zipfile looks for the end record in the file's last 64 KiB; when the file's end
    is cut off, it finds the one of a zip member stored whole (the stats' ``.npz``,
    torch's ``.pth``) and opens that member as if it were the archive.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as err:
        raise ModelArchiveError(f"{path} is not a readable zip archive (truncated or corrupt?): {err}") from None
    end_record = path.stat().st_size - _END_RECORD_SIZE - len(archive.comment)
    with path.open("rb") as stream:
        stream.seek(max(end_record, 0))
        ends_here = end_record >= 0 and stream.read(4) == _END_RECORD_SIGNATURE
    if not ends_here:
        archive.close()
        raise ModelArchiveError(
            f"{path} is not a readable zip archive (truncated or corrupt?): it does not end with its end record"
        )
    return archive


def _read_meta(source: Path, text: bytes | None) -> dict[str, Any]:
    if text is None:
        raise ModelArchiveError(f"{source} has no meta.yaml: not a model packed by ESPnet's pack (recipe stage 8)")
    meta = _yaml_mapping(source, "meta.yaml", text)
    _check_version(source, meta.get(META_KEY))
    return meta


def _yaml_mapping(source: Path, name: str, text: bytes) -> dict[str, Any]:
    try:
        return parse_yaml_mapping(text, name)
    except YamlFileError as err:
        raise ModelArchiveError(f"{source}: {err}") from None


def _check_version(source: Path, packed: Any) -> None:
    installed = installed_version()
    if packed is None:
        logging.warning("%s: meta.yaml has no %s version; assuming it is compatible", source, META_KEY)
        return
    if breaking_part(str(packed)) > breaking_part(installed):
        raise ModelArchiveError(
            f"{source} was packed by {PROJECT} {packed}, newer than and incompatible with "
            f"the installed {installed}; upgrade {PROJECT}"
        )


def _meta_members(source: Path, meta: dict[str, Any]) -> tuple[str, str]:
    config_name = lookup(meta, ("yaml_files", "st_train_config"))
    model_name = lookup(meta, ("files", "st_model_file"))
    if not isinstance(config_name, str) or not isinstance(model_name, str):
        raise ModelArchiveError(
            f"{source}: meta.yaml must name yaml_files.st_train_config and files.st_model_file "
            "(an ESPnet speech-translation archive)"
        )
    return config_name, model_name


def _global_cmvn_member(source: Path, meta: dict[str, Any]) -> str | None:
    """The member ``meta.yaml`` names as the global CMVN statistics; None when it names none."""
    name = meta.get(GLOBAL_CMVN_KEY)
    if name is not None and (not isinstance(name, str) or not name):
        raise ModelArchiveError(f"{source}: meta.yaml's {GLOBAL_CMVN_KEY} must name a member, got {name!r}")
    return name


def _parse_config(source: Path, name: str, text: bytes) -> dict[str, Any]:
    # Imported here (torch), which packing does not need. Not the task's encoder_choices:
    # ESPnet's task registry imports g2p_en and nltk, which try to download data.
    from espnet2_ext.tasks.model_building import CLASSES

    config = _yaml_mapping(source, name, text)
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise ModelArchiveError(f"{source}: {name} lacks {', '.join(missing)}: not a training config of this model")
    encoders = CLASSES["encoder"]
    if config["encoder"] not in encoders:
        raise ModelArchiveError(
            f"{source}: {name} names encoder {config['encoder']!r}; this package provides {', '.join(encoders)}"
        )
    return config


def _references(config: dict[str, Any]) -> dict[ConfigKey, str]:
    """The config's referenced file paths that are set."""
    return {keys: value for keys in REFERENCED_KEYS if isinstance(value := lookup(config, keys), str)}
