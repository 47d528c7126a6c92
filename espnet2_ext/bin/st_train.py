#!/usr/bin/env python3
"""Train the CTC-compressing ST model: ESPnet's st_train with our task."""

from collections.abc import Sequence

from espnet2.utils import config_argparse

from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask


def get_parser() -> config_argparse.ArgumentParser:
    return STCTCCompressTask.get_parser()


def main(cmd: Sequence[str] | None = None) -> None:
    """Run training; ``cmd`` is an argv list (for tests), default sys.argv."""
    STCTCCompressTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
