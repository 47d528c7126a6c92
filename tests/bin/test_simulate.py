"""``simulate``: SimulEval's files, resumed runs, one-line errors, and SimulEval's own agent and scorer."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from espnet2_ext.bin import simulate
from espnet2_ext.main_funcs.model_archive import open_model
from espnet2_ext.simultaneous import evaluation
from espnet2_ext.simultaneous.instances import KEYS, read_instances

AGENT = ["--policy", "waitk", "--waitk", "1", "--segment_factor", "2", "--segment_ms", "300", "--cmvn", "prefix",
         "--beam_size", "3", "--maxlen_b", "30", "--attention_layer", "1"]
COLUMNS = ["BLEU"] + [f"{m}{ca}" for m in ("LAAL", "YAAL", "AL", "AP", "DAL", "ATD", "StartOffset", "EndOffset")
                      for ca in ("", "_CA")]


@pytest.fixture(scope="module")
def test_set(clips, tmp_path_factory) -> tuple[list[str], Path]:
    """Three clips and a reference file (one line each)."""
    work = tmp_path_factory.mktemp("simulate")
    inputs = [str(path) for path in sorted(clips.values())[:3]]
    references = work / "ref.de"
    references.write_text("Das ist ein Haus .\nEin kleiner Baum\nDer Fluss\n", encoding="utf-8")
    return inputs, references


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = simulate.main(list(argv))
    return code, capsys.readouterr().err


def test_writes_simulevals_files_and_a_rerun_resumes(packed_trained, cache, test_set, tmp_path, capsys):
    inputs, references = test_set
    out = tmp_path / "out"
    argv = ["--model", str(packed_trained), "--cache_dir", str(cache), *AGENT, "--reference", str(references),
            "--computation_aware", "--output", str(out), *inputs]
    code, err = cli(capsys, *argv)
    assert code == 0, err
    lines = (out / "instances.log").read_text().splitlines()
    assert [list(json.loads(line)) for line in lines] == [list(KEYS)] * 3
    records = read_instances(out / "instances.log").records
    assert [r.source for r in records] == inputs and [r.index for r in records] == [0, 1, 2]
    header, values = (out / "scores.tsv").read_text().splitlines()
    assert header.split("\t") == COLUMNS and len(values.split("\t")) == len(COLUMNS)
    assert yaml.safe_load((out / "setting.yaml").read_text())["policy"] == "waitk"

    # a run killed after two instances: the rerun translates only the third
    (out / "instances.log").write_text("".join(line + "\n" for line in lines[:2]))
    (out / "scores.tsv").unlink()
    code, err = cli(capsys, *argv)
    assert code == 0, err
    again = (out / "instances.log").read_text().splitlines()
    assert again[:2] == lines[:2] and json.loads(again[2])["prediction"] == json.loads(lines[2])["prediction"]
    assert (out / "scores.tsv").read_text().splitlines()[0] == header

    # the same directory with other options is refused, and left as it was
    code, err = cli(capsys, *[a if a != "300" else "600" for a in argv])
    assert code == 1 and err.startswith("ERROR: ") and "segment_ms: 300" in err and err.count("\n") == 1
    assert (out / "instances.log").read_text().splitlines() == again


def test_simuleval_scores_our_log_as_we_do(packed_trained, cache, test_set, tmp_path, capsys):
    """SimulEval's own --score-only on our output directory gives our BLEU and latency
    (its plain columns repeat the _CA ones with --computation-aware: SimulEval issue #44)."""
    inputs, references = test_set
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *AGENT,
                    "--reference", str(references), "--output", str(out), *inputs)
    assert code == 0, err
    ours = dict(zip(*[line.split("\t") for line in (out / "scores.tsv").read_text().splitlines()]))
    from simuleval import options
    from simuleval.evaluator import SentenceLevelEvaluator

    parser = options.general_parser()  # what `simuleval --score-only` builds (cli.scoring)
    options.add_evaluator_args(parser)
    options.add_scorer_args(parser)
    options.add_dataloader_args(parser)
    metrics = ["LAAL", "AL", "AP", "DAL", "ATD", "StartOffset", "EndOffset"]
    args = parser.parse_args(["--score-only", "--output", str(out), "--latency-metrics", *metrics])
    results = SentenceLevelEvaluator.from_args(args).results
    theirs = {key: float(results[key].iloc[0]) for key in results.columns}
    assert ours.keys() - {"YAAL"} == theirs.keys()  # YAAL is OmniSTEval's: the test below
    for key in theirs:
        assert float(ours[key]) == pytest.approx(theirs[key], abs=1e-3), key


