"""The server: its page's files, simulstream's own client, several clients at once, and the
clients it closes (broken input, silence, one past the limit) while the others go on."""

import asyncio
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from simulstream.client.wav_reader_client import stream_wav_files
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from espnet2_ext.serving.server import page_files
from tests.serving.conftest import RATE, reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def get(url: str, **headers: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def stream(url: str, samples: np.ndarray, chunk: int = 1600) -> list[dict]:
    """A whole stream as simulstream's client sends it; every message back until the last."""
    with connect(url) as ws:
        ws.send(json.dumps({"sample_rate": RATE}))
        for start in range(0, len(samples), chunk):
            ws.send(samples[start : start + chunk].tobytes())
        ws.send(json.dumps({"end_of_stream": True}))
        messages = []
        while not ({"end_of_processing", "error"} & set(messages[-1] if messages else {})):
            messages.append(json.loads(ws.recv(timeout=120)))
        return messages


def words(messages: list[dict]) -> list[tuple[str, float]]:
    return [(word["text"], word["time"]) for message in messages for word in message.get("words", [])]


def expected(make_translator, samples: np.ndarray) -> list[tuple[str, float]]:
    return [(word.text, round(word.time, 3)) for word in reference(make_translator, samples)]


def told_and_closed(ws) -> tuple[str, int]:
    """The one error message a client gets, and the close code that follows it."""
    error = json.loads(ws.recv(timeout=30))["error"]
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=30)
    return error, closed.value.rcvd.code


def as_simulstream_sends(samples: np.ndarray, chunk: int) -> np.ndarray:
    """What simulstream 1.0.0's client sends of a wav: its chunks, then its last chunk once more
    (``send_audio``'s "last part" is sent again after the loop that sent it)."""
    last = (len(samples) - 1) // chunk * chunk
    return np.concatenate([samples, samples[last:]])


@pytest.fixture(scope="module")
def talk_samples(talks) -> list[np.ndarray]:
    return [sf.read(path, dtype="int16")[0] for path in talks]


def test_the_page_is_served_on_the_same_port(serve):
    with serve(max_clients=1) as served:
        status, kind, body = get(served.url + "/")
        assert (status, kind) == (200, "text/html; charset=utf-8") and b'id="mic"' in body
        for path, (content, content_type) in page_files().items():
            assert get(served.url + path)[1:] == (content_type, content)
        assert get(served.url + "/app.js")[1] == "text/javascript; charset=utf-8"
        assert get(served.url + "/../pyproject.toml")[0] == 404
        assert get(served.url + "/ws")[0] == 426  # a browser's plain request: a WebSocket path
        assert get(served.url + "/", Origin="http://elsewhere.example")[0] == 403


