"""Translating audio with a packed model: the command line and the Python API.

The model is the trained tiny one (``trained`` fixture), packed by recipe stage 8's
program (``packed_trained``); the audio is its held-out test set cut into clips.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from espnet2_ext.bin import translate
from espnet2_ext.inference.speech2translation import Speech2Translation, greedy_ctc_ids
from espnet2_ext.inference.speech_input import array_input, chunks_16k
from espnet2_ext.utils.fbank import compute_fbank
from tests.helpers import DECODE_SEARCH, decode_dump

CLI_SEARCH = [arg for key, value in DECODE_SEARCH.items() for arg in (f"--{key}", str(value))]


def cli(capsys, model: Path, cache: Path, *argv: str) -> tuple:
    code = translate.main(["--model", str(model), "--cache_dir", str(cache), *CLI_SEARCH, *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_translating_the_zip_gives_the_recipe_decode(trained, packed_trained, clips, cache, tmp_path, capsys):
    work, exp, dump = trained
    reference = decode_dump(exp, dump / "tst-COMMON", tmp_path / "decode", batch_size=4)
    code, lines, err = cli(capsys, packed_trained, cache, next(iter(clips.values())).parent, "--batch_size", 10)
    assert code == 0, err
    translated = {Path(key).stem: text for key, text in (line.split("\t") for line in lines)}
    assert len(translated) == 12 and translated == reference
    assert sum(bool(text) for text in translated.values()) >= 6
    assert "12/12" not in err, "no progress bar where stderr is not a terminal"


def test_api_and_cli_agree_and_batch_size_changes_nothing(translator, packed_trained, clips, cache, capsys):
    files = sorted(clips.values())
    one_by_one = translator.translate_batch(files, batch_size=1)
    batched = translator.translate_batch(files, batch_size=10)
    assert [[h.token_ids for h in r.nbest] for r in one_by_one] == [[h.token_ids for h in r.nbest] for r in batched]
    assert [r.nbest[0].score for r in one_by_one] == pytest.approx([r.nbest[0].score for r in batched], abs=1e-4)
    assert [r.source for r in one_by_one] == [r.source for r in batched]
    assert [translator(path).text for path in files[:2]] == [r.text for r in batched[:2]]

    code, lines, err = cli(capsys, packed_trained, cache, *files, "--format", "jsonl", "--nbest", 2)
    assert code == 0, err
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [str(f) for f in files]
    assert [r["translation"] for r in records] == [r.text for r in batched]
    assert [r["source"] for r in records] == [r.source for r in batched]
    assert all(len(r["nbest"]) == 2 and r["nbest"][0]["score"] >= r["nbest"][1]["score"] for r in records)
    assert [r["nbest"][0]["score"] for r in records] == pytest.approx([r.nbest[0].score for r in batched], abs=1e-4)

    code, lines, _ = cli(capsys, packed_trained, cache, *files[:3], "--format", "text", "--batch_size", 1)
    assert code == 0 and lines == [r.text for r in batched[:3]]


def test_wav_scp_gives_its_ids_and_output_file_is_written(packed_trained, clips, cache, tmp_path, capsys, translator):
    utts = sorted(clips)[:3]
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{utt} {clips[utt]}\n" for utt in reversed(utts)), encoding="utf-8")
    out = tmp_path / "out/hyps.tsv"
    out.parent.mkdir()
    code, lines, err = cli(capsys, packed_trained, cache, scp, "--output", out)
    assert code == 0 and lines == [], err
    expected = [f"{utt}\t{translator(clips[utt]).text}" for utt in reversed(utts)]
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert [p.name for p in out.parent.iterdir()] == ["hyps.tsv"], "no temporary left behind"


def features(samples: np.ndarray, rate: int) -> np.ndarray:
    """The features translating an array computes: its 16 kHz stream, then the fbank."""
    return compute_fbank(np.concatenate(list(chunks_16k(array_input(samples, rate)))), 16000)


def test_stereo_and_other_sample_rates_translate_like_the_original(translator, clips):
    for path in sorted(clips.values())[:4]:
        samples, rate = sf.read(path, dtype="float32")
        original = translator(samples, rate)
        assert translator(np.stack([samples, samples], axis=1), rate).segments == original.segments
        assert translator(np.stack([samples, samples]), rate).segments == original.segments  # (channels, samples)
        assert translator((samples * 32768).astype(np.int16), rate).segments == original.segments
        for new_rate in (8000, 44100):
            resampled = torchaudio.functional.resample(torch.from_numpy(samples), rate, new_rate).numpy()
            prepared, reference = features(resampled, new_rate), features(samples, rate)
            assert prepared.shape == reference.shape
            if new_rate > rate:  # nothing lost: the features are the original's, except where the
                # resampling filters roll off near 8 kHz (the top mel bins) and in digital silence
                close = np.abs(prepared[:, :70] - reference[:, :70]) < 0.05
                assert close.mean() > 0.99, close.mean()
                assert translator(resampled, new_rate).text == original.text


def test_bad_inputs_are_named_and_the_others_still_translate(
    packed_trained, clips, cache, tmp_path, capsys, caplog, translator
):
    good = sorted(clips.values())[0]
    empty, short, junk, silent, cut = (tmp_path / f"{name}.wav" for name in ("empty", "short", "junk", "silent", "cut"))
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    sf.write(short, np.full(480, 0.3, dtype=np.float32), 16000)
    junk.write_bytes(b"definitely not audio")
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 6 // 10])  # a download cut short
    raw = tmp_path / "headerless.raw"
    raw.write_bytes(sf.read(good, dtype="int16")[0].astype("<i2").tobytes())
    inputs = [empty, good, short, junk, silent, cut, raw]
    code, lines, err = cli(capsys, packed_trained, cache, *inputs)
    assert code == 2
    assert lines == [f"{path}\t{translator(good).text if path == good else ''}" for path in inputs]
    needed = translator.model.encoder.min_input_length
    for message in (
        f"ERROR: {empty}: empty audio (0 samples)",
        f"ERROR: {short}: 30 ms of audio gives 1 feature frames; the model needs at least {needed}",
        f"ERROR: {junk}: not readable as audio",
        f"ERROR: {cut}: truncated: its header declares",
        f"ERROR: {raw}: headerless audio: give its sample rate (--raw_sample_rate)",
        "ERROR: 5 of 7 inputs could not be translated",
    ):
        assert message in err
    assert "Traceback" not in err
    assert f"{silent}: silent (peak -inf dBFS < -60 dBFS): not translated" in caplog.text  # logged as a warning


def test_headerless_audio_translates_given_its_rate(packed_trained, clips, cache, tmp_path, capsys, translator):
    good = sorted(clips.values())[0]
    raw = tmp_path / "speech.raw"
    raw.write_bytes(sf.read(good, dtype="int16")[0].astype("<i2").tobytes())
    code, lines, err = cli(capsys, packed_trained, cache, raw, "--raw_sample_rate", 16000)
    assert code == 0 and lines == [f"{raw}\t{translator(good).text}"], err
    assert translator(raw, 16000).text == translator(good).text


def write_wav(path: Path) -> Path:
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    return path


def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


OPTION_ERRORS = {
    "nbest 0": (["--nbest", "0"], None, "--nbest must be >= 1, got 0"),
    "beam 0": (["--beam_size", "0"], None, "--beam_size must be >= 1, got 0"),
    "nbest > beam": (["--nbest", "4", "--beam_size", "3"], None, "--nbest (4) cannot exceed --beam_size (3)"),
    "threads 0": (["--num_threads", "0"], None, "--num_threads must be >= 1, got 0"),
    "raw rate 0": (["--raw_sample_rate", "0"], None, "--raw_sample_rate must be >= 8000 Hz, got 0"),
    "segments 0.01": (
        ["--max_segment_seconds", "0.01"], None,
        "--max_segment_seconds must be at least 2 * --min_segment_seconds + 2 frames of 32 ms (0.464 s), got 0.01",
    ),
    "segments nan": (["--max_segment_seconds", "nan"], None, "--max_segment_seconds must be a finite number, got nan"),
    "vad threshold 1": (["--vad_threshold", "1"], None, "--vad_threshold must be between 0 and 1 (exclusive), got 1"),
    "pause -1": (["--pause_seconds", "-1"], None, "--pause_seconds must be >= 0 (0: no cut at pauses), got -1.0"),
    "pad -0.1": (["--pad_end_seconds", "-0.1"], None, "--pad_end_seconds must be >= 0, got -0.1"),
    "pad nan": (["--pad_start_seconds", "nan"], None, "--pad_start_seconds must be a finite number, got nan"),
    "maxlen_b -1": (["--maxlen_b", "-1"], None, "--maxlen_b must be >= 0, got -1"),
    "maxlen_a -1": (["--maxlen_a", "-1"], None, "--maxlen_a must be >= 0, got -1.0"),
    "maxlen 0 0": (
        ["--maxlen_b", "0"], None, "--maxlen_a and --maxlen_b are both 0: every translation would be empty"
    ),
    "silence positive": (["--silence_dbfs", "3"], None, "--silence_dbfs must be a level <= 0 dBFS, got 3.0"),
    "silence nan": (["--silence_dbfs", "nan"], None, "--silence_dbfs must be a level <= 0 dBFS, got nan"),
    "abbreviated option": (["--beam", "3"], None, "unrecognized arguments: --beam 3"),
    "config without weights": (
        ["--st_train_config", "{wav}"], None, "give either --model, or --st_train_config with --st_model_file"
    ),
    "output dir missing": (
        ["--output", "{tmp}/no/such/out.tsv"], None,
        "--output {tmp}/no/such/out.tsv: directory {tmp}/no/such does not exist",
    ),
    "output under /proc": (
        ["--output", "/proc/nope/out.tsv"], None, "--output /proc/nope/out.tsv: directory /proc/nope does not exist"
    ),
    "output in /proc": (
        ["--output", "/proc/out.tsv"], None,
        "--output /proc/out.tsv: cannot create files in /proc (No such file or directory)",
    ),
    "device foo": (["--device", "foo"], None, "device 'foo': expected cpu, cuda or cuda:N"),
    "no gpu": (["--device", "cuda"], no_gpu, "device 'cuda': no CUDA GPU is available"),
    "no such gpu": (["--device", "cuda:3"], one_gpu, "device 'cuda:3': there is 1 CUDA GPU (cuda:0)"),
    "output is a dir": (["--output", "{tmp}"], None, "--output {tmp} is a directory; expected a file to write"),
    "output under a file": (
        ["--output", "{wav}/out.tsv"], None, "--output {wav}/out.tsv: {wav} is a file, not a directory"
    ),
    "missing input": (["{tmp}/missing.wav"], None, "{tmp}/missing.wav: no such file or directory"),
}


@pytest.mark.parametrize("case", sorted(OPTION_ERRORS))
def test_bad_options_and_outputs_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, case):
    """The model does not exist: each error comes before it is looked at, let alone any audio read."""
    argv, patch, message = OPTION_ERRORS[case]
    wav = write_wav(tmp_path / "speech.wav")
    if patch:
        patch(monkeypatch)
    fill = dict(tmp=tmp_path, wav=wav)
    code = translate.main(["--model", str(tmp_path / "none.zip"), str(wav), *(a.format(**fill) for a in argv)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == f"ERROR: {message.format(**fill)}\n"


def test_help_says_which_problems_stop_the_run():
    help_text = " ".join(translate.get_parser().format_help().split())
    assert "each INPUT, and each file a wav.scp lists, must exist" in help_text
    assert "An audio file that exists but cannot be translated" in help_text


def test_cache_dir_that_cannot_be_written_is_one_line(packed_trained, clips, tmp_path, capsys):
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file, not a directory")
    code, lines, err = cli(capsys, packed_trained, not_a_dir, sorted(clips.values())[0])
    assert code == 1 and lines == []
    assert err.startswith(f"ERROR: {packed_trained}: cannot extract into the cache directory {not_a_dir}: ")
    assert err.count("\n") == 1


def test_num_threads_defaults_to_the_cores_this_process_may_use(packed_trained, clips, cache, capsys, monkeypatch):
    calls = []
    set_num_threads = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n) or set_num_threads(n))
    before = torch.get_num_threads()
    clip = sorted(clips.values())[0]
    assert cli(capsys, packed_trained, cache, clip, "--num_threads", 1)[0] == 0
    assert calls[0] == 1 and torch.get_num_threads() == before, "set for the run, then restored"
    calls.clear()
    monkeypatch.setattr(translate.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert cli(capsys, packed_trained, cache, clip)[0] == 0
    assert calls[0] == 1


def test_jsonl_failures_have_the_fields_of_successes(packed_trained, clips, cache, tmp_path, capsys):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio")
    code, lines, _ = cli(capsys, packed_trained, cache, sorted(clips.values())[0], junk, "--format", "jsonl")
    good, bad = (json.loads(line) for line in lines)
    assert code == 2 and good.keys() == bad.keys()
    assert good["error"] is None and bad["error"].startswith(f"{junk}: not readable as audio")
    assert (bad["translation"], bad["source"], bad["nbest"], bad["segments"], bad["warnings"]) == ("", "", None, [], [])


def test_ids_with_tabs_and_newlines_stay_on_one_line(packed_trained, clips, cache, tmp_path, capsys, translator):
    clip = sorted(clips.values())[0]
    folder = tmp_path / "odd names"
    folder.mkdir()
    for name in ("a\tb.wav", "c\nd.wav", "back\\slash.wav"):
        (folder / name).write_bytes(clip.read_bytes())
    (folder / "e\nf.wav").write_bytes(b"not audio")
    code, lines, err = cli(capsys, packed_trained, cache, folder)
    text = translator(clip).text
    assert code == 2 and lines == [
        f"{folder}/a\\tb.wav\t{text}", f"{folder}/back\\\\slash.wav\t{text}",
        f"{folder}/c\\nd.wav\t{text}", f"{folder}/e\\nf.wav\t",
    ]
    assert all(line.startswith("ERROR: ") for line in err.splitlines()), err
    assert f"ERROR: {folder}/e\\nf.wav: not readable as audio" in err
    code, lines, _ = cli(capsys, packed_trained, cache, folder, "--format", "jsonl")
    assert [json.loads(line)["id"] for line in lines] == sorted(str(p) for p in folder.iterdir())


def test_source_transcript_has_single_spaces(translator, clips, monkeypatch):
    """Pieces that are a word boundary alone ("\u2581") decode to extra spaces; the transcript has none."""
    tokens = translator.model.src_token_list
    words = [t for t in tokens if t.startswith("\u2581") and len(t) > 1][:2]
    pieces = ["\u2581", words[0], "\u2581", "\u2581", words[1], "\u2581"]
    ids = [tokens.index(piece) for piece in pieces]
    monkeypatch.setattr("espnet2_ext.inference.speech2translation.greedy_ctc_ids", lambda logits, blank=0: ids)
    result = translator(sorted(clips.values())[0])
    assert result.source == f"{words[0][1:]} {words[1][1:]}" == result.segments[0].source


def test_closed_stdout_ends_quietly(packed_trained, clips, cache):
    """``translate ... | head -1``: the reader leaves; no traceback, the shell's status for SIGPIPE."""
    argv = ["--model", packed_trained, "--cache_dir", cache, *CLI_SEARCH, *sorted(clips.values())[:2]]
    process = subprocess.Popen(
        [sys.executable, "-m", "espnet2_ext.bin.translate", *map(str, argv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
    )
    process.stdout.close()  # before anything is written
    err = process.stderr.read().decode()
    assert process.wait() == 128 + signal.SIGPIPE, err
    assert not any(word in err for word in ("Traceback", "BrokenPipe", "Exception ignored", "ERROR")), err


def test_long_audio_is_cut_between_sentences_each_segment_with_its_nbest(
    packed_trained, cache, clips, translator, tmp_path, capsys
):
    """Six clips joined by pauses; the maximum holds one clip, not two: one segment per clip."""
    pieces = [sf.read(path, dtype="float32")[0] for path in sorted(clips.values())[:6]]
    gaps = [np.zeros(int(seconds * 16000), dtype=np.float32) for seconds in (0.3, 0.5, 0.4, 0.6, 0.35, 0.45)]
    audio = np.concatenate([part for gap, piece in zip(gaps, pieces) for part in (gap, piece)])
    starts = np.cumsum([0] + [len(g) + len(p) for g, p in zip(gaps, pieces)])[:-1] + [len(g) for g in gaps]
    limit = 1.1 * max(len(p) for p in pieces) / 16000
    short_limit = Speech2Translation.from_pretrained(
        packed_trained, cache_dir=cache, max_segment_seconds=limit, nbest=2, **DECODE_SEARCH
    )
    result = short_limit(audio, 16000)
    assert len(result.segments) == len(pieces) and result.warnings == []
    ends = [start + len(piece) for start, piece in zip(starts, pieces)]
    for i, segment in enumerate(result.segments):  # its clip, and nothing of its neighbours
        assert segment.start * 16000 <= (starts[i] + ends[i]) / 2 <= segment.end * 16000
        assert i == 0 or segment.start * 16000 >= ends[i - 1]
        assert i == len(pieces) - 1 or segment.end * 16000 <= starts[i + 1]
        assert len(segment.nbest) == 2 and segment.nbest[0].score >= segment.nbest[1].score
    assert result.text == " ".join(s.nbest[0].text for s in result.segments if s.nbest[0].text)
    with pytest.raises(ValueError, match="segments; read each one's n-best from .segments"):
        result.nbest
    longest = len(audio) / 16000 + 1
    whole = Speech2Translation.from_pretrained(
        packed_trained, cache_dir=cache, max_segment_seconds=longest, pause_seconds=0, **DECODE_SEARCH
    )
    assert len(whole(audio, 16000).segments) == 1, "within the maximum, no cut at pauses: one piece, as given"
    paused = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, max_segment_seconds=longest,
                                                **DECODE_SEARCH)
    assert paused.segmentation.pause_seconds < 0.3
    assert len(paused(audio, 16000).segments) == len(pieces), "the model's pauses separate, whatever the maximum"

    path = tmp_path / "talk.wav"
    sf.write(path, audio, 16000)
    code, lines, err = cli(
        capsys, packed_trained, cache, path, "--max_segment_seconds", limit, "--nbest", 2, "--format", "jsonl"
    )
    (record,) = map(json.loads, lines)
    assert code == 0 and record["nbest"] is None and record["translation"] == result.text
    assert [(s["start"], s["end"]) for s in record["segments"]] == [
        (round(s.start, 3), round(s.end, 3)) for s in result.segments
    ]
    assert [h["score"] for s in record["segments"] for h in s["nbest"]] == pytest.approx(
        [h.score for s in result.segments for h in s.nbest], abs=1e-4
    )


def test_greedy_ctc_merges_repeats_then_drops_blanks():
    frames = [0, 3, 3, 0, 3, 5, 5, 5, 0, 0, 2]
    logits = torch.nn.functional.one_hot(torch.tensor(frames), 6).float()
    assert greedy_ctc_ids(logits) == [3, 3, 5, 2]
    assert greedy_ctc_ids(torch.zeros(0, 6)) == []


def test_source_transcript_comes_from_the_intermediate_ctc(packed_trained, cache, clips):
    """With the CTC head forced to one piece, the transcript is that piece, detokenised."""
    translator = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, **DECODE_SEARCH)
    piece = next(t for t in translator.model.src_token_list if t.startswith("\u2581") and len(t) > 2)
    head = translator.model.encoder.ctc_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[translator.model.src_token_list.index(piece)] = 10.0
    result = translator(sorted(clips.values())[0])
    assert result.source == piece.lstrip("\u2581") and result.segments[0].source == result.source


