"""The trainer reads a step's logged statistics at once and registers what ESPnet's reporter would."""

import torch
from espnet2.train.reporter import Reporter

from espnet2_ext.train.trainer import _OneReadReporter, read_stats


def test_read_stats_turns_tensors_into_floats_and_leaves_the_rest():
    stats = dict(loss=torch.tensor([2.5]), acc=torch.tensor(0.25), count=torch.tensor([3]), lr=0.001, none=None)
    assert read_stats(stats) == dict(loss=2.5, acc=0.25, count=3.0, lr=0.001, none=None)


def test_read_stats_copies_from_the_device_once(monkeypatch):
    copies = []
    original = torch.Tensor.cpu

    def counting_cpu(self, *args, **kwargs):
        copies.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counting_cpu)
    read_stats({f"s{i}": torch.tensor([float(i)]) for i in range(6)})
    assert copies == [torch.Size([6])]


def _reported(register) -> str:
    reporter = Reporter()
    reporter.set_epoch(1)
    with reporter.observe("train") as sub:
        for step in range(3):
            register(sub, dict(loss=torch.tensor([1.0 + step]), acc=torch.tensor([0.5])), torch.tensor([2 + step]))
            sub.next()
    return reporter.log_message(1)


def test_one_read_reporter_reports_what_espnets_does():
    espnet = _reported(lambda sub, stats, weight: sub.register(stats, weight))
    ours = _reported(lambda sub, stats, weight: _OneReadReporter.of(sub).register(stats, weight))
    assert ours == espnet
    assert "loss=2.222" in ours  # weighted by the batch sizes 2, 3, 4
