"""simulstream's protocol: each message parsed or refused, our replies as simulstream writes them,
and a client's session (the real tiny translator) through its states."""

import json

import numpy as np
import pytest
import soundfile as sf
from simulstream.server.speech_processors.incremental_output import IncrementalOutput

from espnet2_ext.serving.protocol import (
    END_OF_PROCESSING,
    Configuration,
    EndOfStream,
    ProtocolError,
    parse_audio,
    parse_text,
    words_message,
)
from espnet2_ext.serving.session import ClientSession
from espnet2_ext.simultaneous.live import LiveWord
from tests.serving.conftest import RATE, reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_configuration_as_simulstreams_client_sends_it():
    message = json.dumps({"sample_rate": 44100, "target_lang": "de", "metrics_metadata": {"wav_name": "a.wav"}})
    assert parse_text(message) == Configuration(44100, {"wav_name": "a.wav"})
    assert parse_text("{}") == Configuration(16000)  # simulstream's default rate
    assert parse_text('{"end_of_stream": true}') == EndOfStream()


@pytest.mark.parametrize("message, says", [
    ("{not json", "malformed JSON"),
    ("", "malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"sample_rate": "fast"}', "sample_rate: the sample rate must be a number"),
    ('{"sample_rate": 16000.5}', "whole number of Hz"),
    ('{"sample_rate": 100}', "below 8000 Hz"),
    ('{"sample_rate": 10000000}', "above 384000 Hz"),
    ('{"target_lang": 7}', "target_lang: expected a language code"),
])
def test_a_bad_text_message_is_refused_saying_why(message, says):
    with pytest.raises(ProtocolError, match=says):
        parse_text(message)


def test_audio_is_16_bit_little_endian_and_an_odd_byte_count_is_refused():
    samples = np.array([0, 1, -1, 32767, -32768], dtype="<i2")
    assert parse_audio(samples.tobytes()).tolist() == samples.tolist()
    with pytest.raises(ProtocolError, match="5 bytes, an odd number"):
        parse_audio(b"\x00" * 5)


def test_replies_are_simulstreams_with_our_word_times():
    words = [LiveWord("Guten", 1.23456, 1), LiveWord("Tag.", 1.5, 1)]
    first, later = words_message(words, 1.6, continues=False), words_message(words[1:], 2.0, continues=True)
    theirs = json.loads(IncrementalOutput(["Guten", "Tag."], "Guten Tag.", [], "").strings_to_json())
    assert {key: json.loads(first)[key] for key in theirs} == theirs
    assert json.loads(first)["words"] == [{"text": "Guten", "time": 1.235}, {"text": "Tag.", "time": 1.5}]
    assert json.loads(later)["new"] == " Tag."  # the new texts of a stream concatenate to its translation
    assert json.loads(END_OF_PROCESSING) == {"end_of_processing": True}


def test_a_session_translates_streams_one_after_another(make_translator, talks):
    samples = sf.read(talks[0], dtype="int16")[0]
    expected = reference(make_translator, samples)
    session = ClientSession(make_translator())
    for _ in range(2):  # a second stream on the same connection gives the same
        assert session.receive(json.dumps({"sample_rate": RATE})) == []
        replies = []
        for start in range(0, len(samples), 4000):
            replies += session.receive(samples[start : start + 4000].tobytes())
        replies += session.receive('{"end_of_stream": true}')
        assert replies[-1] == END_OF_PROCESSING
        messages = [json.loads(reply) for reply in replies[:-1]]
        assert "".join(m["new"] for m in messages) == " ".join(w.text for w in expected)
        assert [(w["text"], w["time"]) for m in messages for w in m["words"]] == [
            (w.text, round(w.time, 3)) for w in expected
        ]
        assert messages[-1]["received"] == pytest.approx(len(samples) / RATE, abs=1e-3)


def test_a_session_refuses_what_comes_out_of_place(make_translator):
    session = ClientSession(make_translator())
    with pytest.raises(ProtocolError, match="audio before the configuration"):
        session.receive(b"\x00\x00")
    with pytest.raises(ProtocolError, match="end_of_stream before any configuration"):
        session.receive('{"end_of_stream": true}')
    session.receive('{"sample_rate": 16000}')
    session.receive(b"\x00\x00" * 100)
    with pytest.raises(ProtocolError, match="in the middle of a stream"):
        session.receive('{"sample_rate": 8000}')
