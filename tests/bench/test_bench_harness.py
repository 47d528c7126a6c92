"""The benchmark harness itself: the free-compression encoder, the blank-bias calibration,
and the rule that benchmarks import the library, never a program."""

import importlib.util
import math
import re
from pathlib import Path

import pytest
import torch

from tests.helpers import SMALL_ENCODER, small_encoder, small_model

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str):
    """``bench/<name>.py`` by path (bench/ holds scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_models():
    return bench_module("models")


def free_encoder(bench_models, ratio: float):
    """The small encoder's weights; any compression but ``none``, which skips the compression step."""
    torch.manual_seed(0)  # the weights of small_encoder()
    encoder = bench_models.FreeCompressionEncoder(input_size=20, ctc_vocab_size=12, **SMALL_ENCODER, compression="avg")
    encoder.ratio = ratio
    return encoder.eval()


def test_free_compression_at_ratio_one_is_the_uncompressed_encoder(bench_models):
    reference = small_encoder(compression="none").eval()
    free = free_encoder(bench_models, 1.0)
    feats, lengths = torch.randn(3, 40, 20), torch.tensor([40, 31, 17])
    with torch.no_grad():
        expected, got = reference.encode(feats, lengths), free.encode(feats, lengths)
    for name in ("hidden", "lengths", "ctc_logits", "ctc_lengths"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name))


def test_free_compression_keeps_the_ratio_after_the_ctc_block(bench_models):
    free = free_encoder(bench_models, 0.4)
    feats, lengths = torch.randn(3, 40, 20), torch.tensor([40, 31, 17])
    with torch.no_grad():
        out = free.encode(feats, lengths)
    assert out.lengths.tolist() == [math.ceil(0.4 * n) for n in out.ctc_lengths.tolist()]
    assert out.hidden.size(1) == int(out.lengths.max())
    assert out.ctc_logits.size(1) == int(out.ctc_lengths.max())


def test_calibration_reaches_the_target_ratio(bench_models):
    model = small_model().train()
    batch = dict(speech=torch.randn(4, 120, 20), speech_lengths=torch.tensor([120, 100, 90, 60]))
    assert bench_models.compression_ratio(model, batch) > 0.8  # random head: almost nothing merged
    bias, ratio = bench_models.calibrate_blank_bias(model, batch, target=0.4)
    assert bias > 0
    assert abs(ratio - 0.4) < 0.05
    assert bench_models.compression_ratio(model, batch) == pytest.approx(ratio)  # the bias stays set


def test_train_batch_follows_the_token_rates(bench_models):
    batch = bench_models.train_batch(10.0, batch_size=2)
    assert batch["speech"].shape == (2, 998, 80)
    assert batch["text_lengths"].tolist() == [44, 44]  # tag + 4.3 tokens/s
    assert (batch["text"][:, 0] == bench_models.LANG_TAG_ID).all()
    assert batch["src_text_lengths"].tolist() == [34, 34]


def test_benchmarks_import_no_program():
    for script in BENCH.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+(espnet2_ext\.bin\b\S*)", script.read_text(), re.MULTILINE)
        assert not imports, f"{script.name} imports the program(s) {imports}: import the library instead"


