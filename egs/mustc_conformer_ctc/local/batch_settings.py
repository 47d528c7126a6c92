#!/usr/bin/env python3
"""Rescale a training config's batch settings to the GPUs at hand.

The config describes one reference set-up (its ``ngpu`` key; FBK: 4 GPUs,
``batch_bins`` over all of them, ``accum_grad`` 2), which fixes the data per
update: ``batch_bins * accum_grad``. With K GPUs this keeps that product and
the per-GPU batch: ``accum_grad`` becomes ``ceil(reference GPU batches / K)``
and ``batch_bins`` (ESPnet's total over all GPUs) is what remains per step.
``num_iters_per_epoch`` counts mini-batches in ESPnet, so it is rescaled too,
to keep the same number of updates between validations. CPU (K = 0) counts as
one device. Prints the ESPnet options; logs the arithmetic on stderr.

Usage:
    python local/batch_settings.py --train_config conf/train.yaml --ngpu 2
"""

import math
import sys
from collections.abc import Sequence
from pathlib import Path


from espnet2_ext.fileio.yaml_file import YamlFileError, read_yaml_mapping
from espnet2_ext.utils.cli import ArgumentParser, CommandError, command

REQUIRED = ("ngpu", "batch_bins", "accum_grad", "num_iters_per_epoch")


def rescale(config: dict[str, int], ngpu: int) -> dict[str, int]:
    """Batch options for ``ngpu`` devices with the config's data per update."""
    devices = max(ngpu, 1)
    reference_devices = max(int(config["ngpu"]), 1)
    per_update = int(config["batch_bins"]) * int(config["accum_grad"])
    device_batches = int(config["accum_grad"]) * reference_devices
    accum_grad = math.ceil(device_batches / devices)
    updates_per_epoch = int(config["num_iters_per_epoch"]) // int(config["accum_grad"])
    return dict(
        batch_bins=per_update // accum_grad,
        accum_grad=accum_grad,
        num_iters_per_epoch=updates_per_epoch * accum_grad,
    )


def read_config(path: Path) -> dict[str, int]:
    """The training config's batch keys, each checked to be there."""
    try:
        config = read_yaml_mapping(path, empty_ok=True)
    except YamlFileError as err:
        raise CommandError(str(err)) from None
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise CommandError(f"{path}: missing key(s) {', '.join(missing)} (needed to rescale batches)")
    return config


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_config", type=Path, required=True, help="training config (YAML) to rescale")
    parser.add_argument("--ngpu", type=int, required=True, help="GPUs used (0: CPU)")
    return parser


@command(OSError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    if args.ngpu < 0:
        raise CommandError(f"--ngpu must be >= 0, got {args.ngpu}")
    config = read_config(args.train_config)
    new = rescale(config, args.ngpu)
    per_device = new["batch_bins"] // max(args.ngpu, 1)
    print(
        f"batch settings for ngpu={args.ngpu}: batch_bins={new['batch_bins']} ({per_device} per device) "
        f"x accum_grad={new['accum_grad']} = {new['batch_bins'] * new['accum_grad']} bins per update "
        f"(config: {config['batch_bins']} x {config['accum_grad']} on {config['ngpu']} GPUs); "
        f"num_iters_per_epoch={new['num_iters_per_epoch']}",
        file=sys.stderr,
    )
    print(" ".join(f"--{key} {value}" for key, value in new.items()))


if __name__ == "__main__":
    sys.exit(main())
