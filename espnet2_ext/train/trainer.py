"""ESPnet's trainer, reading the statistics a step logs in one copy from the device.

ESPnet's reporter turns every logged value into a float as it is registered
(``item()``): on a GPU, one wait for the device per value (six of our model's
statistics and the batch weight, then the gradient norm and the clipping flag).
:class:`STTrainer` copies each registration's tensors to the host together
instead: one wait per registration. Everything else is ESPnet's ``Trainer``.
"""

from collections.abc import Mapping

import torch
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer


def read_stats(stats: Mapping[str, object]) -> dict[str, object]:
    """``stats`` with every one-element tensor replaced by its value as a float, all read at once.

    Other values (numbers, ``None``, nested dictionaries) are left as they are.
    """
    tensors = {key: value for key, value in stats.items() if isinstance(value, torch.Tensor)}
    values = dict(stats)
    if tensors:
        flat = torch.stack([value.detach().reshape(()).double() for value in tensors.values()])
        values.update(zip(tensors, flat.cpu().tolist()))
    return values


class _OneReadReporter(SubReporter):
    """A view of a ``SubReporter`` (it shares the reporter's state) whose ``register`` reads
    the tensors of a registration, the weight among them, in one copy."""

    @classmethod
    def of(cls, reporter: SubReporter) -> "_OneReadReporter":
        view = cls.__new__(cls)
        view.__dict__ = reporter.__dict__  # the same state: what the view registers, the reporter holds
        return view

    def register(self, stats: dict, weight=None) -> None:
        values = read_stats({**stats, _WEIGHT: weight})
        weight = values.pop(_WEIGHT)
        super().register(values, weight)


_WEIGHT = "\0weight"  # a key no statistic has


class STTrainer(Trainer):
    """ESPnet's ``Trainer``; the logged statistics of a step are read from the device at once."""

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter, summary_writer, options,
                        distributed_option) -> bool:
        return super().train_one_epoch(
            model=model, iterator=iterator, optimizers=optimizers, schedulers=schedulers, scaler=scaler,
            reporter=_OneReadReporter.of(reporter), summary_writer=summary_writer, options=options,
            distributed_option=distributed_option,
        )

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        return super().validate_one_epoch(
            model=model, iterator=iterator, reporter=_OneReadReporter.of(reporter), options=options,
            distributed_option=distributed_option,
        )