def test_omnisteval_shortform_gives_our_yaal(packed_trained, cache, test_set, tmp_path, capsys):
    """OmniSTEval's own shortform command on our instances.log gives scores.tsv's YAAL and BLEU."""
    inputs, references = test_set
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *AGENT,
                    "--reference", str(references), "--computation_aware", "--output", str(out), *inputs)
    assert code == 0, err
    ours = dict(zip(*[line.split("\t") for line in (out / "scores.tsv").read_text().splitlines()]))
    subprocess.run(
        [str(Path(sys.executable).parent / "omnisteval"), "shortform", "--word_level", "--hypothesis_file",
         str(out / "instances.log"), "--ref_sentences_file", str(references), "--bleu_tokenizer", "13a",
         "--output_folder", str(tmp_path / "omni")],
        check=True, capture_output=True,
    )
    theirs = dict(row.split("\t") for row in (tmp_path / "omni/scores.tsv").read_text().splitlines()[1:])
    assert float(ours["YAAL"]) == pytest.approx(float(theirs["YAAL (CU)"]), abs=1e-3)
    assert float(ours["YAAL_CA"]) == pytest.approx(float(theirs["YAAL (CA)"]), abs=1e-3)
    assert float(ours["BLEU"]) == pytest.approx(float(theirs["BLEU"]), abs=1e-3)


def test_simuleval_runs_our_agent_and_gets_simulates_instances(packed_trained, cache, test_set, tmp_path, capsys):
    inputs, references = test_set
    source = tmp_path / "source.txt"
    source.write_text("".join(f"{path}\n" for path in inputs))
    ours = tmp_path / "ours"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *AGENT,
                    "--reference", str(references), "--output", str(ours), *inputs)
    assert code == 0, err
    agent = [a for a in AGENT if a not in ("--segment_ms", "300")]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "simuleval"),
         "--agent-class", "espnet2_ext.simultaneous.agent.ESPnetSimulSTAgent",
         "--model", str(packed_trained), "--cache_dir", str(cache), *agent,
         "--source", str(source), "--target", str(references), "--source-segment-size", "300",
         "--output", str(tmp_path / "theirs"), "--no-progress-bar"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    mine = read_instances(ours / "instances.log").records
    theirs = read_instances(tmp_path / "theirs/instances.log").records
    assert [(r.prediction, r.delays, r.source_length) for r in theirs] == [
        (r.prediction, r.delays, r.source_length) for r in mine
    ]


def test_settings_file_runs_each_setting_into_its_own_directory(packed_trained, cache, test_set, tmp_path, capsys):
    inputs, references = test_set
    settings = tmp_path / "simulate.yaml"
    settings.write_text(yaml.safe_dump({
        "segment_ms": 600, "cmvn": "prefix", "beam_size": 2, "maxlen_b": 20,
        "settings": [{"policy": "waitk", "waitk": 1, "segment_factor": 4}, {"policy": "la"}],
    }))
    out = tmp_path / "runs"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), "--settings", str(settings),
                    "--nj", "2", "--reference", str(references), "--output", str(out), *inputs)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["la", "waitk_k1"]
    alone = tmp_path / "alone"  # the same setting in this process: the same instances
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), "--policy", "la",
                    "--segment_ms", "600", "--cmvn", "prefix", "--beam_size", "2", "--maxlen_b", "20",
                    "--reference", str(references), "--output", str(alone), *inputs)
    assert code == 0, err
    assert [(r.prediction, r.delays) for r in read_instances(alone / "instances.log").records] == [
        (r.prediction, r.delays) for r in read_instances(out / "la/instances.log").records
    ]
    for name in ("la", "waitk_k1"):
        assert len(read_instances(out / name / "instances.log").records) == 3
        assert (out / name / "scores.tsv").is_file()
        assert yaml.safe_load((out / name / "setting.yaml").read_text())["segment_ms"] == 600


