"""SHAS's pDAC: our vectorised trimming and explicit stack against a plain copy of SHAS's recursion."""

import numpy as np
import pytest

from espnet2_ext.segmentation.divide_and_conquer import divide_and_conquer


def shas_pdac(probs, max_len, min_len, threshold):
    """SHAS's ``pdac`` (strict mode) as its segment.py writes it, in frames: recursion, trims by search."""

    def trim(start, stop):
        inside = np.where(probs[start:stop] >= threshold)[0]
        if not len(inside):
            return (start, start)
        return (start + inside[0], start + inside[-1] + 1)

    segments = []

    def split(piece):
        start, stop = piece
        if stop - start < max_len:
            segments.append(piece)
            return
        order = np.argsort(probs[start:stop], kind="stable")
        for k in order:
            a, b = trim(start, start + k), trim(start + k + 1, stop)
            if a[1] - a[0] > min_len and b[1] - b[0] > min_len:
                split(a)
                split(b)
                return
        if a[1] - a[0] > min_len:
            split(a)
        if b[1] - b[0] > min_len:
            split(b)

    split(trim(0, len(probs)))
    return [s for s in segments if s[1] > s[0]]


def test_worked_example_of_the_docstring():
    probabilities = [0.1, 0.9, 0.8, 0.3, 0.9, 0.9, 0.7, 0.2]
    assert divide_and_conquer(np.array(probabilities), 4, 1, 0.5) == [(1, 3), (4, 7)]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("max_len, min_len", [(30, 3), (100, 6.25), (12.5, 0)])
def test_same_segments_as_shas_recursion(seed, max_len, min_len):
    rng = np.random.default_rng(seed)
    # speech-like: runs of high probability separated by dips, some long silences
    probs = np.clip(rng.normal(0.8, 0.2, 600), 0, 1)
    for start in rng.integers(0, 600, 12):
        probs[start : start + rng.integers(1, 25)] = rng.uniform(0, 0.4)
    expected = shas_pdac(probs, max_len, min_len, 0.5)
    ours = divide_and_conquer(probs, max_len, min_len, 0.5)
    assert ours == expected
    assert all(stop - start < max_len for start, stop in ours)
    assert all(probs[start] >= 0.5 and probs[stop - 1] >= 0.5 for start, stop in ours), "trimmed to speech"
    assert all(a[1] <= b[0] for a, b in zip(ours, ours[1:])), "in order, not overlapping"


def test_splits_at_the_least_speech_like_frame():
    probs = np.full(100, 0.9)
    probs[37] = 0.6  # the only dip, still above the threshold
    assert divide_and_conquer(probs, 80, 5, 0.5) == [(0, 37), (38, 100)]


def test_no_speech_gives_no_segments():
    assert divide_and_conquer(np.full(500, 0.2), 50, 3, 0.5) == []
    assert divide_and_conquer(np.zeros(0), 50, 3, 0.5) == []


def test_pieces_without_speech_are_dropped_and_speech_is_kept():
    probs = np.zeros(300)
    probs[10:40] = 0.9
    probs[200:230] = 0.95
    assert divide_and_conquer(probs, 50, 3, 0.5) == [(10, 40), (200, 230)]


def test_refuses_a_maximum_that_cannot_be_split_above_the_minimum():
    with pytest.raises(ValueError, match="max_frames"):
        divide_and_conquer(np.ones(10), 3, 1, 0.5)


def test_long_pauses_are_cut_whatever_the_lengths():
    probs = np.full(60, 0.9)
    probs[20:24] = 0.1  # a pause of 4 frames
    probs[40:42] = 0.1  # a pause of 2 frames
    assert divide_and_conquer(probs, 100, 1, 0.5) == [(0, 60)], "SHAS: shorter than the maximum, one piece"
    assert divide_and_conquer(probs, 100, 1, 0.5, pause_frames=3) == [(0, 20), (24, 60)]
    assert divide_and_conquer(probs, 100, 1, 0.5, pause_frames=2) == [(0, 20), (24, 40), (42, 60)]
    assert divide_and_conquer(probs, 30, 1, 0.5, pause_frames=3) == [(0, 20), (24, 40), (42, 60)], "then pDAC"
