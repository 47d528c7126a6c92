"""Compiled training computes what eager training computes, and checkpoints cross between them.

Sized for CI on 2 CPU cores: a tiny model (2 encoder blocks of 32, one decoder
layer, 60- and 30-token vocabularies), batches of 2 to 4 utterances so that one
graph serves them all (a batch of one compiles a graph of its own), and
``COMPILED_TRAINING_STEPS`` Adam steps (200, the issue's check: about 30 s; the loss falls
from 9.05 to 4.74 and the two runs stay within 3e-7 of each other). Dropout
is off: compiled, the CTC compression pads its output to a width known from the
shapes (``ctc_compress(static_size=True)``), so the layers after it draw more
dropout noise than eager ones and the two runs would differ by their random
masks, not by their arithmetic.
"""

import argparse
import logging
import os

import pytest
import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func

from espnet2_ext.tasks.model_building import build_st_model, load_weights
from espnet2_ext.train.compilation import (
    DYNAMO_SETTINGS,
    compile_model,
    compile_setting,
    compiled,
    is_compiled,
    should_compile,
)

STEPS = int(os.environ.get("COMPILED_TRAINING_STEPS", "200"))
RELATIVE_TOLERANCE = 1e-3
TARGET = ["<blank>", "<unk>", "<lang:de>", *(f"w{i}" for i in range(60)), "<sos/eos>"]
SOURCE = ["<blank>", "<unk>", *(f"s{i}" for i in range(30)), "<sos/eos>"]
NO_DROPOUT = dict(dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0)


def tiny_model(compression: str = "avg") -> torch.nn.Module:
    config = dict(
        encoder="ctc_compress_conformer",
        encoder_conf=dict(output_size=32, attention_heads=2, linear_units=64, num_blocks=2, cnn_module_kernel=3,
                          subsampling_channels=32, ctc_block=1, compression=compression, **NO_DROPOUT),
        decoder="fbk_transformer",
        decoder_conf=dict(attention_heads=2, linear_units=64, num_blocks=1, dropout_rate=0.0,
                          positional_dropout_rate=0.0, self_attention_dropout_rate=0.0,
                          src_attention_dropout_rate=0.0),
        model_conf=dict(ctc_weight=0.5, lsm_weight=0.1, ignore_prefix_size=1),
        token_list=TARGET, src_token_list=SOURCE, input_size=20, frontend=None, frontend_conf={},
        specaug=None, specaug_conf={}, normalize="utterance_cmvn", normalize_conf={},
    )
    torch.manual_seed(0)
    model = build_st_model(argparse.Namespace(**config)).train()
    with torch.no_grad():
        model.encoder.ctc_head.bias[0] += 2.0  # long blank runs: the compression merges frames
    return model


def batch(step: int) -> dict[str, torch.Tensor]:
    """2 to 4 utterances of 40 to 160 frames, targets led by the language tag, source transcripts."""
    g = torch.Generator().manual_seed(step)
    size = 2 + step % 3
    lengths = torch.randint(40, 161, (size,), generator=g)
    target_lengths, source_lengths = lengths // 30 + 2, lengths // 40 + 1
    text = torch.full((size, int(target_lengths.max())), -1)
    src_text = torch.full((size, int(source_lengths.max())), -1)
    for i in range(size):
        text[i, : target_lengths[i]] = torch.randint(3, len(TARGET) - 1, (int(target_lengths[i]),), generator=g)
        text[i, 0] = 2
        src_text[i, : source_lengths[i]] = torch.randint(2, len(SOURCE) - 1, (int(source_lengths[i]),), generator=g)
    return dict(speech=torch.randn(size, int(lengths.max()), 20, generator=g), speech_lengths=lengths,
                text=text, text_lengths=target_lengths, src_text=src_text, src_text_lengths=source_lengths)


