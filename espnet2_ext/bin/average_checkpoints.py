#!/usr/bin/env python3
"""Average epoch checkpoints of an ESPnet experiment: around the best one (FBK) or the n best.

FBK averages the ``--num`` checkpoints nearest in epoch number to the best one
(the best epoch and its neighbours); ESPnet averages the ``--num`` best by a
criterion. Both read ESPnet's reporter from ``<exp>/checkpoint.pth`` and use only
the ``<N>epoch.pth`` files that still exist (ESPnet deletes those outside its kept
n-best); with fewer than ``--num`` left, the ones found are averaged and a warning
is logged. ``--epochs`` averages an explicit list instead.

Float tensors are averaged. Integer buffers (BatchNorm's ``num_batches_tracked``)
are summed, as ESPnet's ``average_nbest_models`` does.

Writes the averaged state dict (default ``<exp>/<phase>.<key>.ave_<num>around.pth``,
``...ave_<num>best.pth`` for ``nbest``) and ``<exp>/averaged.json`` recording what
was averaged; both atomically.

Usage:
    python -m espnet2_ext.bin.average_checkpoints --exp-dir exp/st_train --num 5 \
        [--criterion valid.loss.min] [--mode around|nbest] [--epochs 3,4,5] [--out PATH]
"""

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import torch
from espnet2.train.reporter import Reporter

from espnet2_ext.utils.cli import CommandError, ErrorsRaise, command
from espnet2_ext.utils.fileio import atomic_path, write_text_atomically

_EPOCH_FILE = re.compile(r"(\d+)epoch\.pth")
_NOT_CRITERIA = ("time", "total_count")


class AverageError(CommandError):
    """Bad checkpoints or options."""


class Criterion(NamedTuple):
    """A reporter value and its direction, e.g. ``valid.loss.min``."""

    phase: str
    key: str
    mode: str

    def __str__(self) -> str:
        return f"{self.phase}.{self.key}.{self.mode}"


def parse_criterion(text: str) -> Criterion:
    """``phase.key.mode``; the key may itself contain dots."""
    phase, _, rest = text.partition(".")
    key, _, mode = rest.rpartition(".")
    if not phase or not key or mode not in ("min", "max"):
        raise AverageError(f"--criterion must be phase.key.min or phase.key.max (e.g. valid.loss.min), got {text!r}")
    return Criterion(phase, key, mode)


def parse_epochs(text: str) -> List[int]:
    """``3,4,5`` -> [3, 4, 5]: positive and distinct."""
    try:
        epochs = [int(field) for field in text.split(",")]
    except ValueError:
        raise AverageError(f"--epochs must be comma-separated epoch numbers, got {text!r}") from None
    if any(e < 1 for e in epochs) or len(set(epochs)) != len(epochs):
        raise AverageError(f"--epochs must be distinct positive numbers, got {text!r}")
    return sorted(epochs)


# --------------------------------------------------------------------------- choosing epochs


def load_reporter(exp_dir: Path) -> Reporter:
    """ESPnet's training reporter; the checkpoint's tensors are memory-mapped, not read."""
    path = exp_dir / "checkpoint.pth"
    if not path.is_file():
        raise AverageError(f"{path} not found: choosing epochs by a criterion needs ESPnet's training checkpoint")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(checkpoint, dict) or "reporter" not in checkpoint:
        raise AverageError(f"{path} has no 'reporter': not a checkpoint written by ESPnet's trainer")
    reporter = Reporter()
    reporter.load_state_dict(checkpoint["reporter"])
    return reporter


def ranked_epochs(reporter: Reporter, criterion: Criterion, exp_dir: Path) -> List[int]:
    """All epochs the reporter knows, best first (ties: earlier epoch first)."""
    if not reporter.stats:
        raise AverageError(f"{exp_dir / 'checkpoint.pth'}: the reporter has no finished epoch")
    if not reporter.has(criterion.phase, criterion.key):
        known = [f"{p}.{k}" for p, k in reporter.get_all_keys() if k not in _NOT_CRITERIA]
        raise AverageError(
            f"criterion {criterion}: {exp_dir / 'checkpoint.pth'} records no "
            f"'{criterion.phase}.{criterion.key}' (it has {', '.join(known)})"
        )
    try:
        return reporter.sort_epochs(criterion.phase, criterion.key, criterion.mode)
    except KeyError:
        raise AverageError(
            f"criterion {criterion}: some epochs in {exp_dir / 'checkpoint.pth'} lack "
            f"'{criterion.phase}.{criterion.key}'"
        ) from None


def existing_epochs(exp_dir: Path) -> Set[int]:
    """Epochs whose ``<N>epoch.pth`` is still on disk."""
    return {
        int(match.group(1))
        for match in (_EPOCH_FILE.fullmatch(p.name) for p in exp_dir.iterdir())
        if match
    }


def select_around(best: int, available: Set[int], num: int) -> List[int]:
    """The ``num`` available epochs nearest to ``best`` in epoch number (ties: earlier), ascending.

    >>> select_around(5, {1, 2, 3, 4, 5, 6, 7, 8}, 4)
    [3, 4, 5, 6]
    """
    nearest = sorted(available, key=lambda e: (abs(e - best), e))[:num]
    return sorted(nearest)


def select_nbest(ranked: Sequence[int], available: Set[int], num: int) -> List[int]:
    """The ``num`` best available epochs, ascending."""
    return sorted([e for e in ranked if e in available][:num])


