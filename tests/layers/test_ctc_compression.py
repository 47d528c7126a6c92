"""CTC compression on hand-built posteriors, one case per rule."""

import pytest
import torch

from espnet2_ext.layers.ctc_compression import ctc_compress

VOCAB = 10


def one_hot_logits(labels, vocab=VOCAB, high=10.0):
    """Logits whose argmax is ``labels`` (B, T) -> (B, T, V)."""
    return torch.nn.functional.one_hot(torch.tensor(labels), vocab).float() * high


def frame_states(batch, time, dim=3):
    """States whose frame t of utterance b is (b*100 + t) in every dim, easy to read."""
    values = torch.arange(batch)[:, None] * 100.0 + torch.arange(time)[None, :]
    return values[:, :, None].repeat(1, 1, dim)


def test_avg_merges_runs_including_blank_runs():
    states = frame_states(1, 6)
    out, lengths = ctc_compress(states, torch.tensor([6]), one_hot_logits([[0, 0, 7, 7, 7, 0]]), "avg")
    assert lengths.tolist() == [3]
    assert out[0, :, 0].tolist() == pytest.approx([0.5, 3.0, 5.0])


def test_padded_frames_are_never_read_and_outputs_padded_with_zeros():
    # Utterance 1 has 3 valid frames; its padding continues the last run's label
    # and carries huge values: neither may leak into the result.
    labels = [[1, 1, 2, 2, 3, 3], [4, 5, 5, 5, 5, 5]]
    states = frame_states(2, 6)
    states[1, 3:] = 1e6
    out, lengths = ctc_compress(states, torch.tensor([6, 3]), one_hot_logits(labels), "avg")
    assert lengths.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == pytest.approx([0.5, 2.5, 4.5])
    assert out[1, :2, 0].tolist() == pytest.approx([100.0, 101.5])
    assert out[1, 2].abs().max() == 0


def test_repeated_label_after_blank_starts_a_new_run():
    out, lengths = ctc_compress(frame_states(1, 5), torch.tensor([5]), one_hot_logits([[3, 3, 0, 3, 3]]), "avg")
    assert lengths.tolist() == [3]
    assert out[0, :, 0].tolist() == pytest.approx([0.5, 2.0, 3.5])


def test_weighted_uses_run_probabilities_of_its_label():
    # Two runs of label 1 then label 2, with chosen probabilities of the run label.
    probs = torch.full((1, 4, 3), 0.0)
    probs[0, 0] = torch.tensor([0.1, 0.6, 0.3])
    probs[0, 1] = torch.tensor([0.1, 0.8, 0.1])
    probs[0, 2] = torch.tensor([0.2, 0.3, 0.5])
    probs[0, 3] = torch.tensor([0.0, 0.1, 0.9])
    logits = probs.clamp(min=1e-9).log()
    states = frame_states(1, 4)
    out, lengths = ctc_compress(states, torch.tensor([4]), logits, "weighted")
    assert lengths.tolist() == [2]
    expected_first = (0.6 * 0 + 0.8 * 1) / (0.6 + 0.8)
    expected_second = (0.5 * 2 + 0.9 * 3) / (0.5 + 0.9)
    assert out[0, :, 0].tolist() == pytest.approx([expected_first, expected_second], rel=1e-5)


def test_softmax_normalises_exponentiated_probabilities_within_the_run():
    probs = torch.tensor([[[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]]])
    out, lengths = ctc_compress(frame_states(1, 3), torch.tensor([3]), probs.log(), "softmax")
    weights = torch.tensor([0.8, 0.6, 0.9]).exp()
    weights = weights / weights.sum()
    assert lengths.tolist() == [1]
    assert out[0, 0, 0].item() == pytest.approx(float((weights * torch.arange(3.0)).sum()), rel=1e-5)


