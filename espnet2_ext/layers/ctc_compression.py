"""CTC compression: squeeze encoder states into one vector per run of CTC labels.

This is the one place that knows what the strategies ``avg``, ``weighted``,
``softmax``, ``fixed`` and ``none`` mean (FBK, Gaido et al. 2021, "CTC-based
compression for direct speech translation").
"""


import torch

from espnet2_ext.layers.masks import make_valid_mask

COMPRESSION_STRATEGIES = ("none", "avg", "weighted", "softmax", "fixed")


def ctc_compress(
    states: torch.Tensor,
    lengths: torch.Tensor,
    ctc_logits: torch.Tensor,
    strategy: str,
    fixed_ratio: int = 4,
    max_out_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge consecutive frames that share a CTC label into one vector.

    The argmax of ``ctc_logits`` splits each utterance into runs of equal labels
    (blank runs included); each run becomes one vector, a weighted sum of its
    frames. The grouping and the weights carry no gradient (as in FBK's code):
    gradients flow into ``states`` only. Padded frames (``t >= lengths[b]``)
    are never read, and padded output positions are zero.

    Strategies:
        ``avg``: the mean of the run's frames.
        ``weighted``: weights are the run's CTC probabilities of its label,
            normalised within the run.
        ``softmax``: softmax, within the run, of those same probabilities.
        ``fixed``: ignore CTC; average uniform groups of ``fixed_ratio`` frames
            (the last group may be shorter).
        ``none``: return the input unchanged.

    With ``max_out_size``, an utterance with more than ``max_out_size`` runs has
    its runs merged in groups of ``ceil(runs / max_out_size)`` neighbours; a
    merged group's label (used by ``weighted``/``softmax``) is the label covering
    most of its frames, ties going to the label that reached that count first.

    Example:
        One utterance, 6 frames, argmax labels ``[0, 0, 7, 7, 7, 0]`` (0 = blank)
        gives runs ``[0, 1] [2, 3, 4] [5]``; with ``avg`` the output is
        ``[mean(x0, x1), mean(x2, x3, x4), x5]`` and the new length is 3.

    Args:
        states: encoder states (B, T, D).
        lengths: valid frames per utterance (B,).
        ctc_logits: CTC logits over the source vocabulary (B, T, V).
        strategy: one of ``COMPRESSION_STRATEGIES``.
        fixed_ratio: group size of the ``fixed`` strategy.
        max_out_size: cap on the compressed length (``None``: no cap).

    Returns:
        compressed states (B, T', D) with T' = max new length, new lengths (B,).
    """
    if strategy not in COMPRESSION_STRATEGIES:
        raise ValueError(
            f"strategy: unknown CTC compression strategy {strategy!r}, "
            f"expected one of {COMPRESSION_STRATEGIES}"
        )
    if max_out_size is not None and max_out_size < 1:
        raise ValueError(f"max_out_size must be >= 1 or None (no cap), got {max_out_size}")
    if strategy == "none":
        return states, lengths
    batch, time, _ = states.shape
    with torch.no_grad():
        frame = torch.arange(time, device=states.device)
        valid = make_valid_mask(lengths, time)
        if strategy == "fixed":
            if fixed_ratio < 1:
                raise ValueError(f"fixed_ratio must be >= 1, got {fixed_ratio}")
            group = (frame // fixed_ratio).expand(batch, time)
            new_lengths = torch.div(lengths + fixed_ratio - 1, fixed_ratio, rounding_mode="floor")
            weights = _mean_weights(group, valid, int(new_lengths.max()))
        else:
            probs = ctc_logits.float().softmax(-1)
            labels = probs.argmax(-1)  # of the probabilities, as FBK: rounding can tie what logits order
            group, new_lengths = _label_runs(labels, valid, max_out_size)
            n_groups = int(new_lengths.max())
            if strategy == "avg":
                weights = _mean_weights(group, valid, n_groups)
            else:
                group_labels = _group_majority_label(labels, group, valid, n_groups)
                frame_label = group_labels.gather(1, group.clamp(max=n_groups - 1))
                prob = probs.gather(2, frame_label.unsqueeze(-1)).squeeze(-1)
                if strategy == "softmax":
                    prob = prob.exp()
                weights = _normalise_within_groups(prob, group, valid, n_groups)
    return _weighted_group_sum(states, group, valid, weights, new_lengths), new_lengths


def compressed_run_lengths(
    lengths: torch.Tensor,
    ctc_logits: torch.Tensor,
    strategy: str,
    fixed_ratio: int = 4,
    max_out_size: int | None = None,
) -> list[list[int]]:
    """How many encoder frames each compressed position covers, per utterance.

    The groups :func:`ctc_compress` merges, by the same rule (``none``: one frame
    each): what a simultaneous policy needs to turn a compressed position back
    into time. Each list has one entry per output position and sums to the
    utterance's length.
    """
    if strategy not in COMPRESSION_STRATEGIES:
        raise ValueError(f"strategy: unknown CTC compression strategy {strategy!r}")
    time = ctc_logits.size(1)
    valid = make_valid_mask(lengths.to(ctc_logits.device), time)
    if strategy == "none":
        return [[1] * int(n) for n in lengths]
    if strategy == "fixed":
        group = (torch.arange(time, device=ctc_logits.device) // fixed_ratio).expand_as(valid)
    else:
        labels = ctc_logits.float().softmax(-1).argmax(-1)
        group, _ = _label_runs(labels, valid, max_out_size)
    counts = []
    for b in range(group.size(0)):
        _, sizes = torch.unique_consecutive(group[b][valid[b]], return_counts=True)
        counts.append(sizes.tolist())
    return counts


def _label_runs(
    labels: torch.Tensor, valid: torch.Tensor, max_out_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the run each frame belongs to, and the number of runs (B,)."""
    changes = torch.ones_like(valid)
    changes[:, 1:] = labels[:, 1:] != labels[:, :-1]
    starts = changes & valid
    group = starts.long().cumsum(1) - 1
    n_runs = starts.sum(1)
    if max_out_size is not None:
        factor = torch.div(n_runs + max_out_size - 1, max_out_size, rounding_mode="floor").clamp(min=1)
        group = torch.div(group, factor[:, None], rounding_mode="floor")
        n_runs = torch.div(n_runs + factor - 1, factor, rounding_mode="floor")
    return group.clamp(min=0), n_runs


def _flat_index(group: torch.Tensor, valid: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Row of each valid frame in a (B * n_groups) flattening of the output."""
    batch_offset = torch.arange(group.size(0), device=group.device)[:, None] * n_groups
    return (batch_offset + group)[valid]


def _group_sum(values: torch.Tensor, group: torch.Tensor, valid: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per-frame values (B, T) summed within each group, broadcast back to frames."""
    index = _flat_index(group, valid, n_groups)
    sums = values.new_zeros(group.size(0) * n_groups).index_add_(0, index, values[valid])
    per_frame = values.new_zeros(values.shape)
    per_frame[valid] = sums[index]
    return per_frame


def _mean_weights(group: torch.Tensor, valid: torch.Tensor, n_groups: int) -> torch.Tensor:
    ones = valid.float()
    counts = _group_sum(ones, group, valid, n_groups)
    return torch.where(valid, ones / counts.clamp(min=1.0), torch.zeros_like(ones))


def _normalise_within_groups(
    values: torch.Tensor, group: torch.Tensor, valid: torch.Tensor, n_groups: int
) -> torch.Tensor:
    values = values.masked_fill(~valid, 0.0)
    totals = _group_sum(values, group, valid, n_groups)
    return torch.where(valid, values / totals.clamp(min=torch.finfo(values.dtype).tiny), values)


def _group_majority_label(
    labels: torch.Tensor, group: torch.Tensor, valid: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Label covering most frames of each group (B, n_groups).

    Without ``max_out_size`` every group is a single run, so this is the run's
    label. Ties go to the label whose last frame comes first, i.e. the one that
    reached the winning count first.
    """
    batch, time = labels.shape
    vocab = int(labels.max()) + 1
    frame = torch.arange(time, device=labels.device).expand(batch, time)[valid]
    flat_group = _flat_index(group, valid, n_groups)
    keys = flat_group * vocab + labels[valid]
    unique_keys, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    last_frame = torch.zeros_like(unique_keys).scatter_reduce(
        0, inverse, frame, reduce="amax", include_self=False
    )
    score = counts * (time + 1) - last_frame
    key_group = torch.div(unique_keys, vocab, rounding_mode="floor")
    best = torch.full((batch * n_groups,), -1, dtype=score.dtype, device=score.device)
    best = best.scatter_reduce(0, key_group, score, reduce="amax", include_self=True)
    winners = score == best[key_group]
    group_labels = torch.zeros(batch * n_groups, dtype=labels.dtype, device=labels.device)
    group_labels[key_group[winners]] = unique_keys[winners] % vocab
    return group_labels.view(batch, n_groups)


def _weighted_group_sum(
    states: torch.Tensor,
    group: torch.Tensor,
    valid: torch.Tensor,
    weights: torch.Tensor,
    new_lengths: torch.Tensor,
) -> torch.Tensor:
    batch, _, dim = states.shape
    n_groups = int(new_lengths.max())
    index = _flat_index(group, valid, n_groups)
    contributions = states[valid] * weights[valid].to(states.dtype).unsqueeze(-1)
    out = states.new_zeros(batch * n_groups, dim).index_add(0, index, contributions)
    return out.view(batch, n_groups, dim)
