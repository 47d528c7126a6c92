"""Tests for espnet2_ext/bin/plot_curves.py (training curves from ESPnet's reporter state)."""

from pathlib import Path

import matplotlib.image
import pytest
import torch
from espnet2.train.reporter import Reporter

from espnet2_ext.bin import plot_curves
from espnet2_ext.main_funcs import training_curves
from espnet2_ext.main_funcs.experiment import Averaged, ScoreResult, load_reporter, write_averaged, write_result

EPOCHS = 4
VALID_LOSS = [3.0, 2.0, 1.5, 1.7]  # best at epoch 3
ALL_STATS = ("loss", "acc", "loss_ce", "loss_ctc", "compression_ratio")


def stats(epoch: int, key: str, names: tuple[str, ...]) -> dict[str, float]:
    values = {
        "loss": VALID_LOSS[epoch - 1] if key == "valid" else 4.0 - epoch * 0.8,
        "acc": 0.1 * epoch,
        "loss_ce": 2.0 / epoch,
        "loss_ctc": 50.0 / epoch,
        "compression_ratio": 0.5 - 0.05 * epoch,
    }
    return {name: values[name] for name in names}


def make_reporter(names: tuple[str, ...] = ALL_STATS) -> Reporter:
    """A reporter filled the way ESPnet's trainer fills it: per epoch, train then valid, two steps each."""
    reporter = Reporter()
    for epoch in range(1, EPOCHS + 1):
        reporter.set_epoch(epoch)
        for key in ("train", "valid"):
            with reporter.observe(key) as sub:
                for _ in range(2):
                    sub.register(stats(epoch, key, names))
                    sub.next()
    return reporter


def make_exp(tmp_path: Path, reporter: Reporter) -> Path:
    exp = tmp_path / "exp" / "st_train"
    exp.mkdir(parents=True)
    torch.save({"reporter": reporter.state_dict(), "model": {"w": torch.zeros(2)}}, exp / "checkpoint.pth")
    return exp


def test_reporter_round_trip(tmp_path: Path) -> None:
    """The checkpoint gives back the registered per-epoch means."""
    reporter = load_reporter(make_exp(tmp_path, make_reporter()))
    assert reporter.get_epoch() == EPOCHS
    assert training_curves.series(reporter, "valid", "loss") == pytest.approx(VALID_LOSS)
    assert training_curves.best_epoch(reporter) == 3


def test_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make_exp(tmp_path, make_reporter())
    write_averaged(exp, Averaged(file="x.pth", epochs=(2, 3), criterion="valid.loss.min", mode="around", best_epoch=3))
    write_result(exp / "decode_st" / "tst-COMMON" / "score", ScoreResult(
        bleu=21.5, chrf=50.0, n_segments=3, bleu_signature="nrefs:1|tok:13a", chrf_signature="nrefs:1|nc:6",
        bleu_line="BLEU = 21.50", chrf_line="chrF2 = 50.00", tgt_lang=None, hyp="hyp", ref="ref",
    ))
    assert plot_curves.main(["--exp_dir", str(exp)]) == 0
    assert capsys.readouterr().out == f"wrote {exp / 'curves.png'}\n"
    image = matplotlib.image.imread(exp / "curves.png")
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image.std() > 0.05  # not blank
    assert sorted(p.name for p in exp.iterdir()) == ["averaged.json", "checkpoint.pth", "curves.png", "decode_st"]
    assert "tst-COMMON 21.50" in training_curves.figure_title(exp, training_curves.find_scores(exp))


def test_absent_statistics_have_no_panel(tmp_path: Path) -> None:
    exp = make_exp(tmp_path, make_reporter(("loss", "acc")))
    reporter = load_reporter(exp)
    assert [panel.key2 for panel in training_curves.panels_to_draw(reporter)] == ["loss", "acc"]
    out = tmp_path / "elsewhere" / "curves.png"
    assert plot_curves.main(["--exp_dir", str(exp), "--out", str(out)]) == 0
    assert matplotlib.image.imread(out).shape[1] > 300


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    assert plot_curves.main(["--exp_dir", str(exp)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: missing {exp / 'checkpoint.pth'}") and error.count("\n") == 1
    assert not (exp / "curves.png").exists()


def test_checkpoint_without_reporter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save({"model": {}}, exp / "checkpoint.pth")
    assert plot_curves.main(["--exp_dir", str(exp)]) == 1
    assert "has no 'reporter' entry" in capsys.readouterr().err


def test_out_under_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make_exp(tmp_path, make_reporter())
    (tmp_path / "plain").write_text("")
    assert plot_curves.main(["--exp_dir", str(exp), "--out", str(tmp_path / "plain" / "curves.png")]) == 1
    assert capsys.readouterr().err == (
        f"ERROR: --out {tmp_path / 'plain' / 'curves.png'}: {tmp_path / 'plain'} is a file, not a directory\n"
    )


class Planted:
    """A pickle that runs code when loaded without ``weights_only``: it would write a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_code_planted_in_the_checkpoint_never_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make_exp(tmp_path, make_reporter())
    marker = tmp_path / "planted-code-ran"
    state = torch.load(exp / "checkpoint.pth", weights_only=False)
    torch.save({**state, "extra": Planted(marker)}, exp / "checkpoint.pth")
    assert plot_curves.main(["--exp_dir", str(exp)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"ERROR: cannot load {exp / 'checkpoint.pth'}: ") and error.count("\n") == 1
    assert not marker.exists()