# --------------------------------------------------------------------------- averaging


def average_state_dicts(paths: Sequence[Path]) -> Dict[str, torch.Tensor]:
    """Mean of float tensors, sum of integer ones (ESPnet's rule); one file in memory at a time.

    Floats are accumulated in double precision and cast back to their dtype.
    """
    first = torch.load(paths[0], map_location="cpu", weights_only=True)
    dtypes = {k: v.dtype for k, v in first.items()}
    total = {k: _accumulator(v) for k, v in first.items()}
    del first
    for path in paths[1:]:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.keys() != total.keys():
            different = sorted(set(state) ^ set(total))
            raise AverageError(f"{path} and {paths[0]} hold different parameters (e.g. {different[0]})")
        for k, v in state.items():
            if v.shape != total[k].shape:
                raise AverageError(f"{k} is {tuple(v.shape)} in {path} but {tuple(total[k].shape)} in {paths[0]}")
            total[k] += v
    return {k: (v / len(paths)).to(dtypes[k]) if _is_averaged(dtypes[k]) else v for k, v in total.items()}


def _is_averaged(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _accumulator(tensor: torch.Tensor) -> torch.Tensor:
    if _is_averaged(tensor.dtype):
        return tensor.to(torch.promote_types(tensor.dtype, torch.float64))
    return tensor.clone()


# --------------------------------------------------------------------------- output


def default_out(exp_dir: Path, criterion: Criterion, mode: str, num: int, epochs: Optional[List[int]]) -> Path:
    """ESPnet-style names: ``valid.loss.ave_5around.pth``, ``valid.loss.ave_5best.pth``, ``ave_epochs_3_4_5.pth``."""
    if epochs is not None:
        return exp_dir / f"ave_epochs_{'_'.join(map(str, epochs))}.pth"
    suffix = "around" if mode == "around" else "best"
    return exp_dir / f"{criterion.phase}.{criterion.key}.ave_{num}{suffix}.pth"


# --------------------------------------------------------------------------- command line


def choose_epochs(args: argparse.Namespace, exp_dir: Path, criterion: Criterion) -> Tuple[List[int], Optional[int]]:
    """(epochs to average, best epoch or None), warning when fewer than ``--num`` exist."""
    available = existing_epochs(exp_dir)
    if args.epochs is not None:
        missing = [str(exp_dir / f"{e}epoch.pth") for e in args.epochs if e not in available]
        if missing:
            raise AverageError(f"--epochs: missing {', '.join(missing)}")
        return args.epochs, None
    ranked = ranked_epochs(load_reporter(exp_dir), criterion, exp_dir)
    available &= set(ranked)
    if not available:
        raise AverageError(f"no <N>epoch.pth of a reported epoch in {exp_dir}")
    best = ranked[0]
    if args.mode == "around":
        if best not in available:
            logging.warning("best epoch %d by %s has no checkpoint file; averaging its nearest neighbours",
                            best, criterion)
        epochs = select_around(best, available, args.num)
    else:
        epochs = select_nbest(ranked, available, args.num)
    if len(epochs) < args.num:
        logging.warning("only %d epoch checkpoints exist in %s (asked for %d): averaging %s",
                        len(epochs), exp_dir, args.num, epochs)
    return epochs, best


def average_checkpoints(args: argparse.Namespace) -> None:
    exp_dir = Path(args.exp_dir)
    if not exp_dir.is_dir():
        raise AverageError(f"--exp-dir {exp_dir} is not a directory")
    criterion = parse_criterion(args.criterion)
    epochs, best = choose_epochs(args, exp_dir, criterion)
    out = Path(args.out) if args.out else default_out(exp_dir, criterion, args.mode, args.num, args.epochs)
    state = average_state_dicts([exp_dir / f"{e}epoch.pth" for e in epochs])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    explicit = args.epochs is not None
    record = {
        "file": out.name if out.parent.resolve() == exp_dir.resolve() else str(out),
        "epochs": epochs,
        "criterion": None if explicit else str(criterion),
        "mode": "epochs" if explicit else args.mode,
        "best_epoch": best,
    }
    write_text_atomically(exp_dir / "averaged.json", json.dumps(record, indent=2) + "\n")
    chosen = "given" if explicit else f"{args.mode}, best epoch {best} by {criterion}"
    print(f"averaged epochs {', '.join(map(str, epochs))} ({chosen}) -> {out}")


class _Parser(ErrorsRaise, argparse.ArgumentParser):
    """Argument errors end as one ``ERROR:`` line and exit status 1."""


def get_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp-dir", required=True, help="training output dir with checkpoint.pth and <N>epoch.pth")
    parser.add_argument("--num", type=int, default=5, help="checkpoints to average")
    parser.add_argument("--criterion", default="valid.loss.min", help="phase.key.min|max from ESPnet's reporter")
    parser.add_argument("--mode", choices=("around", "nbest"), default="around",
                        help="around: the best epoch and its neighbours (FBK); nbest: the best by the criterion")
    parser.add_argument("--epochs", type=parse_epochs, default=None,
                        help="e.g. 3,4,5: average these epochs (overrides --mode)")
    parser.add_argument("--out", default=None, help="averaged model path (default: ESPnet-style name in --exp-dir)")
    return parser


@command()
def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    if args.num < 1:
        raise AverageError(f"--num must be at least 1, got {args.num}")
    average_checkpoints(args)


if __name__ == "__main__":
    sys.exit(main())
