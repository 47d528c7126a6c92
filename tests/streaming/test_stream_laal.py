"""StreamLAAL on FBK's own unit-test cases (``fbk_simul_uts/scripts/test_stream_laal.py``).

FBK's test reads an ``instances.log`` fixture that is not in its repository; its
delays and elapsed times are rebuilt here from the test's expected values: the delays
are given whole; each elapsed time follows from the expected re-based one by inverting
the rule (``E = e - e_prev + d_prev`` for a word whose ``e`` differs from the previous).
"""

import pytest

from espnet2_ext.streaming.stream_laal import SentenceDelays, sentence_delays, stream_laal

LINES = [
    "Ich brauche , dass du nach oben gehst, das Feuer vorbeigehst,",
    "und ich brauche, dass du diese Frau ein Paar Schuhe holst. (Gel\u00e4chter)",
]
STARTS = [0.0, 4000.0]
DURATIONS = [4000.0, 5340.0]
REFERENCES = [
    "Sie m\u00fcssen nach oben gehen, an dem Feuer vorbei,",
    "und m\u00fcssen dieser Frau ein Paar Schuhe holen. \"(Gel\u00e4chter) Ich schw\u00f6re es.",
]
DELAYS = [2000.0] * 2 + [3000.0] * 3 + [4000.0] * 7 + [5000.0] * 5 + [6000.0] * 3 + [7000.0] * 2 + [9340.0]
EXPECTED_DELAYS = [
    [2000.0, 2000.0, 3000.0, 3000.0, 3000.0] + [4000.0] * 6,
    [0.0] + [1000.0] * 5 + [2000.0] * 3 + [3000.0] * 2 + [5340.0],
]
EXPECTED_ELAPSED = [
    [3013.3280754089355] * 2 + [3467.2186374664307] * 3 + [4658.461809158325] * 6,
    [658.4618091583252] + [1528.4709930419922] * 5 + [2518.195867538452] * 3 + [3472.9058742523193] * 2
    + [6388.263072967529],
]


def rebuilt_elapsed() -> list[float]:
    """The fixture's elapsed times: one per distinct delay, from the expected re-based values."""
    rebased = [e + start for line, start in zip(EXPECTED_ELAPSED, STARTS) for e in line]
    elapsed = [rebased[0]]
    for n in range(1, len(DELAYS)):
        if DELAYS[n] == DELAYS[n - 1]:
            elapsed.append(elapsed[-1])
        else:
            elapsed.append(rebased[n] + elapsed[-1] - DELAYS[n - 1])
    return elapsed


def test_fbk_segment_level_delays_and_elapsed():
    sentences = sentence_delays(LINES, STARTS, DELAYS, rebuilt_elapsed())
    assert [s.delays for s in sentences] == EXPECTED_DELAYS
    for got, expected in zip(sentences, EXPECTED_ELAPSED):
        assert got.elapsed == pytest.approx(expected, abs=1e-6)
    assert [len(s.delays) for s in sentences] == [11, 12]  # FBK's test_resegment_instances


def test_fbk_elapsed_with_offset_at_the_beginning():
    """FBK's test starts its processor in the middle of a talk (the previous word's delay
    312000, elapsed 560622.504..., re-based elapsed 11121.946...): a first sentence holding
    that one word, starting where its re-based elapsed time comes out so, stands for it."""
    lines = ["x", "also fangen Sie an zu erfinden.", "Danke.", "(Applaus)"]
    before = 560622.5044727325 - 11121.946849822998
    starts = [before, 311220.0, 313780.0, 318730.0]
    delays = [312000.0, 313000.0, 313000.0, 313000.0, 314000.0, 314000.0, 314000.0, 323925.375, 323925.375]
    elapsed = [560622.5044727325, 562553.1053543091, 562553.1053543091, 562553.1053543091, 564361.4521026611,
               564361.4521026611, 564361.4521026611, 582028.8121852875, 582028.8121852875]
    sentences = sentence_delays(lines, starts, delays, elapsed)[1:]
    assert [s.delays for s in sentences] == [[1780.0] * 3 + [2780.0] * 3, [10145.375], [5195.375]]
    assert sentences[0].elapsed == pytest.approx([2710.600881576538] * 3 + [3588.346748352051] * 3)
    assert sentences[1].elapsed == pytest.approx([17887.360082626343])
    assert sentences[2].elapsed == pytest.approx([12937.360082626343])


