"""Checkpoint averaging: which epochs are chosen, how tensors are combined, what is recorded."""

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from espnet2.train.reporter import Reporter

from espnet2_ext.bin import average_checkpoints
from espnet2_ext.main_funcs.checkpoint_averaging import select_around
from tests.helpers import small_model

EPOCHS = 8


@pytest.fixture(scope="module")
def template() -> dict[str, torch.Tensor]:
    return small_model().state_dict()


def make_exp(
    tmp_path: Path,
    template: dict[str, torch.Tensor],
    valid_loss: Sequence[float],
    keep: Sequence[int] | None = None,
) -> Path:
    """An exp dir as ESPnet's trainer leaves it: ``<N>epoch.pth`` with every tensor = N, and a reporter.

    Epochs outside ``keep`` lose their file, as ESPnet's pruning of non-n-best epochs does.
    """
    exp = tmp_path / "exp"
    exp.mkdir()
    reporter = Reporter()
    for epoch, loss in enumerate(valid_loss, start=1):
        reporter.set_epoch(epoch)
        with reporter.observe("train") as sub:
            sub.register({"loss": loss + 1.0, "acc": 0.5})
            sub.next()
        with reporter.observe("valid") as sub:
            sub.register({"loss": loss, "acc": 1.0 / (1.0 + loss)})
            sub.next()
        if keep is None or epoch in keep:
            torch.save({k: torch.full_like(v, epoch) for k, v in template.items()}, exp / f"{epoch}epoch.pth")
    torch.save({"reporter": reporter.state_dict()}, exp / "checkpoint.pth")
    return exp


def losses_with_best(best: int) -> list:
    """Valid losses falling towards ``best`` and rising after it."""
    return [1.0 + abs(epoch - best) * 0.1 + epoch * 0.001 for epoch in range(1, EPOCHS + 1)]


