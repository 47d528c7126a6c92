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
import os

import pytest
import torch

from espnet2_ext.tasks.model_building import build_st_model, load_weights
from espnet2_ext.train.compilation import compile_model, compile_setting, compiled, should_compile

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


def train(model: torch.nn.Module, steps: int) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    losses = []
    for step in range(steps):
        loss, stats, _ = model(**batch(step))
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