def test_fbk_negative_delays_are_clamped_at_zero():
    sentences = sentence_delays(
        ["fangen Sie an", "zu erfinden."], [1500.0, 3000.0],
        [0.0, 1000.0, 3000.0, 3500.0, 4000.0], [1000.0, 2000.0, 4000.0, 5000.0, 6000.0],
    )
    assert sentences == [SentenceDelays([0.0, 0.0, 1500.0], [0.0, 0.0, 1500.0]),
                         SentenceDelays([500.0, 1000.0], [1000.0, 1500.0])]


def test_stream_laal_is_simulevals_laal_per_sentence_averaged():
    sentences = sentence_delays(LINES, STARTS, DELAYS, rebuilt_elapsed())
    scores = stream_laal(sentences, DURATIONS, REFERENCES)

    def laal(delays, source, reference):  # SimulEval 1.1.4's LAALScorer.compute, written out
        if delays[0] > source:
            return delays[0]
        gamma = max(len(delays), len(reference.split(" "))) / source
        total, tau = 0.0, 0
        for t, d in enumerate(delays):
            total += d - t / gamma
            tau = t + 1
            if d >= source:
                break
        return total / tau

    expected = [laal(s.delays, dur, ref) for s, dur, ref in zip(sentences, DURATIONS, REFERENCES)]
    expected_ca = [laal(s.elapsed, dur, ref) for s, dur, ref in zip(sentences, DURATIONS, REFERENCES)]
    assert scores.plain == pytest.approx(sum(expected) / 2)
    assert scores.computation_aware == pytest.approx(sum(expected_ca) / 2)


def test_empty_lines_take_no_delays_and_are_left_out_of_the_mean():
    sentences = sentence_delays(["", "a b", ""], [0.0, 1000.0, 2000.0], [1500.0, 1800.0], [1600.0, 1900.0])
    assert [s.delays for s in sentences] == [[], [500.0, 800.0], []]
    only = stream_laal(sentences[1:2], [1000.0], ["a b"])
    assert stream_laal(sentences, [500.0, 1000.0, 700.0], ["x", "a b", "y z"]) == only
    assert stream_laal(sentence_delays([""], [0.0], [], []), [1000.0], ["x"]) == (None, None)
    with pytest.raises(ValueError, match="hold 2 words for 3 delays"):
        sentence_delays(["a b"], [0.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_simulstreams_stream_laal_scorer_gives_ours_where_no_word_precedes_its_sentence():
    """simulstream's ``stream_laal`` scorer (mweralign's cut, delays re-based but not clamped) on
    a talk whose every word comes after its sentence's start gives ours; a word before it is
    where they part (ours clamps it at 0, FBK's v2.0)."""
    from types import SimpleNamespace

    from simulstream.metrics.readers import OutputWithDelays, ReferenceSentenceDefinition
    from simulstream.metrics.scorers.latency import LatencyScoringSample
    from simulstream.metrics.scorers.latency.stream_laal import StreamLaal

    from espnet2_ext.main_funcs.talk_alignment import TalkReference, align_talk

    references = ["Ich schreibe die Geschichten.", "Der Vater trinkt die Milch.", "Danke."]
    starts, durations = [500.0, 3000.0, 6000.0], [2000.0, 2500.0, 1500.0]
    words = "Ich schreibe Geschichten. Der Vater trinkt heute die Milch. Danke.".split()

    def both(delays: list[float]) -> tuple[float, float]:
        sample = LatencyScoringSample("talk", OutputWithDelays(" ".join(words), [d / 1000 for d in delays],
                                                               [d / 1000 for d in delays]),
                                      [ReferenceSentenceDefinition(r, s / 1000, d / 1000)
                                       for r, s, d in zip(references, starts, durations)])
        theirs = StreamLaal(SimpleNamespace(latency_unit="word")).score([sample]).ideal_latency * 1000
        lines = align_talk(TalkReference("talk", ("0", "1", "2"), tuple(references)), " ".join(words)).lines
        ours = stream_laal(sentence_delays(lines, starts, delays, delays), durations, references).plain
        return ours, theirs

    late = [1200.0, 1600.0, 2400.0, 3600.0, 4000.0, 4400.0, 5000.0, 5200.0, 5600.0, 6800.0]
    ours, theirs = both(late)
    assert ours == pytest.approx(theirs)
    early = [1200.0, 1600.0, 2400.0, 2800.0, 4000.0, 4400.0, 5000.0, 5200.0, 5600.0, 6800.0]  # "Der" at 2.8 s
    ours, theirs = both(early)
    assert ours > theirs
