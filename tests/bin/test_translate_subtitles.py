"""``translate --format srt|vtt``: subtitles of the trained tiny model's test talks, and bad options."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

from espnet2_ext.bin import translate
from espnet2_ext.fileio.kaldi_table import read_wav_scp
from espnet2_ext.fileio.subtitle_files import subtitle_text
from espnet2_ext.inference.speech2translation import timed_segments
from espnet2_ext.subtitles import SubtitleLimits, TimedSegment, build_blocks
from tests.helpers import DECODE_SEARCH, check_subtitles

CLI_SEARCH = [arg for key, value in DECODE_SEARCH.items() for arg in (f"--{key}", str(value))]


def cli(capsys, model: Path, cache: Path, *argv) -> tuple:
    code = translate.main(["--model", str(model), "--cache_dir", str(cache), *CLI_SEARCH, *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def talks(trained) -> Path:
    """The test set's whole recordings (talks of 4 sentences), as stage 7 translates them."""
    work, _, _ = trained
    return work / "data" / "tst-COMMON" / "wav.scp"


def test_each_talk_gets_its_file_of_the_api_blocks_within_the_limits(
    packed_trained, cache, talks, translator, tmp_path, capsys
):
    out = tmp_path / "subtitles"
    code, stdout, err = cli(capsys, packed_trained, cache, talks, "--format", "srt", "--output_dir", out)
    assert code == 0 and stdout == "", err
    wavs = read_wav_scp(talks)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{key}.srt" for key in wavs)
    timed = 0
    for key, wav in wavs.items():
        result = translator(wav)
        blocks = result.subtitles()
        assert (out / f"{key}.srt").read_text(encoding="utf-8") == subtitle_text(blocks, "srt")
        parsed = list(srt.parse((out / f"{key}.srt").read_text(encoding="utf-8")))
        assert [s.content.split("\n") for s in parsed] == [list(b.lines) for b in blocks]
        assert all(s.word_times is not None for s in timed_segments(result.segments) if s.text)
        timed += check_subtitles(blocks, timed_segments(result.segments), SubtitleLimits())
    assert timed > 0


def test_one_input_goes_to_stdout_or_output_and_the_limits_are_options(
    packed_trained, cache, talks, translator, tmp_path, capsys
):
    wav = next(iter(read_wav_scp(talks).values()))
    limits = dict(max_chars=20, max_lines=1, max_cps=12.0)
    options = ["--max_chars", 20, "--max_lines", 1, "--max_cps", 12, "--subtitle_timing", "proportional"]
    code, stdout, err = cli(capsys, packed_trained, cache, wav, "--format", "vtt", *options)
    blocks = translator(wav).subtitles("proportional", **limits)
    assert code == 0 and stdout == subtitle_text(blocks, "vtt"), err
    assert [c.lines for c in webvtt.from_string(stdout).captions] == [list(b.lines) for b in blocks]
    check_subtitles(blocks, timed_segments(translator(wav).segments), SubtitleLimits(**limits))
    assert all(len(b.lines) == 1 for b in blocks)

    code, stdout, err = cli(capsys, packed_trained, cache, wav, "--format", "srt", "--output", tmp_path / "a.srt")
    assert code == 0 and stdout == ""
    assert (tmp_path / "a.srt").read_text(encoding="utf-8") == subtitle_text(translator(wav).subtitles(), "srt")


def test_jsonl_words_give_the_same_blocks(packed_trained, cache, talks, translator, capsys):
    """A jsonl record holds what subtitles need: blocks built from it are the translation's own."""
    code, stdout, err = cli(capsys, packed_trained, cache, talks, "--format", "jsonl")
    assert code == 0, err
    for line, wav in zip(stdout.splitlines(), read_wav_scp(talks).values()):
        record = json.loads(line)
        segments = [
            TimedSegment(s["start"], s["end"], s["translation"],
                         None if s["words"] is None else [(w["start"], w["end"]) for w in s["words"]])
            for s in record["segments"]
        ]
        assert [w["word"] for s in record["segments"] for w in s["words"] or []] == record["translation"].split()
        for timing in ("attention", "proportional"):
            assert build_blocks(segments, timing=timing) == translator(wav).subtitles(timing)