def bench_script(name: str):
    """``bench/<name>.py``, a script that imports its siblings (``models``, ``timing``) by name."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        return bench_module(name)


@pytest.fixture(scope="module")
def bench_padding():
    return bench_script("padding")


def test_padding_measure_sees_a_leak_and_its_absence(bench_padding):
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    torch.manual_seed(0)
    features = [torch.randn(n, 20) for n in (198, 120, 301)]
    ours = small_model().eval()
    clean = bench_padding.padding_error(ours, features, encoder_only=False)
    assert clean["lengths_differ"] == 0 and clean["max_abs_diff"] < 1e-5

    class Stock(torch.nn.Module):  # ESPnet's Conformer: conv2d subsampling, conv module over padding
        def __init__(self):
            super().__init__()
            self.encoder = ConformerEncoder(20, output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
                                            cnn_module_kernel=7, input_layer="conv2d", use_cnn_module=True)

    leaky = bench_padding.padding_error(Stock().eval(), features, encoder_only=True)
    assert leaky["lengths_differ"] > 0 or leaky["max_abs_diff"] > 1e-3


@pytest.fixture(scope="module")
def bench_timing():
    return bench_module("timing")


def test_interleaved_takes_turns_and_times_only_after_the_warm_up(bench_timing):
    calls = []

    def run(name: str):
        return lambda: calls.append(name) or len(calls)

    syncs = []
    timed = bench_timing.interleaved({"a": run("a"), "b": run("b")}, repeats=3, warmup=2,
                                     synchronize=lambda: syncs.append(len(calls)))
    assert calls == ["a", "b"] * 5
    assert timed["a"].outputs == [1, 3, 5, 7, 9] and timed["b"].last == 10
    assert len(timed["a"].wall) == len(timed["a"].cpu) == 3
    assert syncs == [n for k in range(10) for n in (k, k + 1)]  # around every call
    with pytest.raises(ValueError, match="repeats"):
        bench_timing.interleaved({"a": run("a")}, repeats=0)


def test_interleaved_counts_waiting_as_wall_time_and_children_as_cpu_time(bench_timing):
    import subprocess
    import sys
    import time

    timed = bench_timing.interleaved({
        "sleep": lambda: time.sleep(0.05),
        "child": lambda: subprocess.run([sys.executable, "-c", "sum(range(2_000_000))"], check=True),
    }, repeats=1)
    assert timed["sleep"].wall_s >= 0.05 > timed["sleep"].cpu_s
    assert timed["child"].cpu_s > 0.01  # the child's interpreter start and loop, not this process's wait


@pytest.fixture(scope="module")
def bench_end_to_end():
    return bench_script("train_end_to_end")


def test_end_to_end_corpus_points_each_utterance_at_features_of_its_length(bench_end_to_end, tmp_path):
    import kaldiio

    seconds = bench_end_to_end.utterance_seconds(300)
    assert 4.5 < sorted(seconds)[150] < 5.5 and min(seconds) >= 0.3 and max(seconds) <= 30.0  # median ~5 s
    bench_end_to_end.write_corpus(tmp_path / "train", seconds[:40], "train")
    scp = dict(line.split() for line in (tmp_path / "train/feats.scp").read_text().splitlines())
    shapes = dict(line.split() for line in (tmp_path / "train/shapes/speech_shape").read_text().splitlines())
    targets = dict(line.split(maxsplit=1) for line in (tmp_path / "train/text.tgt.tagged").read_text().splitlines())
    text_shapes = dict(line.split() for line in (tmp_path / "train/shapes/text_shape").read_text().splitlines())
    assert len(scp) == 40 and scp.keys() == shapes.keys() == targets.keys()
    for key, location in scp.items():
        assert f"{kaldiio.load_mat(location).shape[0]},80" == shapes[key]
        assert targets[key].startswith("<lang:de> ") and len(targets[key].split()) == int(text_shapes[key])
    distinct = {n.split(",")[0] for n in shapes.values()}
    ark_bytes = (tmp_path / "train/feats.ark").stat().st_size
    assert ark_bytes < sum(int(n) for n in distinct) * 80 * 4 + 100 * len(distinct)  # one matrix per length


def test_end_to_end_reads_espnets_log_lines_commas_missing_or_not(bench_end_to_end):
    log = (
        "[vm] 2026-12-03 12:45:44,331 (trainer:811) INFO: 1epoch:train:1-2batch: iter_time=0.021, "
        "forward_time=0.285loss=20.257, compression_ratio=0.5, train_time=0.500\n"
        "[vm] 2026-12-03 12:45:45,000 (trainer:811) INFO: 1epoch:valid:1-2batch: loss=3.0\n"
        "[vm] 2026-12-03 12:45:46,331 (trainer:811) INFO: 1epoch:train:3-4batch: iter_time=0.010, "
        "train_time=0.900, compression_ratio=0.4\n"
        "[vm] 2026-12-03 12:45:48,331 (trainer:811) INFO: 1epoch:train:5-8batch: iter_time=0.020, "
        "train_time=0.400, compression_ratio=0.3\n"
    )
    intervals = bench_end_to_end.read_intervals(log)
    assert [i["batches"] for i in intervals] == [2, 2, 4]
    assert intervals[0]["stats"] == {"iter_time": 0.021, "forward_time": 0.285, "loss": 20.257,
                                     "compression_ratio": 0.5, "train_time": 0.5}
    rates = bench_end_to_end.rates(intervals, accum_grad=2)  # the first interval left out
    assert rates["minibatches"] == 4 and rates["wall_s"] == 2.0 and rates["train_time_s"] == pytest.approx(1.6)
    assert rates["updates_per_hour"] == pytest.approx(2 / 2.0 * 3600)
    assert rates["train_time_share"] == pytest.approx(0.8) and rates["compression_ratio"] == pytest.approx(0.35)