def train(model: torch.nn.Module, steps: int, batches=None) -> list[float]:
    """Adam steps on ``batches`` (default: ``batch(0)``, ``batch(1)``, ...); the logged loss of each."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    losses = []
    for step in range(steps):
        loss, stats, _ = model(**(batches[step] if batches is not None else batch(step)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(stats["loss"]))
    return losses


@pytest.fixture(scope="module")
def trained():
    """The tiny model trained eagerly and compiled (inductor), from the same weights on the same batches."""
    eager, compiled_model = tiny_model(), compile_model(tiny_model())
    return eager, compiled_model, train(eager, STEPS), train(compiled_model, STEPS)


def test_compiled_training_gives_eager_losses_at_every_step(trained):
    _, _, eager_losses, compiled_losses = trained
    for step, (eager, compiled_loss) in enumerate(zip(eager_losses, compiled_losses)):
        assert abs(compiled_loss - eager) <= RELATIVE_TOLERANCE * abs(eager), f"step {step}"


def test_checkpoints_keep_their_keys_and_load_in_either_mode(trained, tmp_path):
    eager, compiled_model, _, _ = trained
    assert list(compiled_model.state_dict()) == list(eager.state_dict())  # no "_orig_mod." prefix
    torch.save(compiled_model.state_dict(), tmp_path / "compiled.pth")
    torch.save(eager.state_dict(), tmp_path / "eager.pth")
    into_eager = load_weights(tiny_model(), tmp_path / "compiled.pth")
    into_compiled = load_weights(compile_model(tiny_model()), tmp_path / "eager.pth")
    for name, value in compiled_model.state_dict().items():
        assert torch.equal(into_eager.state_dict()[name], value), name
    step = batch(STEPS)
    eager_loss, compiled_loss = float(eager(**step)[0].detach()), float(into_compiled(**step)[0].detach())
    assert abs(compiled_loss - eager_loss) <= RELATIVE_TOLERANCE * abs(eager_loss)


@pytest.mark.parametrize("strategy", ["avg", "weighted", "softmax", "fixed", "none"])
def test_the_compiled_path_of_every_compression_gives_the_eager_losses(strategy):
    """What compiling changes in the code (the compression's padded width, the device-side input
    check), traced by dynamo and run by AOT autograd with eager kernels: the same losses and gradients."""
    eager, traced = tiny_model(strategy), tiny_model(strategy)
    run = compiled(traced, backend="aot_eager")
    for step in range(2):
        expected, got = eager(**batch(step))[0], run(**batch(step))[0]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        expected.backward()
        got.backward()
        for (name, a), b in zip(eager.named_parameters(), traced.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "setting, ngpu, expected",
    [("auto", 0, False), ("auto", 4, True), ("true", 0, True), ("false", 1, False), (True, 0, True), (False, 2, False)],
)
def test_compile_setting(setting, ngpu, expected):
    assert should_compile(setting, ngpu) is expected


def test_unknown_compile_setting_is_refused():
    with pytest.raises(argparse.ArgumentTypeError, match="compile: expected one of auto, true, false, got 'yes'"):
        compile_setting("yes")


# --------------------------------------------------------------------------- a compiler that fails


class CompilerBroke(RuntimeError):
    """What the failing backends raise."""


def failing_backend(gm, example_inputs):
    raise CompilerBroke("no kernels for this GPU")


def _failing_backward(gm, example_inputs):
    raise CompilerBroke("no backward kernels for this GPU")


# Compiles the forward (runs its graph as traced), fails on the backward, which AOT autograd would
# otherwise compile at the first backward(): FUNCTORCH_SETTINGS make it fail inside the model's call.
failing_backward_backend = aot_autograd(fw_compiler=lambda gm, inputs: make_boxed_func(gm.forward),
                                        bw_compiler=_failing_backward)


def fallback_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "compiling the model" in r.getMessage()]


def test_a_failing_compiler_leaves_eager_training_with_one_warning(caplog):
    """The model compiled with a backend that raises: the first call fails in the compiler, is run
    eagerly, and every step after it is eager's (losses and weights equal to an eager run's)."""
    eager = tiny_model()
    eager_losses = train(eager, 6)
    model = compile_model(tiny_model(), backend=failing_backend)
    with caplog.at_level(logging.WARNING):
        losses = train(model, 6)
    assert losses == eager_losses  # eager's, step for step, the failed first step included
    for name, value in eager.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name  # the checkpoint: eager's
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1 and not is_compiled(model)
    assert warnings[0] == (
        "compiling the model failed (BackendCompilerFailed: backend='failing_backend' raised: CompilerBroke: no "
        "kernels for this GPU): training goes on eagerly from this step, its losses and checkpoints eager's; "
        "--compile false (compile: false) trains eagerly from the start"
    )


class SmallNet(torch.nn.Module):
    """Pointwise convolutions around BatchNorm on (B, 8, T): the fallback's mechanics, compiled in seconds."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(torch.nn.Conv1d(8, 16, 1), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                          torch.nn.Conv1d(16, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).pow(2).mean()


