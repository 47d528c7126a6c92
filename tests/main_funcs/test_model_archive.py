"""Opening packed models: good archives load, bad ones are named before anything is built."""

import argparse
import errno
import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from espnet2.main_funcs.pack_funcs import unpack

from espnet2_ext.bin import pack_model, translate
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs import model_archive
from espnet2_ext.main_funcs.model_archive import ModelArchiveError, breaking_part, installed_version, open_model
from espnet2_ext.simultaneous.incremental_features import load_global_cmvn
from espnet2_ext.tasks.model_building import UnreadableWeightsError, load_failure_reason, load_st_model

SEARCH = dict(beam_size=2, no_repeat_ngram_size=0, maxlen_b=8)
CONFIG = "exp_abs/config.yaml"
WEIGHTS = "exp_abs/1epoch.pth"


@pytest.fixture(scope="module")
def zip_path(tiny_exps, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "model.zip"
    exp = tiny_exps / "exp_abs"
    argv = ["--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"), "--outpath", str(path)]
    assert pack_model.main(argv) == 0
    return path


def hypotheses(translator: Speech2Translation) -> list:
    torch.manual_seed(1)
    (hyps,) = translator.translate_features(torch.randn(1, 100, 80), torch.tensor([100]))
    return [(hyp.text, hyp.token_ids, hyp.score) for hyp in hyps]


