"""The encoder: construction errors, shapes, and padding invariance."""

import pytest
import torch

from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import CTCCompressConformerEncoder
from tests.helpers import pad_batch, small_encoder

TOLERANCE = 1e-5


def random_utterances(n, min_len, max_len, dim, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g)
    return [torch.randn(int(t), dim, generator=g) for t in lengths]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(compression="mean"), "compression"),
        (dict(ctc_block=0), "ctc_block"),
        (dict(ctc_block=5), "ctc_block"),
        (dict(attention_heads=5), "attention_heads"),
        (dict(cnn_module_kernel=8), "cnn_module_kernel"),
        (dict(subsampling_kernel_size=4), "subsampling_kernel_size"),
        (dict(compression_fixed_ratio=0), "compression_fixed_ratio"),
        (dict(rel_pos_type="legacy"), "rel_pos_type"),
        (dict(compression_max_out_size=-1), "compression_max_out_size"),
    ],
)
def test_invalid_settings_fail_at_construction_naming_the_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        small_encoder(**overrides)


def test_too_short_input_is_rejected_naming_the_batch_position():
    encoder = small_encoder().eval()
    feats, lengths = pad_batch([torch.randn(30, 20), torch.randn(3, 20)])
    with pytest.raises(ValueError, match=r"#1: 3 frames"):
        encoder(feats, lengths)


def test_output_shapes_and_ctc_lengths_before_compression():
    encoder = small_encoder().eval()
    feats, lengths = pad_batch([torch.randn(40, 20), torch.randn(17, 20)])
    out = encoder.encode(feats, lengths)
    assert out.ctc_lengths.tolist() == [10, 5]  # 4x subsampling, ceil
    assert out.ctc_logits.shape == (2, 10, 12)
    assert (out.lengths <= out.ctc_lengths).all()
    assert out.hidden.shape == (2, int(out.lengths.max()), 64)
    hidden, olens, states = encoder(feats, lengths)
    assert torch.equal(hidden, out.hidden) and torch.equal(olens, out.lengths) and states is None


def test_compression_none_keeps_the_subsampled_length():
    encoder = small_encoder(compression="none").eval()
    feats, lengths = pad_batch([torch.randn(40, 20), torch.randn(17, 20)])
    out = encoder.encode(feats, lengths)
    assert torch.equal(out.lengths, out.ctc_lengths)


def assert_invariant(encoder, utterances, batch_sizes, encode=None):
    """Each utterance alone gives the same states as in every padded batch (``encode``: the
    encoder's, or a compiled one)."""
    encode = encode or encoder.encode
    alone = [encode(*pad_batch([u])) for u in utterances]
    for size in batch_sizes:
        for start in range(0, len(utterances), size):
            chunk = utterances[start : start + size]
            out = encode(*pad_batch(chunk))
            for i, single in enumerate(alone[start : start + size]):
                n = int(single.lengths[0])
                assert int(out.lengths[i]) == n
                assert int(out.ctc_lengths[i]) == int(single.ctc_lengths[0])
                diff = (out.hidden[i, :n] - single.hidden[0, :n]).abs().max().item()
                assert diff <= TOLERANCE, f"batch of {size}: utterance {start + i} differs by {diff}"
                assert torch.count_nonzero(out.hidden[i, n:]) == 0


@pytest.mark.parametrize(
    "compression, rel_pos_type",
    [(strategy, "fbk") for strategy in ("avg", "weighted", "softmax", "fixed", "none")]
    + [("avg", "latest"), ("none", "latest")],
)
@torch.no_grad()
def test_padding_never_changes_the_output_at_batch_1_10_100(compression, rel_pos_type):
    encoder = small_encoder(compression=compression, rel_pos_type=rel_pos_type).eval()
    utterances = random_utterances(100, 5, 160, 20, seed=7)
    assert_invariant(encoder, utterances, batch_sizes=[10, 100])


@pytest.mark.parametrize(
    "compression, backend",
    [(strategy, "aot_eager") for strategy in ("avg", "weighted", "softmax", "fixed")] + [("avg", "inductor")],
)
@torch.no_grad()
def test_compiled_encoder_is_padding_invariant_and_computes_the_eager_states(compression, backend):
    """Compiled, the compression pads its output to a width known from the shapes: the valid
    states are still the eager ones and still independent of the batch. ``aot_eager``: the
    compiled code path with eager kernels; ``inductor``: generated kernels (one strategy: CI time)."""
    from espnet2_ext.train.compilation import compiled

    encoder = small_encoder(compression=compression, compression_max_out_size=6).eval()
    encode = compiled(encoder.encode, backend=backend)
    utterances = random_utterances(10, 5, 160, 20, seed=7)
    assert_invariant(encoder, utterances, batch_sizes=[10], encode=encode)
    eager, got = encoder.encode(*pad_batch(utterances)), encode(*pad_batch(utterances))
    assert torch.equal(got.lengths, eager.lengths) and torch.equal(got.ctc_lengths, eager.ctc_lengths)
    assert got.hidden.size(1) >= eager.hidden.size(1)
    torch.testing.assert_close(got.hidden[:, : eager.hidden.size(1)], eager.hidden, rtol=1e-5, atol=1e-5)
    assert not got.hidden[:, eager.hidden.size(1) :].any()


@pytest.mark.parametrize("rel_pos_type", ["fbk", "latest"])
@torch.no_grad()
def test_full_size_encoder_is_padding_invariant(rel_pos_type):
    torch.manual_seed(0)
    encoder = CTCCompressConformerEncoder(input_size=80, ctc_vocab_size=5000, rel_pos_type=rel_pos_type).eval()
    utterances = random_utterances(10, 5, 120, 80, seed=3)
    assert_invariant(encoder, utterances, batch_sizes=[10])


def test_full_size_parameters_with_fbk_vocabularies_are_fbks_count():
    """FBK's en-de model: 114,894,730 parameters with 8000 target and 5002 source entries."""
    from espnet2_ext.asr.decoder.fbk_transformer_decoder import FBKTransformerDecoder

    encoder = CTCCompressConformerEncoder(input_size=80, ctc_vocab_size=5002)
    decoder = FBKTransformerDecoder(vocab_size=8000, encoder_output_size=512)
    count = sum(p.numel() for module in (encoder, decoder) for p in module.parameters())
    assert count == 114_894_730


def test_fbk_and_latest_attention_have_the_same_parameters():
    shapes = [
        {name: tuple(p.shape) for name, p in small_encoder(rel_pos_type=kind).state_dict().items()}
        for kind in ("fbk", "latest")
    ]
    assert shapes[0] == shapes[1]


def test_training_batchnorm_statistics_ignore_padding():
    """In training mode the BatchNorm statistics come from valid frames only."""
    utterances = random_utterances(6, 20, 60, 20, seed=5)
    feats, lengths = pad_batch(utterances)
    longer_pad, _ = pad_batch(utterances + [torch.randn(200, 20)])
    means = []
    for batch in (feats, longer_pad[:6]):
        encoder = small_encoder(dropout_rate=0.0, positional_dropout_rate=0.0, attention_dropout_rate=0.0)
        encoder.train()
        encoder.encode(batch, lengths)
        means.append(encoder.blocks[0].conv.norm.running_mean.clone())
    assert torch.allclose(means[0], means[1], atol=1e-6)