def train_small(model: torch.nn.Module, sizes: list[int], after_forward=None) -> list[float]:
    """Adam steps on batches of ``sizes`` utterances of 6 frames."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step, size in enumerate(sizes):
        loss = model(torch.randn(size, 8, 6, generator=torch.Generator().manual_seed(step)))
        if after_forward is not None:
            after_forward(step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def test_a_failing_backward_compiler_fails_inside_the_call(caplog):
    """AOT autograd would compile the backward at the first backward(), inside ESPnet's trainer,
    where no call can be run again: compiled with the forward, it fails inside the model's call,
    before any gradient exists, and the training is eager's."""
    sizes = [4, 3, 5, 4]
    eager = SmallNet()
    eager_losses = train_small(eager, sizes)
    model = compile_model(SmallNet(), backend=failing_backward_backend)
    seen = []
    with caplog.at_level(logging.WARNING):
        losses = train_small(model, sizes, after_forward=lambda step: seen.append(is_compiled(model)))
    assert seen == [False] * len(sizes)  # given up inside the first call, before its backward()
    assert losses == eager_losses
    for name, value in eager.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1 and "CompilerBroke: no backward kernels for this GPU" in warnings[0]


def test_the_recompilation_limit_leaves_eager_training(monkeypatch, caplog, capfd):
    """Batches of 2 or more share one graph; a batch of one needs its own. With a limit of one
    graph, that batch raises in dynamo (instead of running eagerly without a word) and the
    training goes on eagerly: eager's losses from that step on."""
    torch._dynamo.reset()  # graphs of other tests' models do not count against this one's limit
    monkeypatch.setitem(DYNAMO_SETTINGS, "recompile_limit", 1)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", torch._dynamo.config.recompile_limit)
    sizes = [4, 3, 1, 5, 4]
    eager_losses = train_small(SmallNet(), sizes)
    model = compile_model(SmallNet(), backend="aot_eager")
    seen = []
    with caplog.at_level(logging.WARNING):
        losses = train_small(model, sizes, after_forward=lambda step: seen.append(is_compiled(model)))
    assert seen == [True, True, False, False, False]
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith(
        "compiling the model failed (FailOnRecompileLimitHit: torch._dynamo.config.recompile_limit (1) reached "
        "recompiling 'forward' ("
    )
    assert "hit config.recompile_limit" not in capfd.readouterr().err  # dynamo's own five lines held back
    assert losses[2:] == eager_losses[2:]
    for step in range(2):  # compiled before it: the same within rounding
        assert abs(losses[step] - eager_losses[step]) <= 1e-6 * abs(eager_losses[step])


class GraphBreakModule(torch.nn.Module):
    """BatchNorm and random noise, a graph break, a linear layer: a first graph runs before the second fails."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.norm = torch.nn.BatchNorm1d(8)
        self.linear = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x) + torch.rand_like(x)
        torch._dynamo.graph_break()
        return self.linear(x)


def test_a_call_failing_after_a_first_graph_ran_is_run_again_from_its_state(caplog):
    """The first graph updates BatchNorm's statistics and draws random numbers before the second
    graph fails to compile: run again eagerly, the call updates the statistics once and draws
    the numbers an eager call draws."""
    graphs = []

    def second_graph_fails(gm, example_inputs):
        graphs.append(gm)
        if len(graphs) > 1:
            raise CompilerBroke("the second graph")
        return gm.forward

    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    eager, model = GraphBreakModule(), compile_model(GraphBreakModule(), backend=second_graph_fails)
    torch.manual_seed(7)
    expected = eager(x)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    with caplog.at_level(logging.WARNING):
        got = model(x)
    assert len(graphs) == 2 and len(fallback_warnings(caplog)) == 1
    assert torch.equal(got, expected) and torch.equal(torch.rand(3), expected_next)
    for name, value in eager.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name  # num_batches_tracked 1, one momentum step
