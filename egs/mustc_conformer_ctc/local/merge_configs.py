#!/usr/bin/env python3
"""Write BASE.yaml updated with OVERRIDE.yaml: nested mappings merge, other values replace.

Fine-tuning reuses the trained model's saved config (architecture, data, tokens)
and changes only what ``finetune.yaml`` names, so the architecture is written once.
ESPnet's bookkeeping entries of a saved config, which are no training options,
are left out so the result is a valid ``--config``. The output is written whole
or not at all.

Usage:
    python local/merge_configs.py --base_config exp/st/config.yaml \
        --override_config conf/finetune.yaml --out exp/st_finetune/finetune_config.yaml
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_file, command

ESPNET_BOOKKEEPING = ("required", "version", "distributed")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML mapping (an empty file is an empty one)."""
    try:
        return read_yaml_mapping(path, empty_ok=True)
    except YamlFileError as err:
        raise CommandError(str(err)) from None


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base_config", type=Path, required=True, help="the trained model's config.yaml")
    parser.add_argument("--override_config", type=Path, required=True, help="what to change, e.g. conf/finetune.yaml")
    parser.add_argument("--out", type=Path, required=True, help="merged config to write")
    return parser


@command(OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    check_output_file(args.out, "--out")
    merged = merge(read_mapping(args.base_config), read_mapping(args.override_config))
    options = {k: v for k, v in merged.items() if k not in ESPNET_BOOKKEEPING}
    write_text_atomically(args.out, yaml.safe_dump(options, allow_unicode=True, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())
