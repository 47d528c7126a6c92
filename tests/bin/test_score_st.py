"""Tests for espnet2_ext/bin/score_st.py (corpus BLEU and chrF with sacreBLEU signatures)."""

import json
from pathlib import Path

import pytest
import sacrebleu

from espnet2_ext.bin import score_st

REFS = {
    "utt1": "Das ist ein kleiner Test .",
    "utt2": "Wir übersetzen Sprache direkt in Text .",
    "utt3": "Die Katze sitzt auf der Matte .",
    "utt4": "Heute regnet es nicht .",
}
HYPS = {
    "utt1": "Das ist ein Test .",
    "utt2": "Wir übersetzen Sprache in Text .",
    "utt3": "Eine Katze sitzt auf der Matte .",
    "utt4": "",
}


def write_table(path: Path, table: dict[str, str], order: list[str] | None = None) -> Path:
    """A Kaldi-style text file; an empty text is written as the id alone, like ``utt ``."""
    path.write_text("".join(f"{utt} {table[utt]}\n" for utt in order or table), encoding="utf-8")
    return path


def run(tmp_path: Path, hyps: dict[str, str], refs: dict[str, str], *extra: str) -> int:
    hyp = write_table(tmp_path / "hyp", hyps)
    ref = write_table(tmp_path / "ref", refs)
    return score_st.main(["--hyp", str(hyp), "--ref", str(ref), "--out", str(tmp_path / "score"), *extra])


def result(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "score" / "result.json").read_text(encoding="utf-8"))


def test_identical_is_100(tmp_path: Path) -> None:
    assert run(tmp_path, REFS, REFS) == 0
    scores = result(tmp_path)
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert scores["n_segments"] == 4


def test_matches_sacrebleu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hypotheses are paired by id, not by line: the hyp file is in another order."""
    ref = write_table(tmp_path / "ref", REFS)
    hyp = write_table(tmp_path / "hyp", HYPS, order=sorted(HYPS, reverse=True))
    assert score_st.main(["--hyp", str(hyp), "--ref", str(ref), "--out", str(tmp_path / "score")]) == 0
    hyps, refs = [HYPS[u] for u in REFS], [list(REFS.values())]
    expected_bleu = sacrebleu.corpus_bleu(hyps, refs)
    expected_chrf = sacrebleu.corpus_chrf(hyps, refs)
    assert 0 < expected_bleu.score < 100
    scores = result(tmp_path)
    assert scores["bleu"] == pytest.approx(expected_bleu.score)
    assert scores["chrf"] == pytest.approx(expected_chrf.score)
    assert scores["hyp"] == str(hyp) and scores["ref"] == str(ref)
    assert scores["signatures"]["bleu"] == "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" + sacrebleu.__version__
    assert scores["signatures"]["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    text = (tmp_path / "score" / "result.txt").read_text(encoding="utf-8")
    bleu_line, chrf_line = text.splitlines()[:2]  # run.sh logs the first two lines
    assert bleu_line.startswith(f"BLEU|{scores['signatures']['bleu']} = {expected_bleu.score:.2f} ")
    assert chrf_line == f"chrF2|{scores['signatures']['chrf']} = {expected_chrf.score:.2f}"
    assert text in capsys.readouterr().out


def test_empty_hypotheses(tmp_path: Path) -> None:
    """``utt`` alone on a line is an empty hypothesis: scored, not missing."""
    ref = write_table(tmp_path / "ref", REFS)
    hyp = tmp_path / "hyp"
    hyp.write_text("".join(f"{utt}\n" for utt in REFS), encoding="utf-8")
    assert score_st.main(["--hyp", str(hyp), "--ref", str(ref), "--out", str(tmp_path / "score")]) == 0
    scores = result(tmp_path)
    assert scores["bleu"] == 0.0 and scores["chrf"] == 0.0
    assert scores["n_segments"] == len(REFS)


def test_tgt_lang_picks_tokenizer(tmp_path: Path) -> None:
    refs = {"a": "我们直接翻译语音。", "b": "今天不下雨。"}
    hyps = {"a": "我们翻译语音。", "b": "今天不下雨。"}
    assert run(tmp_path, hyps, refs, "--tgt_lang", "zh") == 0
    expected = sacrebleu.corpus_bleu(list(hyps.values()), [list(refs.values())], tokenize="zh")
    assert "tok:zh" in result(tmp_path)["signatures"]["bleu"]
    assert result(tmp_path)["bleu"] == pytest.approx(expected.score)


def test_missing_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs = {f"utt{i:02d}": "ein Satz" for i in range(8)}
    hyps = {utt: text for utt, text in refs.items() if utt not in ("utt01", "utt03", "utt04", "utt05", "utt06", "utt07")}
    assert run(tmp_path, hyps, refs) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("ERROR: ")
    assert f"{tmp_path / 'hyp'} does not match {tmp_path / 'ref'}" in error
    assert "6 reference ids have no hypothesis (utt01, utt03, utt04, utt05, utt06 and 1 more)" in error
    assert not (tmp_path / "score").exists()


def test_extra_and_missing_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hyps = {**{u: t for u, t in HYPS.items() if u != "utt2"}, "utt9": "zu viel"}
    assert run(tmp_path, hyps, REFS) == 1
    error = capsys.readouterr().err
    assert "1 reference ids have no hypothesis (utt2)" in error
    assert "1 hypothesis ids are not in the references (utt9)" in error


@pytest.mark.parametrize("which", ["hyp", "ref"])
def test_duplicate_id(tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str) -> None:
    ref = write_table(tmp_path / "ref", REFS)
    hyp = write_table(tmp_path / "hyp", HYPS)
    duplicated = tmp_path / which
    duplicated.write_text(duplicated.read_text(encoding="utf-8") + "utt1 noch einmal\n", encoding="utf-8")
    assert score_st.main(["--hyp", str(hyp), "--ref", str(ref), "--out", str(tmp_path / "score")]) == 1
    assert capsys.readouterr().err == f"ERROR: utt1 is duplicated ({duplicated}:5)\n"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = write_table(tmp_path / "ref", REFS)
    argv = ["--hyp", str(tmp_path / "nope"), "--ref", str(ref), "--out", str(tmp_path / "score")]
    assert score_st.main(argv) == 1
    assert capsys.readouterr().err == f"ERROR: missing file {tmp_path / 'nope'}\n"


def test_empty_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, {}, {}) == 1
    assert "no references in" in capsys.readouterr().err


def test_out_that_is_a_file_is_refused_before_scoring(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "score").write_text("a file\n")
    assert run(tmp_path, HYPS, REFS) == 1
    assert capsys.readouterr().err == f"ERROR: --out {tmp_path / 'score'} exists and is not a directory\n"
