"""simulstream runs our zips: its own inference command with our processor writes what simulate writes."""

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
import yaml

from espnet2_ext.fileio.data_dir import read_recordings
from espnet2_ext.simultaneous.evaluation import simulate_instance
from espnet2_ext.streaming.longform import StreamReferences
from espnet2_ext.streaming.simulstream import processor_options
from espnet2_ext.streaming.translator import StreamingTranslator

BIN = Path(sys.executable).parent
OPTIONS = dict(
    policy="alignatt", frame_num=1, attention_layer=1, segment_ms=400, cmvn="prefix", beam_size=3, maxlen_b=40,
    history="words", history_words=3,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def processor_yaml(path: Path, zip_path: Path, **extra) -> Path:
    config = {
        "model": str(zip_path), "type": "espnet2_ext.streaming.simulstream.StreamAttProcessor",
        "detokenizer_type": "simuleval", "latency_unit": "word", **OPTIONS, **extra,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_simulstream_inference_writes_simulates_words(packed_trained, trained, cache, tmp_path):
    work, _, _ = trained
    talks = read_recordings(work / "data/tst-COMMON")[:2]
    wav_list = tmp_path / "talks.txt"
    wav_list.write_text("".join(f"{talk.wav}\n" for talk in talks))
    config = processor_yaml(tmp_path / "streamatt.yaml", packed_trained, cache_dir=str(cache))
    log = tmp_path / "metrics.jsonl"
    subprocess.run(
        [str(BIN / "simulstream_inference"), "--speech-processor-config", str(config), "--wav-list-file",
         str(wav_list), "--metrics-log-file", str(log)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    from simulstream.metrics.readers import LogReader

    outputs = LogReader(SimpleNamespace(detokenizer_type="simuleval", latency_unit="word"), str(log))
    theirs = outputs.final_outputs_and_latencies()
    ours = StreamingTranslator.from_pretrained(packed_trained, cache, **OPTIONS)
    written = 0
    for number, talk in enumerate(talks):
        samples, _ = sf.read(talk.wav, dtype="float32")
        record = simulate_instance(ours, samples, number, talk.wav, "")
        output = theirs[Path(talk.wav).stem]
        assert output.final_text == record.prediction
        assert [1000 * d for d in output.ideal_delays] == pytest.approx(list(record.delays))
        written += len(record.delays)
    assert written > 0

    references = StreamReferences.from_data_dir(work / "data/tst-COMMON", "text.tgt", tmp_path / "ref")
    names = {talk.recording_id: Path(talk.wav).name for talk in talks}
    sentences = [s for s in references.sentences if Path(s.wav).stem in names]
    yaml_path, text_path = tmp_path / "two.yaml", tmp_path / "two.de"
    yaml_path.write_text("".join(
        f"- {{duration: {s.duration}, offset: {s.offset}, wav: {names[Path(s.wav).stem]}}}\n" for s in sentences
    ))
    text_path.write_text("".join(s.text + "\n" for s in sentences))
    scored = subprocess.run(
        [str(BIN / "simulstream_score_latency"), "--eval-config", str(config), "--log-file", str(log),
         "--audio-definition", str(yaml_path), "--reference", str(text_path), "--scorer", "stream_laal"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )
    assert "Latency scores" in scored.stdout


def test_the_shipped_processor_yaml_names_the_model_first_and_only_known_keys(packed_trained):
    """conf/simulstream/streamatt.yaml, with its model swapped for the test's: every key is known."""
    shipped = Path(__file__).resolve().parents[2] / "conf/simulstream/streamatt.yaml"
    config = yaml.safe_load(shipped.read_text())
    assert list(config)[0] == "model"
    loading, options = processor_options(SimpleNamespace(**{**config, "model": str(packed_trained)}))
    assert loading == {"model": str(packed_trained)} and options == {}


@pytest.mark.parametrize("change, message", [
    (dict(beam=5), "unknown key(s) beam"),
    (dict(model="no/such/model.zip"), "is not a model zip"),
    (dict(history="none"), "the processor streams with StreamAtt"),
    (dict(policy="waitk"), "needs a policy that reads the cross-attention"),
])
def test_processor_yaml_errors_name_the_key(packed_trained, tmp_path, change, message):
    config = processor_yaml(tmp_path / "bad.yaml", packed_trained, **change)
    with pytest.raises(ValueError, match=re.escape(message)):
        processor_options(SimpleNamespace(**yaml.safe_load(config.read_text())))


def test_simulstream_gets_one_error_line_for_a_bad_yaml(packed_trained, tmp_path):
    config = processor_yaml(tmp_path / "bad.yaml", packed_trained, beam=5)
    run = subprocess.run(
        [str(BIN / "simulstream_inference"), "--speech-processor-config", str(config), "--wav-list-file",
         str(tmp_path / "none.txt"), "--metrics-log-file", str(tmp_path / "m.jsonl")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR:")]
    assert run.returncode == 1 and len(errors) == 1 and "unknown key(s) beam" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
