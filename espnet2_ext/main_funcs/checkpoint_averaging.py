"""Average epoch checkpoints of an ESPnet experiment: around the best one (FBK) or the n best.

FBK averages the ``num`` checkpoints nearest in epoch number to the best one (the
best epoch and its neighbours); ESPnet averages the ``num`` best by a criterion.
Both read ESPnet's reporter from ``<exp>/checkpoint.pth`` and use only the
``<N>epoch.pth`` files that still exist (ESPnet deletes those outside its kept
n-best); with fewer than ``num`` left, the ones found are averaged and a warning is
logged. An explicit list of epochs needs no reporter.

Float tensors are averaged. Integer buffers (BatchNorm's ``num_batches_tracked``)
are summed, as ESPnet's ``average_nbest_models`` does. The averaged state dict and
``averaged.json`` (:mod:`espnet2_ext.main_funcs.experiment`) are written atomically.
"""

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from espnet2.train.reporter import Reporter

from espnet2_ext.fileio.atomic import atomic_path
from espnet2_ext.main_funcs.experiment import Averaged, load_reporter, write_averaged

MODES = ("around", "nbest")
_EPOCH_FILE = re.compile(r"(\d+)epoch\.pth")
_NOT_CRITERIA = ("time", "total_count")


class AveragingError(ValueError):
    """Bad checkpoints, criterion or epochs."""


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
        raise AveragingError(f"--criterion must be phase.key.min or phase.key.max (e.g. valid.loss.min), got {text!r}")
    return Criterion(phase, key, mode)


def parse_epochs(text: str) -> list[int]:
    """``3,4,5`` -> [3, 4, 5]: positive and distinct."""
    try:
        epochs = [int(field) for field in text.split(",")]
    except ValueError:
        raise AveragingError(f"--epochs must be comma-separated epoch numbers, got {text!r}") from None
    if any(e < 1 for e in epochs) or len(set(epochs)) != len(epochs):
        raise AveragingError(f"--epochs must be distinct positive numbers, got {text!r}")
    return sorted(epochs)


# --------------------------------------------------------------------------- choosing epochs


def ranked_epochs(reporter: Reporter, criterion: Criterion, exp_dir: Path) -> list[int]:
    """All epochs the reporter knows, best first (ties: earlier epoch first)."""
    if not reporter.stats:
        raise AveragingError(f"{exp_dir / 'checkpoint.pth'}: the reporter has no finished epoch")
    if not reporter.has(criterion.phase, criterion.key):
        known = [f"{p}.{k}" for p, k in reporter.get_all_keys() if k not in _NOT_CRITERIA]
        raise AveragingError(
            f"criterion {criterion}: {exp_dir / 'checkpoint.pth'} records no "
            f"'{criterion.phase}.{criterion.key}' (it has {', '.join(known)})"
        )
    try:
        return reporter.sort_epochs(criterion.phase, criterion.key, criterion.mode)
    except KeyError:
        raise AveragingError(
            f"criterion {criterion}: some epochs in {exp_dir / 'checkpoint.pth'} lack "
            f"'{criterion.phase}.{criterion.key}'"
        ) from None


def existing_epochs(exp_dir: Path) -> set[int]:
    """Epochs whose ``<N>epoch.pth`` is still on disk."""
    return {
        int(match.group(1))
        for match in (_EPOCH_FILE.fullmatch(p.name) for p in exp_dir.iterdir())
        if match
    }


def select_around(best: int, available: set[int], num: int) -> list[int]:
    """The ``num`` available epochs nearest to ``best`` in epoch number (ties: earlier), ascending.

    >>> select_around(5, {1, 2, 3, 4, 5, 6, 7, 8}, 4)
    [3, 4, 5, 6]
    """
    nearest = sorted(available, key=lambda e: (abs(e - best), e))[:num]
    return sorted(nearest)


def select_nbest(ranked: Sequence[int], available: set[int], num: int) -> list[int]:
    """The ``num`` best available epochs, ascending."""
    return sorted([e for e in ranked if e in available][:num])


