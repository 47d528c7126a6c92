"""Tests for espnet2_ext/fileio/yaml_file.py: every YAML file the project reads fails in one
line that places the problem."""

from pathlib import Path

import pytest
import yaml

from espnet2_ext.fileio.yaml_file import YamlFileError, parse_yaml_mapping, read_yaml_mapping, yaml_problem


def test_a_mapping_is_read(tmp_path: Path):
    path = tmp_path / "conf.yaml"
    path.write_text("batch_bins: 40000\noptim_conf:\n  lr: 0.002\n", encoding="utf-8")
    assert read_yaml_mapping(path) == {"batch_bins": 40000, "optim_conf": {"lr": 0.002}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: 1\nb: [2, 3\n", "conf.yaml:3:1: not valid YAML: while parsing a flow sequence: expected ',' or ']'"),
        (b"a: 1\n  b: 2\n", "conf.yaml:2:4: not valid YAML: mapping values are not allowed here"),
        (b"a: 1\nb: \xff\xfe\n", "conf.yaml:2: not UTF-8: byte 0xff at byte offset 8 (column 4)"),
        (b"a: 1\nb: \x07\n", "conf.yaml:2: not valid YAML: character #x0007: special characters are not allowed"),
        (b"- a\n- b\n", "conf.yaml: expected a YAML mapping of key: value, found a list"),
        (b"just words\n", "conf.yaml: expected a YAML mapping of key: value, found a str"),
        (b"", "conf.yaml: expected a YAML mapping of key: value, found an empty document"),
    ],
    ids=["syntax", "indentation", "not utf-8", "control character", "list", "scalar", "empty"],
)
def test_bad_documents_are_one_line_placing_the_problem(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "conf.yaml"
    path.write_bytes(content)
    with pytest.raises(YamlFileError) as caught:
        read_yaml_mapping(path)
    assert str(caught.value).startswith(f"{path}:" if message.startswith("conf.yaml:") else str(path))
    assert str(caught.value).replace(str(path), "conf.yaml").startswith(message), caught.value
    assert "\n" not in str(caught.value)


def test_an_empty_file_may_be_an_empty_mapping(tmp_path: Path):
    path = tmp_path / "override.yaml"
    path.write_text("# nothing to change\n", encoding="utf-8")
    assert read_yaml_mapping(path, empty_ok=True) == {}


def test_missing_and_unreadable_files(tmp_path: Path):
    with pytest.raises(YamlFileError, match="^no such file .*nope.yaml$"):
        read_yaml_mapping(tmp_path / "nope.yaml")
    with pytest.raises(YamlFileError, match=f"^cannot read {tmp_path}: Is a directory$"):
        read_yaml_mapping(tmp_path)


def test_a_fragment_is_placed_in_its_file():
    """A piece of a longer file, starting at its line 40: the error names the file's line."""
    fragment = "- {duration: 1.0,\n   offset: [0.5, wav: a.wav}\n"
    try:
        yaml.safe_load(fragment)
    except yaml.YAMLError as err:
        problem = yaml_problem("train.yaml", fragment, err, first_line=40)
    assert problem.startswith("train.yaml:41:28: not valid YAML: ")


def test_bytes_from_an_archive_are_named_as_given():
    with pytest.raises(YamlFileError, match=r"^meta\.yaml:1:5: not valid YAML: mapping values"):
        parse_yaml_mapping(b"a: b: c\n", "meta.yaml")
