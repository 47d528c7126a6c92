"""instances.log: SimulEval 1.1.4's own lines read and written back byte for byte, our
lines read by SimulEval's LogInstance, killed writes recovered, bad lines placed."""

import json
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from simuleval.data.dataloader import SpeechToTextDataloader
from simuleval.data.segments import EmptySegment, TextSegment
from simuleval.evaluator.instance import LogInstance, SpeechToTextInstance

from espnet2_ext.simultaneous.instances import (
    InstanceRecord,
    InstancesLogError,
    InstancesLogWriter,
    read_instances,
)

REPO = Path(__file__).resolve().parents[2]
# Instance.summarize's keys for speech input, text output, latency unit "word".
SIMULEVAL_KEYS = [
    "index",
    "prediction",
    "delays",
    "elapsed",
    "prediction_length",
    "reference",
    "source",
    "source_length",
]


def record(index: int, words: str = "Hallo Welt", reference: str = "Hallo , Welt !") -> InstanceRecord:
    n = len(words.split())
    delays = [640.0 * (i + 1) for i in range(n)]
    return InstanceRecord.from_words(
        index, words.split(), delays, [d + 55.5 for d in delays], reference, f"utt{index}.wav", 2000.0
    )


def simuleval_line(tmp_path: Path, writes: list[str], reference: str) -> str:
    """The instances.log line SimulEval 1.1.4 itself writes after its speech-to-text
    instance read a 3.5 s wav in 640 ms chunks, receiving ``writes[i]`` after chunk i
    and the rest of ``writes`` at the end."""
    wav = tmp_path / "utt.wav"
    soundfile.write(wav, np.zeros(56000, dtype="float32"), 16000)
    loader = SpeechToTextDataloader([str(wav)], [reference])
    instance = SpeechToTextInstance(0, loader, Namespace(eval_latency_unit="word"))
    step = 0
    while not instance.source_finished_reading:
        instance.send_source(640)
        content = writes[step] if step < len(writes) else ""
        instance.receive_prediction(TextSegment(content=content) if content else EmptySegment())
        step += 1
    instance.receive_prediction(TextSegment(content=" ".join(writes[step:]), finished=True))
    return json.dumps(instance.summarize())


@pytest.mark.parametrize(
    "writes",
    [["", "Hallo", "", "Welt , wie geht's", "", "", "dir ? Grüße"], ["a  b\tc ", "", "d"], [""]],
    ids=["words", "odd-spaces", "nothing-written"],
)
def test_simuleval_own_line_reads_and_writes_back_identically(tmp_path, writes):
    line = simuleval_line(tmp_path, writes, "Hallo Welt , wie  geht es dir ?")
    path = tmp_path / "instances.log"
    path.write_text(line + "\n", encoding="utf-8")
    [ours] = read_instances(path).records
    assert ours.json_line() == line
    assert ours.source_length == 3500.0
    assert ours.reference_length == LogInstance(line).reference_length == 9  # 8 words, the double space counts
    assert ours.prediction_length == len(ours.prediction.split())


def test_our_lines_are_read_by_simuleval_log_instance(tmp_path):
    path = tmp_path / "exp" / "instances.log"
    records = [record(0), record(1, "", ""), record(2, "ein  zwei drei", "eins zwei  drei vier")]
    with InstancesLogWriter(path, resume=False) as writer:
        for r in records:
            writer.write(r)
    assert read_instances(path) == (records, None)
    lines = path.read_text(encoding="utf-8").splitlines()
    for ours, line in zip(records, lines, strict=True):
        theirs = LogInstance(line)
        assert list(json.loads(line)) == list(theirs.info) == SIMULEVAL_KEYS
        assert (theirs.index, theirs.prediction, theirs.reference) == (ours.index, ours.prediction, ours.reference)
        assert (theirs.delays, theirs.elapsed) == (list(ours.delays), list(ours.elapsed))
        assert theirs.source_length == ours.source_length
        assert theirs.reference_length == ours.reference_length
    assert records[1].reference_length == 1  # "".split(" ") is [""]
    assert records[2].prediction == "ein zwei drei"


def test_torn_last_line_is_reported_then_cut_on_resume(tmp_path):
    path = tmp_path / "instances.log"
    with InstancesLogWriter(path, resume=False) as writer:
        writer.write(record(0))
        writer.write(record(3))
    whole = path.read_bytes()
    torn = record(5).json_line().encode()[:40]
    path.write_bytes(whole + torn)

    log = read_instances(path)
    assert log == ([record(0), record(3)], 3)
    with InstancesLogWriter(path, resume=True) as writer:
        assert (writer.done, writer.torn_line) == ({0, 3}, 3)
        assert path.read_bytes() == whole
        writer.write(record(5))
        with pytest.raises(ValueError, match="index 3 is already written"):
            writer.write(record(3))
    assert read_instances(path) == ([record(0), record(3), record(5)], None)