@pytest.mark.parametrize("extra, message", [
    (["--policy", "greedy"], "argument --policy: invalid choice: 'greedy'"),
    (["--frame_num", "-1"], "frame_num must be an integer >= 0, got -1"),
    (["--segment_ms", "30"], "segment_ms must be an integer >= 40 ms, got 30"),
    (["--attention_layer", "5"], "attention_layer 5: the decoder of"),
    (["--cmvn", "global"], "cmvn: global needs global statistics"),
    (["--reference", "SHORT"], "1 reference lines for 3 inputs"),
    (["--policy", "edatt", "--frame_num", "2", "--attn_threshold", "2"],
     "attn_threshold 2 is never reached with frame_num 2"),
])
def test_bad_options_are_one_error_line_and_nothing_written(
    packed_trained, cache, test_set, tmp_path, capsys, monkeypatch, extra, message
):
    inputs, _ = test_set
    short = tmp_path / "short.txt"
    short.write_text("only one line\n")
    extra = [str(short) if a == "SHORT" else a for a in extra]

    def no_audio(*args, **kwargs):
        raise AssertionError("audio was read before the options were checked")

    monkeypatch.setattr(evaluation, "simulate_instance", no_audio)
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), "--policy", "alignatt",
                    "--attention_layer", "1", "--cmvn", "prefix", *extra, "--output", str(out), *inputs)
    assert code == 1 and err.startswith("ERROR: ") and err.count("\n") == 1, err
    assert message in err
    assert not (out / "instances.log").exists()


def test_ctrl_c_is_one_line_and_keeps_the_finished_instances(
    packed_trained, cache, test_set, tmp_path, capsys, monkeypatch
):
    inputs, references = test_set
    real = evaluation.simulate_instance
    calls = []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "simulate_instance", interrupted_on_the_second)
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *AGENT,
                    "--reference", str(references), "--output", str(out), *inputs)
    assert code == 130 and err.count("\n") == 1 and "INTERRUPTED" in err and "run the same command again" in err
    assert len(read_instances(out / "instances.log").records) == 1
    assert not (out / "scores.tsv").exists()


def test_unreadable_input_is_named_and_the_others_are_translated(packed_trained, cache, test_set, tmp_path, capsys):
    inputs, references = test_set
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really")
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *AGENT,
                    "--reference", str(references), "--output", str(out), inputs[0], str(broken), inputs[2])
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("ERROR:")][0].startswith(f"ERROR: {broken}")
    assert [r.index for r in read_instances(out / "instances.log").records] == [0, 2]
    assert not (out / "scores.tsv").exists()


# --------------------------------------------------------------------------- where each option's value comes from

DEMO_CONF = Path(__file__).resolve().parents[2] / "egs/mustc_conformer_ctc/conf/demo/simulate.yaml"


def parsed_settings(*argv: str, packed: dict | None = None) -> list[tuple[str, dict]]:
    """(directory name, options) of each setting ``simulate argv`` would run."""
    parser = simulate.get_parser()
    argv = ["--model", "m.zip", "--output", "out", *argv, "clip.wav"]
    settings = simulate.settings_of(parser.parse_args(argv), parser.given_on_command_line(argv), packed)
    return [(directory.name, vars(options)) for directory, options in settings]