def rewrite(source: Path, target: Path, edit=None, drop=()) -> Path:
    """Copy a zip, dropping members and passing each (name, bytes) through ``edit``."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            if info.filename not in drop:
                data = zin.read(info)
                zout.writestr(info, edit(info.filename, data) if edit else data)
    return target


def edit_yaml(member: str, change):
    def edit(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        content = yaml.safe_load(data)
        change(content)
        return yaml.safe_dump(content).encode()

    return edit


def test_zip_and_unpacked_directories_translate_like_the_exp_dir(tiny_exps, zip_path, tmp_path):
    reference = hypotheses(Speech2Translation(tiny_exps / CONFIG, tiny_exps / WEIGHTS, **SEARCH))
    assert reference and reference[0][1], "an empty hypothesis would make the comparison weak"
    from_zip = Speech2Translation.from_pretrained(zip_path, cache_dir=tmp_path / "cache", **SEARCH)
    assert hypotheses(from_zip) == reference
    unzipped = tmp_path / "unzipped"  # member names in the config, resolved against the directory
    zipfile.ZipFile(zip_path).extractall(unzipped)
    assert hypotheses(Speech2Translation.from_pretrained(unzipped, **SEARCH)) == reference
    espnet_unpacked = tmp_path / "espnet"  # absolute paths written by ESPnet's unpack
    unpack(zip_path, espnet_unpacked)
    assert hypotheses(Speech2Translation.from_pretrained(espnet_unpacked, **SEARCH)) == reference


def test_zip_is_extracted_once_and_partial_extractions_are_ignored(zip_path, tmp_path):
    cache = tmp_path / "cache"
    first = open_model(zip_path, cache)
    (extracted,) = [p for p in cache.iterdir()]
    assert first.model_file == extracted / WEIGHTS and first.config["bpemodel"] == str(extracted / "spm/tgt.model")
    marker = extracted / "marker"
    marker.touch()
    assert open_model(zip_path, cache).model_file == first.model_file and marker.exists()
    shutil.rmtree(extracted)
    (cache / f".{extracted.name}.partial").mkdir()  # what a killed extraction leaves
    assert open_model(zip_path, cache).model_file.is_file()


def test_packed_version_compatibility():
    assert breaking_part("0.1.3") == (0, 1) and breaking_part("1.4.0") == (1,)
    assert breaking_part("0.2.0") > breaking_part("0.1.9") and not breaking_part("1.9.0") > breaking_part("1.0.0")


def newer_version() -> str:
    major, minor = (int(part) for part in installed_version().split(".")[:2])
    return f"0.{minor + 1}.0" if major == 0 else f"{major + 1}.0.0"


BAD_ARCHIVES = {
    "truncated": (lambda src, dst: dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2]),
                  "is not a readable zip archive (truncated or corrupt?)"),
    "not a zip": (lambda src, dst: dst.write_text("hello"), "is not a readable zip archive"),
    # Without its end record, zipfile finds the one of the last member, itself a zip (npz, torch's .pth).
    "tail cut": (lambda src, dst: dst.write_bytes(src.read_bytes()[:-60]),
                 "is not a readable zip archive (truncated or corrupt?)"),
    "no meta.yaml": (lambda src, dst: rewrite(src, dst, drop={"meta.yaml"}), "has no meta.yaml"),
    "meta without files": (
        lambda src, dst: rewrite(src, dst, edit_yaml("meta.yaml", lambda m: m.pop("files"))),
        "meta.yaml must name yaml_files.st_train_config and files.st_model_file",
    ),
    "weights missing": (lambda src, dst: rewrite(src, dst, drop={WEIGHTS}), f"meta.yaml names {WEIGHTS}, which is not"),
    "unknown encoder": (
        lambda src, dst: rewrite(src, dst, edit_yaml(CONFIG, lambda c: c.update(encoder="conformer"))),
        "names encoder 'conformer'; this package provides ctc_compress_conformer",
    ),
    "not our config": (
        lambda src, dst: rewrite(src, dst, edit_yaml(CONFIG, lambda c: c.pop("src_token_list"))),
        "lacks src_token_list",
    ),
    "SentencePiece model missing": (
        lambda src, dst: rewrite(src, dst, drop={"spm/src.model"}),
        "the config's src_bpemodel is spm/src.model, which is not in the archive",
    ),
    "newer version": (
        lambda src, dst: rewrite(
            src, dst, edit_yaml("meta.yaml", lambda m: m.update(mustc_conformer_ctc=newer_version()))
        ),
        "newer than and incompatible with the installed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_bad_archive_is_named_with_its_problem(zip_path, tmp_path, case):
    make, message = BAD_ARCHIVES[case]
    bad = tmp_path / "bad.zip"
    make(zip_path, bad)
    with pytest.raises(ModelArchiveError) as caught:
        open_model(bad, tmp_path / "cache")
    assert str(caught.value).startswith(str(bad)) and message in str(caught.value), caught.value
    assert not (tmp_path / "cache").exists(), "checked before extracting"


def test_cache_dir_that_cannot_be_written_is_named(zip_path, tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("a file, not a directory")
    for where in (cache, cache / "models"):
        with pytest.raises(ModelArchiveError, match=f"^{zip_path}: cannot extract into the cache directory {where}: "):
            open_model(zip_path, where)


def test_non_utf8_config_is_named_with_its_line_and_offset(zip_path, tmp_path):
    with zipfile.ZipFile(zip_path) as archive:
        config = archive.read(CONFIG)
    bad = rewrite(zip_path, tmp_path / "bad.zip", lambda name, data: data + b"# caf\xe9\n" if name == CONFIG else data)
    with pytest.raises(ModelArchiveError) as caught:
        open_model(bad, tmp_path / "cache")
    line, offset = config.count(b"\n") + 1, len(config) + 5
    assert str(caught.value) == (
        f"{bad}: {CONFIG}:{line}: not UTF-8: byte 0xe9 at byte offset {offset} (column 6): invalid continuation byte"
    )


@pytest.mark.parametrize(
    "meta, message",
    [
        (b"files: [oops\n", "meta.yaml:2:1: not valid YAML: while parsing a flow sequence: expected ',' or ']'"),
        (b"a: 1\n b: 2\n", "meta.yaml:2:3: not valid YAML: mapping values are not allowed here"),
        (b'a: "caf\xc3\xa9"\nb: \x07\n', "meta.yaml:2: not valid YAML: character #x0007: special characters"),
    ],
    ids=["unclosed", "indented", "control character"],
)
def test_bad_yaml_is_one_line_naming_its_place(zip_path, tmp_path, meta, message):
    bad = rewrite(zip_path, tmp_path / "bad.zip", lambda name, data: meta if name == "meta.yaml" else data)
    with pytest.raises(ModelArchiveError) as caught:
        open_model(bad, tmp_path / "cache")
    assert str(caught.value).startswith(f"{bad}: {message}") and "\n" not in str(caught.value), caught.value


def test_corrupt_member_is_caught_while_extracting_and_leaves_no_cache(zip_path, tmp_path):
    data = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(WEIGHTS)
    middle = info.header_offset + 100 + info.compress_size // 2  # inside the member's data
    data[middle] ^= 0xFF
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ModelArchiveError, match=r"bad\.zip: corrupt archive .*CRC"):
        open_model(bad, cache)
    assert list(cache.iterdir()) == []


def test_missing_model_is_reported_before_any_audio_is_read(tmp_path, capsys):
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    code = translate.main(["--model", str(tmp_path / "none.zip"), str(wav)])
    err = capsys.readouterr().err
    assert code == 1 and err == f"ERROR: model {tmp_path / 'none.zip'} not found\n"


def test_weights_that_do_not_fit_the_config_are_refused(zip_path, tmp_path):
    def drop_first_parameter(name: str, data: bytes) -> bytes:
        return _without_first_parameter(data, tmp_path) if name == WEIGHTS else data

    bad = rewrite(zip_path, tmp_path / "bad.zip", drop_first_parameter)
    with pytest.raises(ValueError, match=r"does not fit the model its config describes: 1 missing parameters"):
        Speech2Translation.from_pretrained(bad, cache_dir=tmp_path / "cache", **SEARCH)


def _without_first_parameter(data: bytes, tmp_path: Path) -> bytes:
    path = tmp_path / "weights.pth"
    path.write_bytes(data)
    state = torch.load(path, weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, path)
    return path.read_bytes()


# --------------------------------------------------------------------------- weights torch cannot load
# Speech2Translation.from_pretrained turns the loader's UnreadableWeightsError into
# PackedModel.unreadable_weights(err.reason); here both halves are called as it calls them.

STATS = "stats/train/feats_stats.npz"


class _Planted:
    """A booby-trapped pickle: loading it unrestricted calls ``os.system``, which touches ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _truncated(name: str, data: bytes) -> bytes:
    return data[: len(data) // 2] if name == WEIGHTS else data


def _planted_weights(marker: Path):
    def edit(name: str, data: bytes) -> bytes:
        if name != WEIGHTS:
            return data
        buffer = io.BytesIO()
        torch.save({"encoder.embed.weight": torch.zeros(2), "trap": _Planted(marker)}, buffer)
        return buffer.getvalue()

    return edit


def _load_error(packed) -> UnreadableWeightsError:
    """What building the model raises (Speech2Translation builds it with ``load_st_model``)."""
    with pytest.raises(UnreadableWeightsError) as caught:
        load_st_model(argparse.Namespace(**packed.config), packed.model_file)
    return caught.value


@pytest.mark.parametrize("case", ["truncated", "planted code"])
def test_unreadable_weights_in_a_zip_are_one_line_naming_the_member_and_leave_no_cache(zip_path, tmp_path, case):
    marker = tmp_path / "marker"
    edit = _truncated if case == "truncated" else _planted_weights(marker)
    bad = rewrite(zip_path, tmp_path / "bad.zip", edit)
    cache = tmp_path / "cache"
    packed = open_model(bad, cache)  # the member itself is intact: extracting succeeds
    assert packed.extraction is not None and packed.extraction.parent == cache and packed.model_member == WEIGHTS

    error = packed.unreadable_weights(_load_error(packed).reason)
    expected = {
        "truncated": "RuntimeError: PytorchStreamReader failed reading zip archive",
        "planted code": "UnpicklingError: Trying to load unsupported GLOBAL posix.system",
    }[case]
    assert str(error).startswith(f"{bad}: member {WEIGHTS}: not a readable PyTorch weights file ({expected}")
    assert "\n" not in str(error) and str(cache) not in str(error), error
    assert not marker.exists(), "code planted in the weights ran"
    assert [p for p in cache.iterdir()] == [], "the extraction is discarded, hidden leftovers too"
    assert open_model(bad, cache).model_file.is_file(), "a retry extracts again"


def test_unreadable_weights_in_a_directory_name_the_file_and_keep_the_directory(zip_path, tmp_path):
    unzipped = tmp_path / "unzipped"
    zipfile.ZipFile(rewrite(zip_path, tmp_path / "bad.zip", _truncated)).extractall(unzipped)
    packed = open_model(unzipped)
    assert packed.extraction is None
    error = packed.unreadable_weights(_load_error(packed).reason)
    assert str(error).startswith(f"{unzipped / WEIGHTS}: not a readable PyTorch weights file (RuntimeError: ")
    assert (unzipped / WEIGHTS).is_file() and (unzipped / "meta.yaml").is_file(), "the user's files are kept"


def test_extraction_that_cannot_be_discarded_is_named(zip_path, tmp_path, monkeypatch):
    bad = rewrite(zip_path, tmp_path / "bad.zip", _truncated)
    packed = open_model(bad, tmp_path / "cache")

    def read_only_cache(*args, **kwargs):  # a shared cache we may not write (chmod binds no root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(model_archive.tempfile, "mkdtemp", read_only_cache)
    error = packed.unreadable_weights("RuntimeError: truncated")
    assert str(error) == (
        f"{bad}: member {WEIGHTS}: not a readable PyTorch weights file (RuntimeError: truncated); "
        f"remove its extraction {packed.extraction} (Permission denied) before retrying"
    )
    assert packed.model_file.is_file()


def test_torch_reason_is_one_line_and_keeps_weights_only_s_words(tmp_path):
    path, marker = tmp_path / "planted.pth", tmp_path / "marker"
    torch.save({"trap": _Planted(marker)}, path)
    with pytest.raises(pickle.UnpicklingError) as caught:
        torch.load(path, weights_only=True)
    assert str(caught.value).count("\n") > 3, "torch's text is long: the point of reducing it"
    reason = load_failure_reason(caught.value)
    assert reason == "UnpicklingError: Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
    assert "weights_only=False" not in reason  # torch's advice would run the planted code
    assert load_failure_reason(EOFError()) == "EOFError"
    assert not marker.exists()
    torch.load(path, weights_only=False)  # what that advice does: the trap is real
    assert marker.exists()


def test_cmvn_stats_holding_a_pickle_run_no_code(zip_path, tmp_path):
    """GlobalMVN reads the packed stats with ``np.load``, whose ``allow_pickle`` is False."""
    marker = tmp_path / "marker"

    def plant(name: str, data: bytes) -> bytes:
        if name != STATS:
            return data
        buffer = io.BytesIO()
        trap = np.array([_Planted(marker)], dtype=object)
        np.savez(buffer, count=trap, sum=np.full(80, 1.0), sum_square=np.full(80, 5.0))
        return buffer.getvalue()

    bad = rewrite(zip_path, tmp_path / "bad.zip", plant)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        Speech2Translation.from_pretrained(bad, cache_dir=tmp_path / "cache", **SEARCH)
    assert not marker.exists(), "code planted in the CMVN statistics ran"


# --------------------------------------------------------------------------- global CMVN statistics


@pytest.fixture(scope="module")
def zip_with_gcmvn(tiny_exps, tmp_path_factory) -> tuple[Path, str]:
    """exp_abs packed with FBK-style statistics of its own: (the zip, the statistics' member)."""
    work = tmp_path_factory.mktemp("gcmvn")
    np.savez(work / "gcmvn.npz", mean=np.linspace(-3, 3, 80), std=np.linspace(0.5, 2, 80))
    path = work / "model.zip"
    exp = tiny_exps / "exp_abs"
    argv = ["--exp_dir", str(exp), "--model_file", str(exp / "1epoch.pth"), "--outpath", str(path),
            "--global_cmvn", str(work / "gcmvn.npz")]
    assert pack_model.main(argv) == 0
    with zipfile.ZipFile(path) as archive:
        return path, yaml.safe_load(archive.read("meta.yaml"))[model_archive.GLOBAL_CMVN_KEY]


def test_archive_packed_without_global_cmvn_opens_with_none(zip_path, tmp_path):
    """Archives packed before the statistics were (meta.yaml without the key) keep opening."""
    assert model_archive.GLOBAL_CMVN_KEY not in yaml.safe_load(zipfile.ZipFile(zip_path).read("meta.yaml"))
    assert open_model(zip_path, tmp_path / "cache").global_cmvn is None


def test_global_cmvn_resolves_in_zips_and_unpacked_directories(zip_with_gcmvn, tmp_path):
    zip_path, member = zip_with_gcmvn
    unzipped, espnet_unpacked = tmp_path / "unzipped", tmp_path / "espnet"
    zipfile.ZipFile(zip_path).extractall(unzipped)
    unpack(zip_path, espnet_unpacked)
    opened = [
        (open_model(zip_path, tmp_path / "cache"), None),
        (open_model(unzipped), unzipped),
        (open_model(espnet_unpacked), espnet_unpacked),
    ]
    for packed, root in opened:
        assert packed.global_cmvn == (root or packed.extraction) / member
        stats = load_global_cmvn(packed.global_cmvn)
        np.testing.assert_array_equal(stats.mean, np.linspace(-3, 3, 80).astype(np.float32))
        np.testing.assert_array_equal(stats.std, np.linspace(0.5, 2, 80).astype(np.float32))


def test_global_cmvn_member_missing_from_the_archive_is_named(zip_with_gcmvn, tmp_path):
    zip_path, member = zip_with_gcmvn
    bad = rewrite(zip_path, tmp_path / "bad.zip", drop={member})
    with pytest.raises(ModelArchiveError) as caught:
        open_model(bad, tmp_path / "cache")
    assert str(caught.value) == f"{bad}: meta.yaml names {member}, which is not in the archive"
    assert not (tmp_path / "cache").exists(), "checked before extracting"

    unzipped = tmp_path / "unzipped"
    zipfile.ZipFile(zip_path).extractall(unzipped)
    (unzipped / member).unlink()
    with pytest.raises(ModelArchiveError) as caught:
        open_model(unzipped)
    assert str(caught.value) == f"{unzipped}: meta.yaml names {member}, which is not in the directory"


def test_global_cmvn_lost_from_a_cached_extraction_is_named(zip_with_gcmvn, tmp_path):
    zip_path, member = zip_with_gcmvn
    cache = tmp_path / "cache"
    extraction = open_model(zip_path, cache).extraction
    (extraction / member).unlink()
    with pytest.raises(ModelArchiveError) as caught:
        open_model(zip_path, cache)
    assert str(caught.value) == f"{zip_path}: {extraction / member} is missing; delete {extraction} and retry"


@pytest.mark.parametrize("value", [["gcmvn.npz"], "", 3], ids=["list", "empty", "number"])
def test_global_cmvn_entry_that_names_no_member_is_refused(zip_with_gcmvn, tmp_path, value):
    zip_path, _ = zip_with_gcmvn
    bad = rewrite(zip_path, tmp_path / "bad.zip",
                  edit_yaml("meta.yaml", lambda meta: meta.update({model_archive.GLOBAL_CMVN_KEY: value})))
    with pytest.raises(ModelArchiveError) as caught:
        open_model(bad, tmp_path / "cache")
    assert str(caught.value) == f"{bad}: meta.yaml's global_cmvn must name a member, got {value!r}"


def test_weights_damaged_in_the_cache_are_named_as_the_cache_s_not_the_zip_s(zip_path, tmp_path):
    cache = tmp_path / "cache"
    packed = open_model(zip_path, cache)
    data = packed.model_file.read_bytes()
    packed.model_file.write_bytes(data[: len(data) // 2])  # the disk, not the zip
    error = packed.unreadable_weights(_load_error(packed).reason)
    assert str(error).startswith(f"{packed.model_file}: not a readable PyTorch weights file (RuntimeError: ")
    assert str(error).endswith(
        f": this copy in the cache is damaged, not {zip_path}'s member {WEIGHTS}, which is intact; "
        "the extraction was removed: run again to extract the zip afresh"
    )
    assert "\n" not in str(error) and [p for p in cache.iterdir()] == []
    assert open_model(zip_path, cache).model_file.read_bytes() == data, "a retry extracts the intact member"


def test_digest_tells_models_apart_the_zip_s_or_a_directory_s_weights(zip_path, tmp_path):
    import hashlib

    packed = open_model(zip_path, tmp_path / "cache")
    assert packed.digest == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    in_place = open_model(packed.extraction)
    assert in_place.digest == hashlib.sha256(in_place.model_file.read_bytes()).hexdigest() != packed.digest
