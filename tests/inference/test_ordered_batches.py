"""Segments of many inputs decoded in batches of similar lengths; inputs handed back in order."""

import numpy as np
import pytest

from espnet2_ext.inference.ordered_batches import OrderedBatches


class Recorder:
    """A decoder that records each batch's lengths and returns each array's length."""

    def __init__(self):
        self.batches = []

    def __call__(self, features):
        self.batches.append([len(f) for f in features])
        return [len(f) for f in features]


def features(n: int) -> np.ndarray:
    return np.zeros((n, 2), dtype=np.float32)


def test_inputs_come_back_in_order_with_their_segments_in_time_order():
    decode = Recorder()
    batches = OrderedBatches(decode, batch_size=2, pool_batches=2)
    out = []
    lengths = {"a": [30, 5, 17], "b": [], "c": [8], "d": [40, 2, 9, 11]}
    for name, segment_lengths in lengths.items():
        number = batches.open(name)
        for i, n in enumerate(segment_lengths):
            batches.add(number, (float(i), float(i + 1)), features(n))
            out += list(batches.ready())
        batches.close(number)
        out += list(batches.ready())
    out += list(batches.finish())
    assert [f.name for f in out] == list(lengths) and [f.number for f in out] == [0, 1, 2, 3]
    for finished in out:
        assert [decoded for _, decoded in finished.segments] == lengths[finished.name]
        expected = [(float(i), float(i + 1)) for i in range(len(lengths[finished.name]))]
        assert [span for span, _ in finished.segments] == expected
    assert all(len(b) <= 2 for b in decode.batches)
    first_pool = sorted([30, 5, 17, 8])
    assert decode.batches[:2] == [first_pool[:2], first_pool[2:]], "a full pool is decoded shortest first"


def test_an_input_is_released_as_soon_as_it_and_those_before_are_done():
    batches = OrderedBatches(Recorder(), batch_size=1, pool_batches=1)
    first = batches.open("first")
    batches.add(first, (0.0, 1.0), features(3))  # pool of 1: decoded at once
    assert list(batches.ready()) == [], "not closed yet"
    batches.close(first)
    assert [f.name for f in batches.ready()] == ["first"]
    second = batches.open("second")
    third = batches.open("third")
    batches.close(third)
    assert list(batches.ready()) == [], "the second holds the third back"
    batches.close(second)
    assert [f.name for f in batches.ready()] == ["second", "third"]


def test_a_failed_input_drops_its_segments_and_keeps_its_message():
    decode = Recorder()
    batches = OrderedBatches(decode, batch_size=4)
    good = batches.open("good")
    batches.add(good, (0.0, 1.0), features(5))
    batches.close(good)
    bad = batches.open("bad", ["a warning"])
    batches.add(bad, (0.0, 1.0), features(7))
    batches.fail(bad, "bad: not audio")
    done = list(batches.finish())
    assert [(f.name, f.error, f.segments) for f in done] == [
        ("good", None, [((0.0, 1.0), 5)]), ("bad", "bad: not audio", []),
    ]
    assert done[1].warnings == ["a warning"]
    assert decode.batches == [[5]], "the failed input's segment is not decoded"


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        OrderedBatches(Recorder(), batch_size=0)