def run(capsys, *argv: str) -> tuple:
    code = average_checkpoints.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_record(exp: Path) -> dict:
    return json.loads((exp / "averaged.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "best, keep, num, expected",
    [
        (5, None, 5, [3, 4, 5, 6, 7]),  # best in the middle
        (8, None, 5, [4, 5, 6, 7, 8]),  # best is the last epoch
        (1, None, 5, [1, 2, 3, 4, 5]),  # best is the first epoch
        (4, None, 4, [2, 3, 4, 5]),  # 3 and 5, then 2 and 6 tie: the earlier wins
        (5, [1, 2, 5, 7, 8], 3, [2, 5, 7]),  # pruned files: nearest existing ones
    ],
)
def test_around_takes_the_existing_epochs_nearest_to_the_best(tmp_path, capsys, template, best, keep, num, expected):
    exp = make_exp(tmp_path, template, losses_with_best(best), keep)
    code, out, _ = run(capsys, "--exp_dir", str(exp), "--num", str(num))
    assert code == 0
    assert read_record(exp) == {
        "file": f"valid.loss.ave_{num}around.pth",
        "epochs": expected,
        "criterion": "valid.loss.min",
        "mode": "around",
        "best_epoch": best,
    }
    assert f"averaged epochs {', '.join(map(str, expected))}" in out


def test_nbest_takes_the_best_existing_epochs_by_the_criterion(tmp_path, capsys, template):
    losses = [9.0, 8.0, 3.0, 7.0, 2.0, 5.0, 1.0, 4.0]  # ranking: 7, 5, 3, 8, 6, 4, 2, 1
    exp = make_exp(tmp_path, template, losses, keep=[1, 2, 3, 4, 6, 7, 8])  # 5 pruned
    code, _, _ = run(capsys, "--exp_dir", str(exp), "--num", "3", "--mode", "nbest")
    assert code == 0
    record = read_record(exp)
    assert record["epochs"] == [3, 7, 8] and record["best_epoch"] == 7 and record["mode"] == "nbest"
    assert (exp / "valid.loss.ave_3best.pth").is_file()


def test_max_criterion_ranks_the_highest_first(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, [9.0, 8.0, 3.0, 7.0, 2.0, 5.0, 1.0, 4.0])
    code, _, _ = run(capsys, "--exp_dir", str(exp), "--num", "2", "--mode", "nbest", "--criterion", "valid.acc.max")
    assert code == 0
    assert read_record(exp)["epochs"] == [5, 7]
    assert (exp / "valid.acc.ave_2best.pth").is_file()


def test_floats_are_averaged_and_integer_buffers_summed_as_espnet_does(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, losses_with_best(5))
    out = tmp_path / "avg.pth"
    assert run(capsys, "--exp_dir", str(exp), "--num", "5", "--out", str(out))[0] == 0
    averaged = torch.load(out, weights_only=True)
    assert averaged.keys() == template.keys()
    integer = [k for k, v in template.items() if not v.is_floating_point()]
    assert integer and all(k.endswith("num_batches_tracked") for k in integer)
    for k, v in averaged.items():
        assert v.dtype == template[k].dtype and v.shape == template[k].shape, k
        expected = 3 + 4 + 5 + 6 + 7 if k in integer else (3 + 4 + 5 + 6 + 7) / 5
        assert torch.equal(v, torch.full_like(v, expected)), k
    assert read_record(exp)["file"] == str(out)


def test_explicit_epochs_override_the_mode_and_need_no_reporter(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, losses_with_best(5))
    (exp / "checkpoint.pth").unlink()
    code, _, _ = run(capsys, "--exp_dir", str(exp), "--epochs", "2,8,5", "--mode", "nbest")
    assert code == 0
    assert read_record(exp) == {
        "file": "ave_epochs_2_5_8.pth", "epochs": [2, 5, 8], "criterion": None, "mode": "epochs", "best_epoch": None,
    }
    weight = next(v for v in torch.load(exp / "ave_epochs_2_5_8.pth", weights_only=True).values())
    assert torch.equal(weight, torch.full_like(weight, 5.0))


def test_fewer_files_than_num_average_what_exists_with_a_warning(tmp_path, capsys, template, caplog):
    exp = make_exp(tmp_path, template, losses_with_best(5), keep=[4, 5])
    code, _, _ = run(capsys, "--exp_dir", str(exp), "--num", "5")
    assert code == 0
    assert read_record(exp)["epochs"] == [4, 5]
    assert "only 2 epoch checkpoints exist" in caplog.text


def test_rerun_replaces_outputs_and_leaves_no_temporary_files(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, losses_with_best(5))
    assert run(capsys, "--exp_dir", str(exp), "--num", "5")[0] == 0
    assert run(capsys, "--exp_dir", str(exp), "--num", "3")[0] == 0
    assert read_record(exp)["epochs"] == [4, 5, 6]
    assert not [p.name for p in exp.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--criterion", "valid.loss"], "--criterion must be phase.key.min or phase.key.max"),
        (["--criterion", "valid.lose.min"], "no 'valid.lose' (it has train.loss, train.acc, valid.loss, valid.acc)"),
        (["--num", "0"], "--num must be at least 1"),
        (["--epochs", "2,x"], "--epochs must be comma-separated"),
        (["--epochs", "2,6"], "--epochs: missing"),
        (["--mode", "best"], "invalid choice"),
    ],
)
def test_bad_options_are_one_error_line_and_exit_1(tmp_path, capsys, template, argv, message):
    exp = make_exp(tmp_path, template, losses_with_best(5), keep=[1, 2, 3, 4, 5])
    code, _, err = run(capsys, "--exp_dir", str(exp), *argv)
    assert code == 1
    assert err.startswith("ERROR: ") and err.count("\n") == 1 and message in err, err
    assert not (exp / "averaged.json").exists()


def test_missing_checkpoint_is_named(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, losses_with_best(5))
    (exp / "checkpoint.pth").unlink()
    code, _, err = run(capsys, "--exp_dir", str(exp))
    assert code == 1 and f"ERROR: missing {exp / 'checkpoint.pth'}" in err


def test_no_epoch_files_names_the_dir(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, losses_with_best(5), keep=[])
    code, _, err = run(capsys, "--exp_dir", str(exp))
    assert code == 1 and f"no <N>epoch.pth of a reported epoch in {exp}" in err


def test_out_that_is_a_directory_is_refused_before_averaging(tmp_path, capsys, template):
    exp = make_exp(tmp_path, template, losses_with_best(5))
    code, _, err = run(capsys, "--exp_dir", str(exp), "--out", str(tmp_path))
    assert code == 1 and err == f"ERROR: --out {tmp_path} is a directory; expected a file to write\n"
    assert not (exp / "averaged.json").exists()


def test_select_around_docstring_case():
    assert select_around(5, set(range(1, 9)), 4) == [3, 4, 5, 6]


def test_around_a_pruned_best_epoch_warns_and_takes_its_neighbours(tmp_path, capsys, template, caplog):
    exp = make_exp(tmp_path, template, losses_with_best(5), keep=[1, 2, 3, 6, 7, 8])
    code, _, _ = run(capsys, "--exp_dir", str(exp), "--num", "3")
    assert code == 0
    assert read_record(exp)["epochs"] == [3, 6, 7]
    assert "best epoch 5 by valid.loss.min has no checkpoint file" in caplog.text