def test_the_command_line_outranks_the_settings_file_which_outranks_the_model(tmp_path):
    settings = tmp_path / "set.yaml"
    settings.write_text(yaml.safe_dump({"frame_num": 2, "segment_ms": 500,
                                        "settings": [{"policy": "alignatt"}, {"policy": "la"}]}))
    packed = {"frame_num": 8, "segment_ms": 400, "attention_layer": 1}
    runs = parsed_settings("--settings", str(settings), "--frame_num", "6", packed=packed)
    assert [name for name, _ in runs] == ["alignatt_f6", "la"]
    assert [(o["frame_num"], o["segment_ms"], o["attention_layer"]) for _, o in runs] == [(6, 500, 1)] * 2
    runs = parsed_settings("--settings", str(settings), packed=packed)  # the file's f, over the model's
    assert [(name, o["frame_num"]) for name, o in runs] == [("alignatt_f2", 2), ("la", 2)]
    (name, options), = parsed_settings(packed=packed)  # one setting: the model's, then FBK's
    assert (name, options["frame_num"], options["segment_ms"], options["policy"]) == ("out", 8, 400, "alignatt")
    (_, options), = parsed_settings("--segment_ms", "1000", packed=packed)  # FBK's value, given, still wins
    assert options["segment_ms"] == 1000


def test_a_command_line_option_that_makes_settings_the_same_is_named(tmp_path):
    settings = tmp_path / "set.yaml"
    settings.write_text(yaml.safe_dump({"settings": [{"frame_num": 2}, {"frame_num": 4}]}))
    with pytest.raises(simulate.CommandError, match="settings 1 and 2 are the same .*command line's --frame_num"):
        parsed_settings("--settings", str(settings), "--frame_num", "6")


def test_config_holding_settings_runs_them_as_settings_does(packed_trained, cache, test_set, tmp_path, capsys):
    """conf/demo/simulate.yaml's keys are simulate's options: --config takes it as --settings does
    (its settings still set their own frame_unit over the shared key)."""
    assert parsed_settings("--config", str(DEMO_CONF)) == parsed_settings("--settings", str(DEMO_CONF))
    assert [name for name, _ in parsed_settings("--config", str(DEMO_CONF))] == [
        "alignatt_f2", "alignatt_f4", "alignatt_f6", "alignatt_f10t"]
    inputs, references = test_set
    out = tmp_path / "demo"
    code, err = cli(capsys, "--config", str(DEMO_CONF), "--model", str(packed_trained), "--cache_dir", str(cache),
                    "--attention_layer", "1", "--cmvn", "prefix", "--maxlen_b", "10", "--reference",
                    str(references), "--output", str(out), *inputs)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["alignatt_f10t", "alignatt_f2", "alignatt_f4", "alignatt_f6"]
    assert yaml.safe_load((out / "alignatt_f10t/setting.yaml").read_text())["frame_unit"] == "time"
    assert {yaml.safe_load((out / name / "setting.yaml").read_text())["attention_layer"]
            for name in ("alignatt_f2", "alignatt_f10t")} == {1}


@pytest.mark.parametrize("extra, message", [
    (["--output", "{tmp}/no/such/dir"], "--output {tmp}/no/such/dir: directory {tmp}/no/such does not exist"),
    (["--nj", "2", "--output", "{tmp}/out"], "--nj 2 runs the settings of --settings in parallel"),
])
def test_output_and_nj_mistakes_are_one_line_before_the_model(tmp_path, capsys, extra, message):
    extra = [a.format(tmp=tmp_path) for a in extra]
    code, err = cli(capsys, "--model", str(tmp_path / "no_model.zip"), *extra, str(tmp_path))
    assert code == 1 and err.startswith(f"ERROR: {message.format(tmp=tmp_path)}") and err.count("\n") == 1, err
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- SimulEval's command line, our agent