def choose_epochs(exp_dir: Path, criterion: Criterion, mode: str, num: int) -> tuple[list[int], int]:
    """(epochs to average, best epoch), warning when fewer than ``num`` exist."""
    ranked = ranked_epochs(load_reporter(exp_dir), criterion, exp_dir)
    available = existing_epochs(exp_dir) & set(ranked)
    if not available:
        raise AveragingError(f"no <N>epoch.pth of a reported epoch in {exp_dir}")
    best = ranked[0]
    if mode == "around":
        if best not in available:
            logging.warning("best epoch %d by %s has no checkpoint file; averaging its nearest neighbours",
                            best, criterion)
        epochs = select_around(best, available, num)
    else:
        epochs = select_nbest(ranked, available, num)
    if len(epochs) < num:
        logging.warning("only %d epoch checkpoints exist in %s (asked for %d): averaging %s",
                        len(epochs), exp_dir, num, epochs)
    return epochs, best


def check_given_epochs(exp_dir: Path, epochs: Sequence[int]) -> None:
    """Raise naming the ``<N>epoch.pth`` files of ``epochs`` that do not exist."""
    available = existing_epochs(exp_dir)
    missing = [str(exp_dir / f"{e}epoch.pth") for e in epochs if e not in available]
    if missing:
        raise AveragingError(f"--epochs: missing {', '.join(missing)}")


# --------------------------------------------------------------------------- averaging


def average_state_dicts(paths: Sequence[Path]) -> dict[str, torch.Tensor]:
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
            raise AveragingError(f"{path} and {paths[0]} hold different parameters (e.g. {different[0]})")
        for k, v in state.items():
            if v.shape != total[k].shape:
                raise AveragingError(f"{k} is {tuple(v.shape)} in {path} but {tuple(total[k].shape)} in {paths[0]}")
            total[k] += v
    return {k: (v / len(paths)).to(dtypes[k]) if _is_averaged(dtypes[k]) else v for k, v in total.items()}


def _is_averaged(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _accumulator(tensor: torch.Tensor) -> torch.Tensor:
    if _is_averaged(tensor.dtype):
        return tensor.to(torch.promote_types(tensor.dtype, torch.float64))
    return tensor.clone()


def default_out(exp_dir: Path, criterion: Criterion, mode: str, num: int, epochs: Sequence[int] | None) -> Path:
    """ESPnet-style names: ``valid.loss.ave_5around.pth``, ``valid.loss.ave_5best.pth``, ``ave_epochs_3_4_5.pth``."""
    if epochs is not None:
        return exp_dir / f"ave_epochs_{'_'.join(map(str, epochs))}.pth"
    suffix = "around" if mode == "around" else "best"
    return exp_dir / f"{criterion.phase}.{criterion.key}.ave_{num}{suffix}.pth"


def average_checkpoints(
    exp_dir: Path, out: Path, criterion: Criterion, mode: str, num: int, epochs: Sequence[int] | None = None
) -> Averaged:
    """Average the chosen epochs (``epochs`` when given, else by ``mode``) into ``out`` and
    record them in ``<exp>/averaged.json``; returns the record."""
    if not exp_dir.is_dir():
        raise AveragingError(f"--exp_dir {exp_dir} is not a directory")
    if epochs is not None:
        check_given_epochs(exp_dir, epochs)
        chosen, best = list(epochs), None
    else:
        chosen, best = choose_epochs(exp_dir, criterion, mode, num)
    state = average_state_dicts([exp_dir / f"{e}epoch.pth" for e in chosen])
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    explicit = epochs is not None
    averaged = Averaged(
        file=out.name if out.parent.resolve() == exp_dir.resolve() else str(out),
        epochs=tuple(chosen),
        criterion=None if explicit else str(criterion),
        mode="epochs" if explicit else mode,
        best_epoch=best,
    )
    write_averaged(exp_dir, averaged)
    return averaged
