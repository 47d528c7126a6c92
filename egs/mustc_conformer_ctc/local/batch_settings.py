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
"""

import argparse
import math
import sys
from typing import Dict, List, Optional

import yaml

REQUIRED = ("ngpu", "batch_bins", "accum_grad", "num_iters_per_epoch")


def rescale(config: Dict[str, int], ngpu: int) -> Dict[str, int]:
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


def read_config(path: str) -> Dict[str, int]:
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)} (needed to rescale batches)")
    return config


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training config (YAML)")
    parser.add_argument("--ngpu", type=int, required=True, help="GPUs used (0: CPU)")
    args = parser.parse_args(argv)
    try:
        config = read_config(args.config)
    except (OSError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