def simuleval(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "simuleval"),
         "--agent-class", "espnet2_ext.simultaneous.agent.ESPnetSimulSTAgent", *argv, "--no-progress-bar"],
        capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize("extra, message", [
    (["--policy", "foo", "--source-segment-size", "400"], "ERROR: policy: unknown 'foo', expected one of"),
    (["--frame_num", "-1", "--source-segment-size", "400"], "ERROR: frame_num must be an integer >= 0, got -1"),
    (["--model", "MISSING", "--source-segment-size", "400"], "ERROR: model {tmp}/missing.zip not found"),
    ([], "ERROR: --source-segment-size 1 ms (SimulEval's default when it is left out) is under one encoder "
         "frame (40 ms): give SimulEval's chunk (FBK's: 1000)"),
])
def test_simuleval_with_a_bad_agent_option_or_model_prints_one_error_line(
    packed_trained, cache, test_set, tmp_path, extra, message
):
    """(SimulEval logs at INFO: the zip is extracted into the cache first, which would log it.)"""
    inputs, references = test_set
    open_model(packed_trained, cache)
    source = tmp_path / "source.txt"
    source.write_text(f"{inputs[0]}\n")
    extra = [str(tmp_path / "missing.zip") if a == "MISSING" else a for a in extra]
    result = simuleval("--model", str(packed_trained), "--cache_dir", str(cache), "--cmvn", "prefix",
                       "--attention_layer", "1", *extra, "--source", str(source), "--target", str(references),
                       "--output", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.startswith(message.format(tmp=tmp_path)) and result.stderr.count("\n") == 1, result.stderr


# --------------------------------------------------------------------------- what a resumed run depends on


def test_a_rerun_with_other_inputs_or_another_model_is_refused_and_new_references_rescore(
    packed_trained, cache, test_set, tmp_path, capsys
):
    inputs, references = test_set
    out = tmp_path / "out"
    common = ["--cache_dir", str(cache), *AGENT, "--output", str(out)]
    code, err = cli(capsys, "--model", str(packed_trained), *common, "--reference", str(references), *inputs)
    assert code == 0, err
    log = (out / "instances.log").read_text()
    first_bleu = (out / "scores.tsv").read_text().splitlines()[1].split("\t")[0]

    code, err = cli(capsys, "--model", str(packed_trained), *common, "--reference", str(references),
                    inputs[0], inputs[2], inputs[1])  # the same files in another order
    assert code == 1 and err.startswith(f"ERROR: {out} holds a run of other inputs") and err.count("\n") == 1, err
    other = tmp_path / "other.zip"  # the same model in another zip (a comment added)
    other.write_bytes(packed_trained.read_bytes())
    with zipfile.ZipFile(other, "a") as archive:
        archive.comment = b"another zip"
    code, err = cli(capsys, "--model", str(other), *common, "--reference", str(references), *inputs)
    assert code == 1 and err.startswith(f"ERROR: {out} holds a run of another model") and err.count("\n") == 1, err
    assert (out / "instances.log").read_text() == log

    predictions = [record.prediction for record in read_instances(out / "instances.log").records]
    assert any(predictions)
    corrected = tmp_path / "corrected.de"  # the predictions themselves: BLEU 100
    corrected.write_text("".join(f"{line}\n" for line in predictions))
    code, err = cli(capsys, "--model", str(packed_trained), *common, "--reference", str(corrected), *inputs)
    assert code == 0, err
    records = read_instances(out / "instances.log").records
    assert [r.reference for r in records] == predictions and [r.prediction for r in records] == predictions
    assert float((out / "scores.tsv").read_text().splitlines()[1].split("\t")[0]) == 100.0 != float(first_bleu)


# --------------------------------------------------------------------------- settings in processes: signals


def start_simulate(packed_trained, cache, clips, tmp_path, settings: list) -> tuple[subprocess.Popen, Path]:
    """simulate --nj 2 over the twelve clips, in the background."""
    conf = tmp_path / "settings.yaml"
    conf.write_text(yaml.safe_dump({"segment_ms": 200, "cmvn": "prefix", "beam_size": 2, "maxlen_b": 20,
                                    "settings": settings}))
    out = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "espnet2_ext.bin.simulate", "--model", str(packed_trained), "--cache_dir", str(cache),
         "--settings", str(conf), "--nj", "2", "--output", str(out), *map(str, sorted(clips.values()))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    return process, out


def wait_for_instances(process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not (log.is_file() and log.read_text().count("\n") >= 1):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no instance was written"
        time.sleep(0.05)


def workers_of(pid: int) -> list[int]:
    """The multiprocessing workers process ``pid`` started (not its resource tracker)."""
    found = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def writing(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    fds = Path(f"/proc/{pid}/fd")
    return any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir())


def test_sigterm_stops_the_workers_at_once_and_starts_no_setting(packed_trained, cache, clips, tmp_path):
    settings = [{"policy": "waitk", "waitk": k, "segment_factor": 2} for k in (1, 2, 3)]  # 2 processes: 1 & 3, 2
    process, out = start_simulate(packed_trained, cache, clips, tmp_path, settings)
    wait_for_instances(process, out / "waitk_k1/instances.log")
    workers = workers_of(process.pid)
    assert len(workers) == 2
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert process.returncode == 143
    assert err.startswith("INTERRUPTED by SIGTERM: ") and err.count("\n") == 1, err
    assert not (out / "waitk_k3").exists()  # waitk_k1's worker would have run it next
    assert len(read_instances(out / "waitk_k1/instances.log").records) < len(clips)
    for pid in workers:  # gone (reaped by simulate, not left running)
        assert not Path(f"/proc/{pid}").exists()


def test_a_worker_killed_as_by_the_oom_killer_is_one_error_line_naming_its_setting(
    packed_trained, cache, clips, tmp_path
):
    settings = [{"policy": "waitk", "waitk": k, "segment_factor": 2} for k in (1, 2)]
    process, out = start_simulate(packed_trained, cache, clips, tmp_path, settings)
    log = out / "waitk_k2/instances.log"
    wait_for_instances(process, log)
    (victim,) = [pid for pid in workers_of(process.pid) if writing(pid, log)]
    os.kill(victim, signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.startswith("ERROR: setting waitk_k2: its worker process ended (killed by SIGKILL)"), err
    assert err.count("\n") == 1 and f"{log}: run the same command again to continue" in err


def test_raw_sample_rate_reads_headerless_files_and_leaves_wavs_to_their_headers(
    packed_trained, cache, test_set, tmp_path, capsys
):
    """A directory of WAVs beside .raw files, as translate takes it."""
    inputs, _ = test_set
    folder = tmp_path / "clips"
    folder.mkdir()
    wav = folder / "a.wav"
    wav.write_bytes(Path(inputs[0]).read_bytes())
    (folder / "b.raw").write_bytes(sf.read(inputs[0], dtype="int16")[0].astype("<i2").tobytes())
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *AGENT, "--raw_sample_rate",
                    "16000", "--output", str(out), str(folder))
    assert code == 0, err
    records = read_instances(out / "instances.log").records
    assert [r.source for r in records] == [str(wav), str(folder / "b.raw")]
    assert records[0].prediction == records[1].prediction and records[0].delays == records[1].delays


def test_a_stream_with_several_settings_is_refused(packed_trained, cache, tmp_path, capsys):
    settings = tmp_path / "set.yaml"
    settings.write_text(yaml.safe_dump({"cmvn": "prefix", "settings": [{"policy": "la"}, {"policy": "waitk"}]}))
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), "--settings", str(settings),
                    "--output", str(tmp_path / "out"), "-")
    assert code == 1 and err == ("ERROR: -: a stream can be read once, and each of the 2 settings reads every input: "
                                 "save it to a file first\n")
