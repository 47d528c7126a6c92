"""Tests for espnet2_ext/bin/score_st_talks.py (talk-level scoring of translate's jsonl)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from espnet2_ext.bin import score_st_talks
from espnet2_ext.fileio.kaldi_table import read_text
from tests.helpers import TALK_REFERENCES, talk_record, talk_utt_id, write_jsonl, write_talk_data_dir

REFS = [text for sentences in TALK_REFERENCES.values() for _, _, text in sentences]
UTT_IDS = [talk_utt_id(rec, start, end) for rec, sentences in TALK_REFERENCES.items() for start, end, _ in sentences]
# talk_a translated in 2 segments, talk_b in 3, cut elsewhere than the sentences, with a
# few errors inside sentences; the lines mweralign must find, cut by hand.
SEGMENTS = {
    "talk_a": ["Der Vater schreibt heute unsere Bücher. Ich schreibe", "die Geschichten. Ein Mann trinkt die Milch."],
    "talk_b": ["Wir übersetzen Sprache direkt in Text.", "Die Katze sitzt auf der Matte. Heute",
               "regnet es. Das ist ein Test."],
}
LINES = [
    "Der Vater schreibt heute unsere Bücher.",
    "Ich schreibe die Geschichten.",
    "Ein Mann trinkt die Milch.",
    "Wir übersetzen Sprache direkt in Text.",
    "Die Katze sitzt auf der Matte.",
    "Heute regnet es.",
    "Das ist ein Test.",
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_talk_data_dir(tmp_path / "tst-COMMON")


@pytest.fixture
def hyp(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "talks.jsonl", [talk_record(rec, segments) for rec, segments in SEGMENTS.items()])


def run(hyp: Path, data_dir: Path, out: Path, *extra: str) -> int:
    return score_st_talks.main(["--hyp", str(hyp), "--data_dir", str(data_dir), "--out", str(out), *extra])


def test_scores_the_re_segmented_talks(
    hyp: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "score"
    assert run(hyp, data_dir, out, "--tgt_lang", "de") == 0
    expected_bleu = sacrebleu.corpus_bleu(LINES, [REFS])
    expected_chrf = sacrebleu.corpus_chrf(LINES, [REFS])
    assert 20 < expected_bleu.score < 90
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["bleu"] == pytest.approx(expected_bleu.score)
    assert result["chrf"] == pytest.approx(expected_chrf.score)
    assert result["n_segments"] == 7
    assert result["talks"]["n_talks"] == 2 and result["talks"]["n_segments"] == 5
    # word errors by hand: billigen; um fünf Uhr frische; es. for es nicht.; kleiner
    assert result["talks"]["as_wer"] == pytest.approx(100 * 8 / sum(len(r.split()) for r in REFS), abs=1e-4)
    assert result["signatures"]["bleu"] == (
        f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    )
    assert result["hyp"] == str(hyp) and result["ref"] == str(data_dir / "text.tgt") and result["tgt_lang"] == "de"
    text = (out / "result.txt").read_text(encoding="utf-8")
    bleu_line, chrf_line = text.splitlines()[:2]  # run.sh logs the first two lines
    assert bleu_line.startswith(f"BLEU|{result['signatures']['bleu']} = {expected_bleu.score:.2f} ")
    assert chrf_line == f"chrF2|{result['signatures']['chrf']} = {expected_chrf.score:.2f}"
    assert "\nsegments: 7\ntalks: 2\nown segments: 5 " in text
    assert capsys.readouterr().out == text
    aligned = (out / "aligned.txt").read_text(encoding="utf-8")
    assert aligned.splitlines()[0] == f"{UTT_IDS[0]} {LINES[0]}"
    assert read_text(out / "aligned.txt") == dict(zip(UTT_IDS, LINES))  # the gold decode's text format
    assert sorted(p.name for p in out.iterdir()) == ["aligned.txt", "result.json", "result.txt", "subtitles"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.srt")) == [
        f"subtitles/{kind}/{talk}.srt" for kind in ("attention", "proportional", "reference")
        for talk in ("talk_a", "talk_b")
    ]  # and no temporary files
    assert [s["timing"] for s in result["subtitles"]] == ["proportional", "attention"]  # the default first
    assert all(0 < s["suber"] < 100 and s["blocks"] >= 5 for s in result["subtitles"])
    assert "\nSubER attention: " in text and "\nSubER proportional: " in text


def test_as_a_program_prints_only_the_result(hyp: Path, data_dir: Path, tmp_path: Path) -> None:
    """In its own process: mweralign's C++ progress lines (file descriptor 2) do not reach the terminal."""
    out = tmp_path / "score"
    command = [sys.executable, "-m", "espnet2_ext.bin.score_st_talks", "--hyp", str(hyp), "--data_dir", str(data_dir),
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (out / "result.txt").read_text(encoding="utf-8")


def test_empty_translations_are_scored(data_dir: Path, tmp_path: Path) -> None:
    hyp = write_jsonl(tmp_path / "talks.jsonl", [talk_record(rec, []) for rec in TALK_REFERENCES])
    assert run(hyp, data_dir, tmp_path / "score") == 0
    result = json.loads((tmp_path / "score" / "result.json").read_text(encoding="utf-8"))
    assert (result["bleu"], result["chrf"], result["talks"]["as_wer"]) == (0.0, 0.0, 100.0)
    assert (tmp_path / "score" / "aligned.txt").read_text(encoding="utf-8") == "".join(f"{u}\n" for u in UTT_IDS)


def _records() -> list[dict]:
    return [talk_record(rec, segments) for rec, segments in SEGMENTS.items()]


def _failed_talk(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    records = [_records()[0], talk_record("talk_b", [], error="cannot read /corpus/wav/talk_b.wav:\nnot audio")]
    hyp = write_jsonl(tmp_path / "talks.jsonl", records)
    return hyp, f"{hyp}:2: recording talk_b was not translated: cannot read /corpus/wav/talk_b.wav: not audio"


def _missing_talk(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    hyp = write_jsonl(tmp_path / "talks.jsonl", _records()[1:])
    return hyp, f"{hyp} does not match {data_dir}: 1 recordings have no translation (talk_a)"


def _extra_talk(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    hyp = write_jsonl(tmp_path / "talks.jsonl", [*_records(), talk_record("talk_z", ["Noch ein Vortrag."])])
    return hyp, f"{hyp} does not match {data_dir}: 1 translated recordings have no reference sentences (talk_z)"


def _duplicate_talk(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    hyp = write_jsonl(tmp_path / "talks.jsonl", [*_records(), _records()[0]])
    return hyp, f"{hyp}:3: recording talk_a again (first on line 1)"


def _not_json(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    hyp = write_jsonl(tmp_path / "talks.jsonl", _records())
    hyp.write_text(hyp.read_text(encoding="utf-8") + "talk_c\tEin Satz.\n", encoding="utf-8")
    return hyp, f"{hyp}:3: not JSON: Expecting value at column 1 (one record of translate --format jsonl)"


def _not_a_record(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    records = _records()
    del records[1]["translation"]
    hyp = write_jsonl(tmp_path / "talks.jsonl", [*records, ["talk_c"]])
    return hyp, f"{hyp}:2: recording talk_b: 'translation' is missing or not a string"


def _not_utf8(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    hyp = tmp_path / "talks.jsonl"
    data = b'{"id": "talk_a", "translation": "B\xfccher"}\n'
    hyp.write_bytes(data)
    offset = data.index(b"\xfc")
    return hyp, f"{hyp}:1: not UTF-8: byte 0xfc at byte offset {offset} (column {offset + 1}): invalid start byte"


def _missing_hyp(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    return tmp_path / "nope.jsonl", f"missing file {tmp_path / 'nope.jsonl'}"


def _reference_missing(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    lines = (data_dir / "text.tgt").read_text(encoding="utf-8").splitlines(keepends=True)
    (data_dir / "text.tgt").write_text("".join(lines[1:]), encoding="utf-8")
    hyp = write_jsonl(tmp_path / "talks.jsonl", _records())
    mismatch = f"{data_dir / 'text.tgt'} does not match {data_dir / 'segments'}"
    return hyp, f"{mismatch}: 1 utterances have no reference text ({UTT_IDS[0]})"


def _no_wav_scp(tmp_path: Path, data_dir: Path) -> tuple[Path, str]:
    (data_dir / "wav.scp").unlink()
    return write_jsonl(tmp_path / "talks.jsonl", _records()), f"missing file {data_dir / 'wav.scp'}"


BAD_INPUTS = [_failed_talk, _missing_talk, _extra_talk, _duplicate_talk, _not_json, _not_a_record, _not_utf8,
              _missing_hyp, _reference_missing, _no_wav_scp]


@pytest.mark.parametrize("make_bad_input", BAD_INPUTS, ids=[f.__name__.strip("_") for f in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_writes_nothing(
    make_bad_input, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hyp, message = make_bad_input(tmp_path, data_dir)
    out = tmp_path / "score"
    assert run(hyp, data_dir, out) == 1
    captured = capsys.readouterr()
    assert captured.err == f"ERROR: {message}\n"
    assert captured.out == ""
    assert not out.exists()


def test_out_that_is_a_file_is_refused_before_scoring(
    hyp: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "score").write_text("a file\n")
    assert run(hyp, data_dir, tmp_path / "score") == 1
    assert capsys.readouterr().err == f"ERROR: --out {tmp_path / 'score'} exists and is not a directory\n"
