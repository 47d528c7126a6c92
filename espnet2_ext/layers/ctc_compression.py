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
    static_size: bool = False,
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
        static_size: give the output the most positions the shapes allow
            (T, or ``max_out_size`` if smaller; ``ceil(T / fixed_ratio)`` for
            ``fixed``), padded, instead of the longest new length: nothing then
            waits for the device to say what that length is (``torch.compile``
            keeps one graph, a GPU runs on), at the cost of the later layers'
            work on the padding.

    Returns:
        compressed states (B, T', D) with T' = max new length (or the static
        size), new lengths (B,).
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
            n_groups = -(-time // fixed_ratio) if static_size else _read_count(new_lengths)
            weights = _mean_weights(group, valid, n_groups)
        else:
            probs = ctc_logits.float().softmax(-1)
            labels = probs.argmax(-1)  # of the probabilities, as FBK: rounding can tie what logits order
            group, new_lengths = _label_runs(labels, valid, max_out_size)
            n_groups = min(time, max_out_size or time) if static_size else _read_count(new_lengths)
            if strategy == "avg":
                weights = _mean_weights(group, valid, n_groups)
            else:
                group_labels = _group_majority_label(labels, group, valid, n_groups, ctc_logits.size(-1))
                frame_label = group_labels.gather(1, group.clamp(max=n_groups - 1))
                prob = probs.gather(2, frame_label.unsqueeze(-1)).squeeze(-1)
                if strategy == "softmax":
                    prob = prob.exp()
                weights = _normalise_within_groups(prob, group, valid, n_groups)
    return _weighted_group_sum(states, group, valid, weights, n_groups), new_lengths


def _read_count(new_lengths: torch.Tensor) -> int:
    """The output length, ``max(new_lengths)``: the compression's one read of the device.

    Every other step keeps its shapes (a (B, T) index per frame, padded frames
    sent to a discarded row) so that nothing else waits for the device.
    """
    return int(new_lengths.max())


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
    """Row of each frame (B, T) in a (B * n_groups + 1) flattening of the output; padded
    frames go to the last row, which is discarded."""
    batch_offset = torch.arange(group.size(0), device=group.device)[:, None] * n_groups
    return torch.where(valid, batch_offset + group, group.size(0) * n_groups)


def _group_sum(values: torch.Tensor, group: torch.Tensor, valid: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per-frame values (B, T) summed within each group, broadcast back to frames (0 on padded ones)."""
    index = _flat_index(group, valid, n_groups).flatten()
    sums = values.new_zeros(group.size(0) * n_groups + 1).index_add_(0, index, values.flatten())
    return torch.where(valid, sums.index_select(0, index).view_as(values), 0.0)


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
    labels: torch.Tensor, group: torch.Tensor, valid: torch.Tensor, n_groups: int, vocab: int
) -> torch.Tensor:
    """Label covering most frames of each group (B, n_groups), of a vocabulary of ``vocab``.

    Without ``max_out_size`` every group is a single run, so this is the run's
    label. Ties go to the label whose last frame comes first, i.e. the one that
    reached the winning count first. The (group, label) pairs are found by a
    stable sort of the frames by pair, so every shape is the batch's (B * T).
    """
    batch, time = labels.shape
    rows = batch * n_groups + 1  # the last: padded frames, discarded
    keys = _flat_index(group, valid, n_groups).flatten() * vocab + labels.flatten()
    sorted_keys, order = torch.sort(keys, stable=True)
    frame = torch.arange(time, device=labels.device).repeat(batch).index_select(0, order)
    starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    pair = starts.long().cumsum(0) - 1  # (group, label) pair of each sorted frame
    counts = torch.zeros_like(sorted_keys).index_add_(0, pair, torch.ones_like(sorted_keys))
    last_frame = torch.zeros_like(sorted_keys).scatter_reduce(0, pair, frame, reduce="amax", include_self=False)
    pair_key = torch.zeros_like(sorted_keys).scatter_(0, pair, sorted_keys)  # the same key for a pair's frames
    exists = counts > 0
    score = counts * (time + 1) - last_frame
    pair_group = torch.where(exists, torch.div(pair_key, vocab, rounding_mode="floor"), rows - 1)
    best = torch.full((rows,), -1, dtype=score.dtype, device=score.device)
    best = best.scatter_reduce(0, pair_group, score, reduce="amax", include_self=True)
    winners = exists & (score == best.index_select(0, pair_group)) & (pair_group < rows - 1)
    group_labels = torch.zeros(rows, dtype=labels.dtype, device=labels.device)
    group_labels.scatter_(0, torch.where(winners, pair_group, rows - 1), pair_key % vocab)
    return group_labels[:-1].view(batch, n_groups)


def _weighted_group_sum(
    states: torch.Tensor,
    group: torch.Tensor,
    valid: torch.Tensor,
    weights: torch.Tensor,
    n_groups: int,
) -> torch.Tensor:
    batch, time, dim = states.shape
    index = _flat_index(group, valid, n_groups).flatten()
    contributions = (states * weights.to(states.dtype).unsqueeze(-1)).reshape(batch * time, dim)
    out = states.new_zeros(batch * n_groups + 1, dim).index_add(0, index, contributions)
    return out[:-1].view(batch, n_groups, dim)
