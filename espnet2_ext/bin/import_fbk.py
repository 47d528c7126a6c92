#!/usr/bin/env python3
"""Turn one of FBK's published Conformer checkpoints into a model zip for ``translate``.

The zip is used exactly like the one recipe stage 8 packs (``translate --model``,
``Speech2Translation.from_pretrained``). fairseq and omegaconf are not needed, and
the checkpoint is unpickled with a restricted class lookup (no code from it runs).
See :mod:`espnet2_ext.main_funcs.fbk_import` for the mapping.

Usage:
    python -m espnet2_ext.bin.import_fbk --checkpoint ckp.pt --config config.yaml \\
        --tgt_spm tgtdict.model --tgt_dict tgtdict.txt \\
        --src_spm srcdict.model --src_dict srcdict.txt --out model.zip [--gcmvn gcmvn.npz]
"""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2_ext.main_funcs.fbk_import import FBKImportError, import_fbk
from espnet2_ext.main_funcs.model_packing import global_cmvn_problem
from espnet2_ext.utils.cli import ArgumentParser, CommandError, check_output_file, command

FILES = (
    ("checkpoint", "FBK-fairseq checkpoint (ckp.pt)"),
    ("config", "FBK's data config.yaml (feature transforms)"),
    ("tgt_spm", "target SentencePiece model (tgtdict.model)"),
    ("tgt_dict", "target fairseq dictionary (tgtdict.txt)"),
    ("src_spm", "source SentencePiece model (srcdict.model)"),
    ("src_dict", "source fairseq dictionary (srcdict.txt)"),
    ("out", "model zip to write"),
)


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], config_option=False)
    for name, help_text in FILES:  # FBK's README spells them with hyphens: both are accepted
        spellings = dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}"])
        parser.add_argument(*spellings, dest=name, required=True, help=help_text)
    parser.add_argument(
        "--gcmvn", type=Path, default=None,
        help="FBK's global CMVN statistics (gcmvn.npz: mean, std), packed for simultaneous translation",
    )
    return parser


@command(FBKImportError)
def main(argv: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    check_output_file(args.out, "--out")  # before the minutes an import of a full-size model takes
    if args.gcmvn is not None and (problem := global_cmvn_problem(args.gcmvn, "--gcmvn")):
        raise CommandError(problem)
    out = import_fbk(**{name: Path(getattr(args, name)) for name, _ in FILES}, gcmvn=args.gcmvn)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