def test_fixed_groups_ignore_ctc_and_keep_a_short_last_group():
    states = frame_states(2, 10)
    logits = one_hot_logits([[1] * 10, [2] * 10])
    out, lengths = ctc_compress(states, torch.tensor([10, 5]), logits, "fixed", fixed_ratio=4)
    assert lengths.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == pytest.approx([1.5, 5.5, 8.5])
    assert out[1, :2, 0].tolist() == pytest.approx([101.5, 104.0])
    assert out[1, 2].abs().max() == 0


def test_none_returns_input_unchanged():
    states, lengths = frame_states(1, 4), torch.tensor([4])
    out, new_lengths = ctc_compress(states, lengths, one_hot_logits([[1, 1, 1, 1]]), "none")
    assert out is states and new_lengths is lengths


def test_max_out_size_merges_neighbouring_runs():
    # Runs (1x2) (2x1) (3x3) (4x1): 4 runs, cap 2 -> merge pairs of runs.
    labels = [[1, 1, 2, 3, 3, 3, 4]]
    out, lengths = ctc_compress(frame_states(1, 7), torch.tensor([7]), one_hot_logits(labels), "avg", max_out_size=2)
    assert lengths.tolist() == [2]
    assert out[0, :, 0].tolist() == pytest.approx([1.0, 4.5])


def test_max_out_size_group_label_is_the_majority_ties_to_the_first():
    # Group 1: labels 1 (2 frames) and 2 (1 frame) -> label 1 weighs the frames.
    # Group 2: labels 5 (2 frames) and 6 (2 frames), a tie -> 5 reached 2 first.
    probs = torch.full((1, 7, 7), 0.01)
    chosen = [(1, 0.9), (1, 0.5), (2, 0.9), (5, 0.9), (5, 0.3), (6, 0.9), (6, 0.9)]
    for t, (label, p) in enumerate(chosen):
        probs[0, t, label] = p
    # Make label 5's probability at the label-6 frames known, for the expectation.
    probs[0, 5, 5] = 0.05
    probs[0, 6, 5] = 0.02
    probs = probs / probs.sum(-1, keepdim=True)
    states = frame_states(1, 7)
    out, lengths = ctc_compress(states, torch.tensor([7]), probs.log(), "weighted", max_out_size=2)
    assert lengths.tolist() == [2]
    w1 = probs[0, :3, 1]
    w2 = probs[0, 3:, 5]
    expected = [float((w1 * torch.arange(3.0)).sum() / w1.sum()), float((w2 * torch.arange(3.0, 7.0)).sum() / w2.sum())]
    assert out[0, :, 0].tolist() == pytest.approx(expected, rel=1e-5)


def test_max_out_size_leaves_short_utterances_alone():
    labels = [[1, 2, 3, 4, 5, 6], [1, 1, 2, 2, 2, 2]]
    out, lengths = ctc_compress(frame_states(2, 6), torch.tensor([6, 6]), one_hot_logits(labels), "avg", max_out_size=3)
    assert lengths.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == pytest.approx([0.5, 2.5, 4.5])
    assert out[1, :2, 0].tolist() == pytest.approx([100.5, 103.5])


@pytest.mark.parametrize("strategy", ["avg", "weighted", "softmax", "fixed"])
def test_gradients_flow_to_states_with_the_compression_weights(strategy):
    torch.manual_seed(0)
    logits = torch.randn(2, 9, VOCAB)
    logits[:, :, 3] += 1.5  # long runs of label 3
    states = torch.randn(2, 9, 4, requires_grad=True)
    lengths = torch.tensor([9, 6])
    out, new_lengths = ctc_compress(states, lengths, logits, strategy)
    out.sum().backward()
    grad = states.grad[..., 0]
    # Each valid frame's gradient is its weight; weights of a group sum to one.
    assert grad[0].sum().item() == pytest.approx(new_lengths[0].item(), rel=1e-5)
    assert grad[1, :6].sum().item() == pytest.approx(new_lengths[1].item(), rel=1e-5)
    assert grad[1, 6:].abs().max() == 0
    assert (grad[0] > 0).all()


def test_unknown_strategy_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="'mean'"):
        ctc_compress(frame_states(1, 2), torch.tensor([2]), one_hot_logits([[1, 1]]), "mean")