def test_a_damaged_mp3_gives_our_error_line_and_nothing_from_its_decoder(packed_trained, clips, cache, tmp_path,
                                                                         capfd):
    """libmpg123 prints its own warnings to the process's stderr (fd 2); they go to the debug log."""
    mp3, cut = tmp_path / "talk.mp3", tmp_path / "cut.mp3"
    sf.write(mp3, sf.read(sorted(clips.values())[0])[0], 16000, format="MP3")
    cut.write_bytes(mp3.read_bytes()[: mp3.stat().st_size // 2])
    code = translate.main(["--model", str(packed_trained), "--cache_dir", str(cache), *CLI_SEARCH, str(cut)])
    err = capfd.readouterr().err
    assert code == 2
    assert [line.split(":")[0] for line in err.splitlines()] == ["ERROR"] * 2, err
    assert err.startswith(f"ERROR: {cut}: truncated: its header declares") and "Xing" not in err


def test_audio_can_be_piped_in(packed_trained, clips, cache, tmp_path, translator):
    """``-`` (stdin) and bash's ``<(...)``, ``/dev/stdin``: a stream with a header is read by it,
    one without is headerless PCM at --raw_sample_rate."""
    clip = sorted(clips.values())[0]
    raw = tmp_path / "clip.raw"
    raw.write_bytes(sf.read(clip, dtype="int16")[0].astype("<i2").tobytes())
    program = [sys.executable, "-m", "espnet2_ext.bin.translate", "--model", str(packed_trained),
               "--cache_dir", str(cache), *CLI_SEARCH]
    root = Path(__file__).resolve().parents[2]
    command = " ".join(map(str, program))
    result = subprocess.run(["bash", "-c", f"cat {raw} | {command} --raw_sample_rate 16000 - <(cat {clip})"],
                            capture_output=True, text=True, cwd=root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = translator(clip).text
    assert expected and [line.split("\t") for line in result.stdout.splitlines()] == [
        ["-", expected], ["/dev/fd/63", expected]]
    result = subprocess.run(["bash", "-c", f"cat {clip} | {command} /dev/stdin"],
                            capture_output=True, text=True, cwd=root, timeout=600)
    assert result.returncode == 0 and result.stdout == f"/dev/stdin\t{expected}\n", result.stderr[-3000:]
    result = subprocess.run(["bash", "-c", f"cat {raw} | {command} -"], capture_output=True, text=True, cwd=root,
                            timeout=600)
    assert result.returncode == 2
    assert "ERROR: stdin: not readable as audio: " in result.stderr and "give its sample rate, --raw_sample_rate" in \
        result.stderr
