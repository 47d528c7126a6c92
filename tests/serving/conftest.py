"""The served translator (the tiny trained model), a talk to stream, and a server in a thread."""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.fileio.data_dir import read_recordings
from espnet2_ext.serving.server import LiveServer, listen, running
from espnet2_ext.serving.translators import TimedRun, translate_timed, translator_factory

RATE = 16000
# the policy the tests serve: cheap on the tiny model (as tests/bin/test_simulate.py's)
OPTIONS = dict(policy="waitk", waitk=1, segment_factor=2, segment_ms=300, cmvn="prefix", beam_size=2, maxlen_b=20,
               attention_layer=1)


@pytest.fixture(scope="module")
def make_translator(packed_trained, cache) -> Callable:
    return translator_factory("live", packed_trained, cache, **OPTIONS)


@pytest.fixture(scope="module")
def talks(trained, tmp_path_factory) -> list[Path]:
    """The tiny test set's talks (4 sentences each, about 13 s), each with 1 s of silence added at its
    end (a browser's audio may come late: the talk stays whole in what it sends)."""
    work, _, _ = trained
    out = tmp_path_factory.mktemp("talks")
    paths = []
    for recording in read_recordings(work / "data/tst-COMMON"):
        samples, rate = sf.read(recording.wav, dtype="int16")
        assert rate == RATE
        paths.append(out / f"{recording.recording_id}.wav")
        sf.write(paths[-1], np.concatenate([samples, np.zeros(RATE, dtype=np.int16)]), RATE, subtype="PCM_16")
    return paths


def reference(make_translator: Callable, samples: np.ndarray) -> list[TimedRun]:
    """What the translator writes for ``samples`` (16-bit, 16 kHz) in Python, pushed as the page pushes."""
    return translate_timed(make_translator(), samples, RATE, 1600)


class Recording:
    """A translator that also keeps the audio it is given: what the server received."""

    def __init__(self, translator, log: list):
        self.translator = translator
        self.log = log
        self.stream: list = []
        log.append(self.stream)

    def push(self, samples, sample_rate):
        self.stream.append(np.array(samples))
        return self.translator.push(samples, sample_rate)

    def finish(self):
        return self.translator.finish()

    def reset(self):
        self.stream = []
        self.log.append(self.stream)
        self.translator.reset()


class Served:
    """A running server: its address and the audio of every stream its translators were given."""

    def __init__(self, server: LiveServer, url: str, streams: list):
        self.server = server
        self.url = url
        self.ws = url.replace("http", "ws", 1) + "/ws"
        self._streams = streams

    def received(self) -> list[np.ndarray]:
        """The audio of each stream that had some (each translator's, in the order they started)."""
        return [np.concatenate(parts) for parts in self._streams if parts]


@pytest.fixture(scope="module")
def serve(make_translator) -> Callable:
    """``serve(max_clients, idle_seconds)`` as a context manager: a :class:`Served`."""
    from contextlib import contextmanager

    @contextmanager
    def start(max_clients: int = 3, idle_seconds: float = 30.0) -> Iterator[Served]:
        streams: list = []
        server = LiveServer(lambda: Recording(make_translator(), streams), max_clients, idle_seconds)
        try:
            with running(server, listen("127.0.0.1", 0)) as url:
                yield Served(server, url, streams)
        finally:
            server.close()

    return start