def test_each_record_is_in_the_file_once_written(tmp_path):
    path = tmp_path / "instances.log"
    with InstancesLogWriter(path, resume=False) as writer:
        writer.write(record(0, "Grüße"))
        assert read_instances(path) == ([record(0, "Grüße")], None)
        assert path.read_bytes().isascii()  # json.dumps's default, as SimulEval writes it
        with pytest.raises(ValueError, match="index 0 is already written"):
            writer.write(record(0))


def test_without_resume_the_log_starts_empty(tmp_path):
    path = tmp_path / "instances.log"
    path.write_text(record(0).json_line() + "\n{half", encoding="utf-8")
    with InstancesLogWriter(path, resume=False) as writer:
        assert writer.done == set()
        writer.write(record(1))
    assert read_instances(path) == ([record(1)], None)


WRITER = """
import sys
from espnet2_ext.simultaneous.instances import InstanceRecord, InstancesLogWriter
words = ["Wort"] * 20000  # lines of ~300 kB: a kill may land inside one
with InstancesLogWriter(sys.argv[1], resume=True) as writer:
    print("ready", flush=True)
    for index in range(10**6):
        if index not in writer.done:
            writer.write(InstanceRecord.from_words(index, words, [1.0] * 20000, [2.0] * 20000, "r", "s", 9.0))
"""


def test_killed_writer_keeps_whole_lines_and_resumes(tmp_path):
    path = tmp_path / "instances.log"
    counts = []
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        log = read_instances(path)  # every whole line parses, whatever the kill cut
        assert [r.index for r in log.records] == list(range(len(log.records)))
        counts.append(len(log.records))
    assert counts[0] > 0 and counts == sorted(counts)


GOOD = record(0).json_line()


def good_fields(**changes) -> str:
    fields = json.loads(record(1).json_line())
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not JSON: Expecting property name"),
        ("[1, 2]", "a JSON list, not an object"),
        ("   ", "a blank line"),
        (good_fields(elapsed=...), "keys: missing elapsed"),
        (good_fields(metric={}), "keys: unknown metric"),
        (good_fields(delays="640"), "delays must be a list of numbers"),
        (good_fields(delays=[640, "x"]), r"delays\[1\] must be a finite number, not 'x'"),
        (good_fields(delays=[640, True]), r"delays\[1\] must be a finite number, not True"),
        (good_fields(elapsed=[1.0]), "2 delays but 1 elapsed times"),
        (good_fields(prediction_length=3), "prediction_length 3, 2 predicted words and 2 delays"),
        (good_fields(prediction="Hallo"), "prediction_length 2, 1 predicted words and 2 delays"),
        (good_fields(index=-1), "index must be a non-negative integer"),
        (good_fields(index=1.0), "index must be a non-negative integer"),
        (good_fields(source_length=0), "source_length must be a positive number"),
        (good_fields(source=["a", 1]), "source must be a string or a list of strings"),
        (good_fields(reference=None), "prediction and reference must be strings"),
        (GOOD, "index 0 is already on line 1"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "instances.log"
    path.write_text(f"{GOOD}\n{bad}\n{record(2).json_line()}\n", encoding="utf-8")
    with pytest.raises(InstancesLogError, match=rf"^{path}:2: {message}"):
        read_instances(path)


def test_bad_last_line_with_its_newline_is_an_error_not_a_torn_write(tmp_path):
    path = tmp_path / "instances.log"
    path.write_text(f"{GOOD}\n{{half\n", encoding="utf-8")
    with pytest.raises(InstancesLogError, match=rf"^{path}:2: not JSON"):
        read_instances(path)
    with pytest.raises(InstancesLogError, match=rf"^{path}:2: not JSON"):
        InstancesLogWriter(path, resume=True)


def test_unreadable_files(tmp_path):
    path = tmp_path / "instances.log"
    path.write_bytes(GOOD.encode() + b"\n" + GOOD.replace("Hallo", "Hall\xf6").encode("latin-1") + b"\n")
    with pytest.raises(InstancesLogError, match=rf"^{path}:2: not UTF-8: byte 0xf6"):
        read_instances(path)
    with pytest.raises(InstancesLogError, match=rf"^cannot read {tmp_path / 'missing.log'}"):
        read_instances(tmp_path / "missing.log")


def test_record_checks_itself():
    with pytest.raises(ValueError, match="1 delays but 0 elapsed times"):
        InstanceRecord.from_words(0, ["a"], [1.0], [], "a", "s", 10.0)
    with pytest.raises(ValueError, match=r"delays\[0\] must be a finite number, not nan"):
        InstanceRecord.from_words(0, ["a"], [float("nan")], [1.0], "a", "s", 10.0)
    lines = InstanceRecord.from_words(0, ["a"], [1], [2], "a", ["x.wav", "rate: 16000"], 10)
    assert (lines.delays, lines.source, lines.source_length) == ((1.0,), ("x.wav", "rate: 16000"), 10.0)
    assert json.loads(lines.json_line())["source"] == ["x.wav", "rate: 16000"]