def test_every_file_of_the_page_is_package_data():
    """pyproject's package data names every file of static/ (a wheel would serve a page without them)."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = root / "espnet2_ext/serving/static"
    files = sorted(path.relative_to(static.parent).as_posix() for path in static.iterdir())
    assert files and all(any(fnmatch.fnmatch(f, p) for p in patterns["espnet2_ext.serving"]) for f in files)
    assert {"index.html", "app.js", "capture-worklet.js", "resampler.js", "transcript.js", "style.css"} <= {
        Path(f).name for f in files}


def test_simulstreams_own_client_gets_the_translation(serve, make_translator, talks, talk_samples, caplog, tmp_path):
    listing = tmp_path / "wavs.txt"
    listing.write_text("".join(f"{path}\n" for path in talks[:2]))
    with serve(max_clients=1) as served:
        client = shutil.which("simulstream_wavs_client", path=str(Path(sys.executable).parent))
        run = subprocess.run([client, "--uri", served.ws, "--wav-list-file", str(listing)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "All 2 files sent." in run.stderr
        sent = [as_simulstream_sends(samples, 1600) for samples in talk_samples[:2]]
        assert [a.tolist() for a in served.received()] == [s.tolist() for s in sent]
        # its library, in this process, to read what it received (it logs the replies)
        caplog.set_level(logging.DEBUG, logger="simulstream.wav_reader_client")
        asyncio.run(stream_wav_files(served.ws, [str(talks[0])], chunk_duration_ms=250))
    replies = [json.loads(r.message) for r in caplog.records if r.name == "simulstream.wav_reader_client"
               and r.message.startswith("{")]
    assert replies[-1] == {"end_of_processing": True}
    assert words(replies) == expected(make_translator, as_simulstream_sends(talk_samples[0], 4000))
    assert "".join(r["new"] for r in replies[:-1]) == " ".join(w for w, _ in words(replies))


@pytest.mark.parametrize("broken, says", [
    (["{oops"], "malformed JSON"),
    ([json.dumps({"sample_rate": RATE}), b"\x00\x01\x02"], "3 bytes, an odd number"),
    ([b"\x00\x00" * 800], "audio before the configuration"),
    ([json.dumps({"sample_rate": RATE})], "nothing received for 2 s"),
])
def test_two_clients_at_once_and_a_third_with_broken_input(serve, make_translator, talk_samples, broken, says):
    results: dict[int, list] = {}

    def client(number: int) -> None:
        results[number] = stream(served.ws, talk_samples[number])

    with serve(max_clients=3, idle_seconds=2) as served:
        threads = [threading.Thread(target=client, args=(n,)) for n in (0, 1)]
        for thread in threads:
            thread.start()
        with connect(served.ws) as ws:
            for message in broken:
                ws.send(message)
            error, code = told_and_closed(ws)
        for thread in threads:
            thread.join(timeout=120)
    assert says in error and code == 1008
    for number in (0, 1):
        assert results[number][-1] == {"end_of_processing": True}
        assert words(results[number]) == expected(make_translator, talk_samples[number])


def test_a_client_past_the_limit_is_told_so_and_one_leaving_midway_frees_its_translator(
    serve, make_translator, talk_samples
):
    samples = talk_samples[0]
    with serve(max_clients=1) as served:
        with connect(served.ws) as first:
            first.send(json.dumps({"sample_rate": RATE}))
            first.send(samples[: len(samples) // 2].tobytes())  # and leaves in the middle of its stream
            with connect(served.ws) as second:
                error, code = told_and_closed(second)
        assert "busy: it translates 1 client(s) at a time" in error and code == 1013
        deadline = time.monotonic() + 30
        while served.server.clients and time.monotonic() < deadline:  # the first one's last push ending
            time.sleep(0.05)
        # its translator is the next client's, clean
        assert words(stream(served.ws, samples)) == expected(make_translator, samples)


def test_the_streaming_translator_served_writes_what_simulate_writes(packed_trained, cache, talk_samples):
    """``serve --translator stream`` (the default): the words and times a client gets for a talk
    are those ``simulate --history`` records for it (the same policy, history and chunk)."""
    from espnet2_ext.serving.server import LiveServer, listen, running
    from espnet2_ext.serving.translators import translator_factory
    from espnet2_ext.streaming.evaluation import stream_talk
    from espnet2_ext.streaming.translator import StreamingTranslator

    options = dict(policy="alignatt", frame_num=1, attention_layer=1, segment_ms=300, cmvn="prefix", beam_size=2,
                   maxlen_b=20, history="words", history_words=3)
    server = LiveServer(translator_factory("stream", packed_trained, cache, **options), 1, 30.0)
    samples = talk_samples[0]
    try:
        with running(server, listen("127.0.0.1", 0)) as url:
            served = words(stream(url.replace("http", "ws", 1) + "/ws", samples))
    finally:
        server.close()
    record = stream_talk(StreamingTranslator.from_pretrained(packed_trained, cache, **options),
                         samples.astype(np.float32) / 32768, 0, "talk", "")
    assert [w for w, _ in served] == record.prediction.split() and served
    assert [t for _, t in served] == pytest.approx([d / 1000 for d in record.delays], abs=1e-3)