def test_a_failed_input_gets_no_file_and_the_others_do(packed_trained, cache, talks, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    wav = next(iter(read_wav_scp(talks).values()))
    out = tmp_path / "subtitles"
    code, _, err = cli(capsys, packed_trained, cache, broken, wav, "--format", "srt", "--output_dir", out)
    assert code == 2 and err.count("ERROR:") == 2 and f"ERROR: {broken}" in err
    assert [p.name for p in out.iterdir()] == [f"{Path(wav).stem}.srt"]


def test_attention_layer_past_the_decoder_is_one_line(packed_trained, cache, talks, capsys):
    wav = next(iter(read_wav_scp(talks).values()))
    code, stdout, err = cli(capsys, packed_trained, cache, wav, "--format", "srt", "--attention_layer", 5)
    assert code == 1 and stdout == ""
    assert err == "ERROR: attention_layer 5: the decoder has 2 layers (0 to 1)\n"


def write_wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    return path


SUBTITLE_ERRORS = {
    "unknown format": (["--format", "ass"], "argument --format: invalid choice: 'ass' (choose from 'tsv', 'text', "
                                            "'jsonl', 'srt', 'vtt')"),
    "max_chars 3": (["--format", "srt", "--max_chars", "3"],
                    "--max_chars 3: a line must hold at least 16 characters (lines break between words only, "
                    "and most words would not fit)"),
    "max_lines 0": (["--format", "srt", "--max_lines", "0"], "--max_lines must be >= 1, got 0"),
    "max_cps 0": (["--format", "vtt", "--max_cps", "0"], "--max_cps must be > 0, got 0"),
    "max_cps 2": (["--format", "srt", "--max_cps", "2"],
                  "--max_cps 2 with --max_block_seconds 7 leaves 14 characters per block, fewer than one line of "
                  "--max_chars 42"),
    "block seconds": (["--format", "srt", "--min_block_seconds", "8"],
                      "--max_block_seconds (7) must be >= --min_block_seconds (8)"),
    "output_dir with tsv": (["--output_dir", "{tmp}/out"],
                            "--output_dir is for --format srt or vtt; --format tsv writes lines to --output or stdout"),
    "output and output_dir": (["--format", "srt", "--output", "{tmp}/a.srt", "--output_dir", "{tmp}/out"],
                              "give --output (one input's subtitles) or --output_dir (one file per input), not both"),
    "several inputs to one file": (["{other}", "--format", "srt"],
                                   "--format srt writes one file per input and there are 2 inputs: give --output_dir"),
    "same names": (["{same}", "--format", "srt", "--output_dir", "{tmp}/out"],
                   "--output_dir {tmp}/out: {wav} and {same} would both write speech.srt"),
    "output_dir under a file": (["--format", "srt", "--output_dir", "{wav}/out"],
                                "--output_dir {wav}/out: {wav} is a file, not a directory"),
    "attention layer -1": (["--format", "srt", "--attention_layer", "-1"], "--attention_layer must be >= 0, got -1"),
}


@pytest.mark.parametrize("case", sorted(SUBTITLE_ERRORS))
def test_bad_subtitle_options_are_one_line_before_any_work(tmp_path, capsys, case):
    """The model does not exist: each error comes before it is looked at."""
    argv, message = SUBTITLE_ERRORS[case]
    fill = dict(tmp=tmp_path, wav=write_wav(tmp_path / "speech.wav"), other=write_wav(tmp_path / "other.wav"),
                same=write_wav(tmp_path / "b" / "speech.flac"))
    code = translate.main(["--model", str(tmp_path / "none.zip"), str(fill["wav"]), *(a.format(**fill) for a in argv)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == f"ERROR: {message.format(**fill)}\n"
    assert not (tmp_path / "out").exists()
