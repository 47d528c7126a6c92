"""``serve``: the door runs, stops on Ctrl-C, and bad options or a port in use end as one ``ERROR:`` line."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
from websockets.sync.client import connect

from espnet2_ext.bin import serve
from tests.helpers import with_default_ctrl_c

ROOT = Path(__file__).resolve().parents[2]
POLICY = ["--translator", "live", "--policy", "waitk", "--waitk", "1", "--segment_factor", "2", "--segment_ms", "300", "--cmvn", "prefix",
          "--beam_size", "2", "--maxlen_b", "20", "--attention_layer", "1"]


def one_error(capsys, *argv: str) -> str:
    assert serve.main(list(argv)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ERROR: "), err
    return err[0]


def test_a_port_in_use_is_one_error_naming_it(packed_trained, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        error = one_error(capsys, "--model", str(packed_trained), "--port", str(port), *POLICY)
    assert error == f"ERROR: --port {port}: 127.0.0.1:{port} is already in use"


@pytest.mark.parametrize("argv, says", [
    (["--max_clients", "0"], "--max_clients must be >= 1, got 0"),
    (["--num_threads", "0"], "--num_threads must be >= 1, got 0"),
    (["--idle_seconds", "0"], "--idle_seconds must be > 0, got 0.0"),
    (["--port", "70000"], "--port must be in 0..65535, got 70000"),
    (["--segment_ms", "10"], "segment_ms must be an integer >= 40 ms, got 10"),
    (["--translator", "magic"], "argument --translator: invalid choice: 'magic'"),
    (["--host", "256.0.0.1"], "--host 256.0.0.1 --port 0: cannot listen there"),
    (["--policy", "alignatt", "--attention_layer", "7"], "attention_layer 7: the decoder of"),
    (["--history_words", "5"], "--history_words: for --translator stream, not live"),
    (["--translator", "stream"], "history words needs a policy that reads the cross-attention"),
])
def test_bad_options_are_one_error(packed_trained, cache, capsys, argv, says):
    base = ["--model", str(packed_trained), "--cache_dir", str(cache), "--port", "0", *POLICY]
    assert says in one_error(capsys, *base, *argv)


def test_a_missing_model_is_one_error(tmp_path, capsys):
    assert one_error(capsys, "--model", str(tmp_path / "no.zip")) == f"ERROR: --model {tmp_path / 'no.zip'}: no such file or directory"


def test_it_serves_until_ctrl_c(packed_trained, cache, clips):
    command = [sys.executable, "-m", "espnet2_ext.bin.serve", "--model", str(packed_trained), "--cache_dir",
               str(cache), "--port", "0", "--max_clients", "1", *POLICY]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=with_default_ctrl_c)
    try:
        line = process.stderr.readline()
        assert line.startswith("Serving http://127.0.0.1:") and "1 client(s) at once" in line, line
        url = line.split()[1].rstrip("/")
        with urllib.request.urlopen(url + "/", timeout=10) as page:
            assert b'id="mic"' in page.read()
        with connect(url.replace("http", "ws") + "/ws") as ws:
            ws.send(json.dumps({"sample_rate": 16000}))
            ws.send(sf.read(sorted(clips.values())[0], dtype="int16")[0].tobytes())
            ws.send(json.dumps({"end_of_stream": True}))
            replies = [json.loads(ws.recv(timeout=60))]
            while "end_of_processing" not in replies[-1]:
                replies.append(json.loads(ws.recv(timeout=60)))
        assert replies[-1] == {"end_of_processing": True}
        assert "".join(reply["new"] for reply in replies[:-1]).strip()
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "INTERRUPTED by SIGINT (Ctrl-C): the server stopped"
