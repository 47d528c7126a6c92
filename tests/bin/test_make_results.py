"""Tests for espnet2_ext/bin/make_results.py (an experiment's section of RESULTS.md)."""

import json
from pathlib import Path

import pytest
import yaml

from espnet2_ext.bin import make_results
from espnet2_ext.main_funcs.experiment import ScoreResult, SubtitleScore, TalkSegmentation, write_result

BLEU_SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
CONFIG = {
    "encoder": "ctc_compress_conformer",
    "encoder_conf": {"output_size": 512, "attention_heads": 8, "linear_units": 2048, "num_blocks": 12,
                     "subsampling_layers": 2, "ctc_block": 8, "compression": "avg"},
    "decoder": "transformer",
    "decoder_conf": {"num_blocks": 6},
    "model_conf": {"ctc_weight": 0.5},
    "token_list": ["<blank>", "<unk>", "a", "<sos/eos>"],
    "ngpu": 4,
}
COMMANDS = [
    "python -m espnet2_ext.bin.st_train --config conf/train.yaml --ngpu 4 --output_dir exp/st_train",
    "python -m espnet2_ext.bin.st_inference --st_train_config exp/st_train/config.yaml",
]


def write_score(
    exp: Path, decode: str, test_set: str, bleu: float, chrf: float, segments: int,
    talks: TalkSegmentation | None = None, bleu_sig: str = BLEU_SIG, subtitles: tuple = (),
) -> None:
    """A result.json as score_st writes it, or with ``talks`` as score_st_talks writes it (under talks/)."""
    result = ScoreResult(
        bleu=bleu, chrf=chrf, n_segments=segments, bleu_signature=bleu_sig, chrf_signature=CHRF_SIG,
        bleu_line=f"BLEU|{bleu_sig} = {bleu:.2f}", chrf_line=f"chrF2|{CHRF_SIG} = {chrf:.2f}", tgt_lang="de",
        hyp="hyp", ref="ref", talks=talks, subtitles=subtitles,
    )
    write_result(exp / decode / test_set / ("score" if talks is None else "talks/score"), result)


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    """A finished experiment: config, parameter count, averaging, commands, two decodings, curves."""
    directory = tmp_path / "exp" / "st_train"
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (directory / "num_params").write_text("114567890\n")
    averaged = {"file": "valid.loss.ave_3around.pth", "epochs": [18, 19, 20], "criterion": "valid.loss.min",
                "mode": "around", "best_epoch": 19}  # as average_checkpoints writes it
    (directory / "averaged.json").write_text(json.dumps(averaged))
    (directory / "run.cmd").write_text("\n".join(COMMANDS) + "\n")
    (directory / "curves.png").write_bytes(b"\x89PNG")
    write_score(directory, "decode_st_beam5", "tst-COMMON", 27.345, 53.21, 2574)
    write_score(directory, "decode_st_beam1", "tst-COMMON", 25.0, 51.0, 2574)
    write_score(directory, "decode_st_beam5", "tst-HE", 24.5, 50.123, 600)
    write_score(directory, "decode_st_beam5", "tst-COMMON", 25.104, 51.8, 2574, TalkSegmentation(27, 2431, 40.5),
                subtitles=SUBTITLES)
    (directory / "decode_st_beam5" / "tst-HE" / "notes").write_text("not a score")
    return directory


SUBTITLES = (SubtitleScore("proportional", 61.234, 0.4123, 35, 120, 90.0, 21.0),
             SubtitleScore("attention", 63.5, None, 0, 121, None, 21.0))


def run(exp: Path, out: Path, *extra: str) -> str:
    assert make_results.main(["--exp_dir", str(exp), "--out", str(out), *extra]) == 0
    return out.read_text(encoding="utf-8")


def table_rows(text: str) -> list[list[str]]:
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| decode_")]
    rows = [row for row in rows if len(row) == 8]  # the score table's, not the subtitles
    return [[cell.strip() for cell in row] for row in rows]


def test_section(exp: Path, tmp_path: Path) -> None:
    text = run(exp, tmp_path / "RESULTS.md")
    header = "| decoding | test set | BLEU gold | BLEU own | chrF gold | chrF own | segments gold | segments own |"
    assert f"\n{header}\n" in text
    assert table_rows(text) == [
        ["decode_st_beam1", "tst-COMMON", "25.00", "–", "51.00", "–", "2574", "–"],
        ["decode_st_beam5", "tst-COMMON", "27.34", "25.10", "53.21", "51.80", "2574", "2431"],
        ["decode_st_beam5", "tst-HE", "24.50", "–", "50.12", "–", "600", "–"],
    ]
    assert f"\n- BLEU signature: `{BLEU_SIG}`\n- chrF signature: `{CHRF_SIG}`\n" in text  # shared by all
    assert "- *own*: whole talks translated with our own segmentation" in text and "sentences against" not in text
    table = text[text.index("| decoding"):text.index("### Model")]
    assert max(len(line) for line in table.splitlines()) <= 100  # readable in a terminal
    assert text.startswith("# Results\n\n<!-- make_results begin: exp/st_train ")
    assert "## st_train\n" in text
    assert "```bash\n" + "\n".join(COMMANDS) + "\n```\n" in text
    assert ("- Checkpoint: `valid.loss.ave_3around.pth`, the average of 3 epochs (18, 19, 20), "
            "chosen by valid.loss.min: mode around, best epoch 19\n") in text
    assert "- encoder: ctc_compress_conformer: 12 blocks, d=512, 8 heads, FFN 2048" in text
    assert "CTC after block 8, compression avg" in text
    assert "- ngpu: 4\n" in text and "- vocabulary: 4 tokens\n" in text
    assert "- parameters: 114.6 M (114,567,890)\n" in text
    assert "- Hardware: " in text and "logical CPUs" in text
    assert "![training curves of st_train](exp/st_train/curves.png)" in text
    assert ("### Subtitles\n\n| decoding | test set | timing | SubER | start error (s) | blocks | within cps |\n"
            "|---|---|---|---:|---:|---:|---:|\n"
            "| decode_st_beam5 | tst-COMMON | proportional (default) | 61.23 | 0.412 (35) | 120 | 90.0% (<= 21) |\n"
            "| decode_st_beam5 | tst-COMMON | attention | 63.50 | – | 121 | – |\n") in text


def test_idempotent(exp: Path, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    first = run(exp, out)
    assert run(exp, out) == first
    assert not [p for p in tmp_path.iterdir() if p.name != "RESULTS.md" and p.name != "exp"]  # no temp files left


def test_updates_only_its_section(exp: Path, tmp_path: Path) -> None:
    """Hand-written text and other experiments' sections survive; a new score replaces the old table."""
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nNotes written by hand.\n")
    other = tmp_path / "exp" / "st_weighted"
    other.mkdir()
    write_score(other, "decode_st_beam5", "tst-COMMON", 26.0, 52.0, 2574)
    run(exp, out)
    run(other, out, "--title", "weighted compression")
    write_score(exp, "decode_st_beam10", "tst-COMMON", 28.0, 54.0, 2574)
    text = run(exp, out)
    assert text.startswith("# Results\n\nNotes written by hand.\n\n<!-- make_results begin: exp/st_train ")
    assert text.count("make_results begin:") == 2 and text.count("## st_train") == 1
    assert text.index("## st_train") < text.index("## weighted compression")
    assert [row[:3] for row in table_rows(text)] == [
        ["decode_st_beam1", "tst-COMMON", "25.00"],
        ["decode_st_beam10", "tst-COMMON", "28.00"],
        ["decode_st_beam5", "tst-COMMON", "27.34"],
        ["decode_st_beam5", "tst-HE", "24.50"],
        ["decode_st_beam5", "tst-COMMON", "26.00"],
    ]


def test_own_segmentation_alone_and_differences_are_shown(tmp_path: Path) -> None:
    """A test set scored only talk by talk gets its row; another reference count or signature is said."""
    exp = tmp_path / "exp"
    other_sig = BLEU_SIG.replace("tok:13a", "tok:zh")
    write_score(exp, "decode_st", "tst-COMMON", 20.0, 50.0, 2574)
    write_score(exp, "decode_st", "tst-COMMON", 18.0, 48.0, 2580, TalkSegmentation(27, 2400, 45.0))
    write_score(exp, "decode_st", "tst-HE", 17.0, 47.0, 600, TalkSegmentation(11, 580, None), bleu_sig=other_sig)
    text = run(exp, tmp_path / "RESULTS.md")
    assert table_rows(text) == [
        ["decode_st", "tst-COMMON", "20.00", "18.00", "50.00", "48.00", "2574", "2400"],
        ["decode_st", "tst-HE", "–", "17.00", "–", "47.00", "–", "580"],
    ]
    assert "- decode_st tst-COMMON: *own* is scored against 2580 reference sentences, *gold* against 2574\n" in text
    assert f"- BLEU signature `{BLEU_SIG}`: decode_st tst-COMMON gold, decode_st tst-COMMON own\n" in text
    assert f"- BLEU signature `{other_sig}`: decode_st tst-HE own\n" in text
    assert f"- chrF signature: `{CHRF_SIG}`\n" in text


def test_result_json_of_before_talk_scoring_still_reads(tmp_path: Path) -> None:
    """A result.json as score_st wrote it before talk-level scoring existed (no 'talks')."""
    exp = tmp_path / "exp"
    score = exp / "decode_st" / "tst-COMMON" / "score"
    score.mkdir(parents=True)
    old = {"bleu": 21.5, "chrf": 50.25, "signatures": {"bleu": BLEU_SIG, "chrf": CHRF_SIG},
           "sacrebleu": {"bleu": f"BLEU|{BLEU_SIG} = 21.50", "chrf": f"chrF2|{CHRF_SIG} = 50.25"},
           "n_segments": 2574, "tgt_lang": "de", "hyp": "hyp", "ref": "ref"}
    (score / "result.json").write_text(json.dumps(old))
    assert table_rows(run(exp, tmp_path / "RESULTS.md")) == [
        ["decode_st", "tst-COMMON", "21.50", "–", "50.25", "–", "2574", "–"],
    ]


def test_results_inside_exp_dir(exp: Path) -> None:
    """As run.sh calls it: RESULTS.md in the experiment dir, links relative to it."""
    averaged = {"file": "/elsewhere/avg.pth", "epochs": [3, 5], "criterion": None, "mode": "epochs", "best_epoch": None}
    (exp / "averaged.json").write_text(json.dumps(averaged))
    text = run(exp, exp / "RESULTS.md")
    assert "<!-- make_results begin: . " in text
    assert "](curves.png)" in text
    assert "- Checkpoint: `/elsewhere/avg.pth`, the average of 2 epochs (3, 5), given explicitly\n" in text
    assert run(exp, exp / "RESULTS.md") == text


def test_bare_experiment(tmp_path: Path) -> None:
    """Nothing decoded or recorded yet: the section says so instead of failing."""
    exp = tmp_path / "exp"
    exp.mkdir()
    text = run(exp, tmp_path / "RESULTS.md")
    assert "No decoded test sets yet" in text
    assert "Not recorded (no run.cmd)." in text
    assert "- Checkpoint: not recorded (no averaged.json)" in text
    assert "- Date: unknown" in text
    assert "curves.png" not in text


def test_missing_exp_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "RESULTS.md"
    assert make_results.main(["--exp_dir", str(tmp_path / "nope"), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"ERROR: experiment dir {tmp_path / 'nope'} does not exist\n"
    assert not out.exists()


def test_bad_result_json(exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = exp / "decode_st_beam5" / "tst-HE" / "score" / "result.json"
    path.write_text(json.dumps({"bleu": 1.0, "chrf": 2.0, "n_segments": 3}))
    assert make_results.main(["--exp_dir", str(exp), "--out", str(tmp_path / "RESULTS.md")]) == 1
    assert capsys.readouterr().err == f"ERROR: {path}: 'signatures.bleu' is missing or not a string\n"


def test_bad_talks_result_json(exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = exp / "decode_st_beam5" / "tst-COMMON" / "talks" / "score" / "result.json"
    record = json.loads(path.read_text())
    record["talks"]["n_segments"] = "many"
    path.write_text(json.dumps(record))
    assert make_results.main(["--exp_dir", str(exp), "--out", str(tmp_path / "RESULTS.md")]) == 1
    assert capsys.readouterr().err == f"ERROR: {path}: 'talks.n_segments' is missing or not an integer\n"


def test_out_that_is_a_directory_is_refused(exp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert make_results.main(["--exp_dir", str(exp), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"ERROR: --out {tmp_path} is a directory; expected a file to write\n"


# --------------------------------------------------------------------------- stage 9


def plotted_and_tabled(exp: Path, tmp_path: Path, plot: str) -> str:
    """plot_simulation's ``plot`` (a path under ``exp``) drawn, then RESULTS.md's text."""
    from espnet2_ext.bin import plot_simulation

    assert plot_simulation.main(["--exp_dir", str(exp)]) == 0
    drawn = exp / plot
    assert drawn.read_bytes()[:4] == b"\x89PNG" and drawn.stat().st_size > 5000
    return run(exp, tmp_path / "RESULTS.md")


def write_simulation(exp: Path, run: str, test_set: str, name: str, bleu: float, laal: float, aware: bool) -> None:
    """A setting's directory as simulate leaves it: scores.tsv (SimulEval's) and setting.yaml."""
    directory = exp / run / test_set / name
    directory.mkdir(parents=True)
    columns = {"BLEU": bleu, "LAAL": laal, "YAAL": laal - 50, "AL": laal - 100}
    if aware:
        columns.update(LAAL_CA=laal + 400, AL_CA=laal + 300)
    (directory / "scores.tsv").write_text("\t".join(columns) + "\n" + "\t".join(map(repr, columns.values())) + "\n")
    (directory / "setting.yaml").write_text(yaml.safe_dump({"policy": "alignatt", "frame_num": int(name[-1])}))


def test_simultaneous_settings_are_tabled_beside_the_offline_bleu_and_plotted(exp, tmp_path, capsys):
    write_simulation(exp, "simulate_st_beam5", "tst-COMMON", "alignatt_f4", 24.6, 1810.0, aware=True)
    write_simulation(exp, "simulate_st_beam5", "tst-COMMON", "alignatt_f2", 20.1, 1205.5, aware=True)
    from espnet2_ext.simultaneous.instances import InstanceRecord

    records = [InstanceRecord.from_words(n, ["Hallo"], [length], [length], "Hallo", f"utt{n}", length)
               for n, length in enumerate((2000.0, 3000.0))]
    (exp / "simulate_st_beam5/tst-COMMON/alignatt_f2/instances.log").write_text(
        "".join(r.json_line() + "\n" for r in records))
    text = plotted_and_tabled(exp, tmp_path, "simulate_st_beam5/tst-COMMON/bleu_laal.png")
    # offline BLEU of decode_st_beam5 (the run's conf), not of decode_st_beam1; rows by LAAL
    assert ("simulate_st_beam5, tst-COMMON (gold segmentation; latency in ms of source; offline BLEU 27.34 "
            "at LAAL 2500, every word at the end):") in text
    f2, f4 = text.index("| alignatt_f2 | 20.10 | 74% | 1206 | 1156 | 1106 | 1606 | 1506 |"), text.index("| alignatt_f4 |")
    assert f2 < f4 and "| alignatt_f4 | 24.60 | 90% | 1810 | 1760 | 1710 | 2210 | 2110 |" in text
    assert "(exp/st_train/simulate_st_beam5/tst-COMMON/bleu_laal.png)" in text


def write_stream(exp: Path, name: str, options: dict, scores: dict) -> None:
    """A streamed setting's directory as simulate --history leaves it."""
    directory = exp / "stream_st_beam5/tst-COMMON" / name
    directory.mkdir(parents=True)
    (directory / "scores.tsv").write_text("\t".join(scores) + "\n" + "\t".join(map(repr, scores.values())) + "\n")
    (directory / "setting.yaml").write_text(yaml.safe_dump(options))


def test_streamed_settings_are_tabled_beside_the_gold_segmentations_same_agent_and_plotted(exp, tmp_path):
    write_simulation(exp, "simulate_st_beam5", "tst-COMMON", "alignatt_f4", 24.0, 1800.0, aware=False)
    agent = {"policy": "alignatt", "frame_num": 4}
    write_stream(exp, "alignatt_f4_punct_pd", {**agent, "history": "punctuation", "audio_cut": "past_discarded"},
                 {"BLEU": 21.6, "chrF": 50.5, "LongYAAL": 2100.0, "StreamLAAL": 1900.0})
    write_stream(exp, "alignatt_f2_words20", {"policy": "alignatt", "frame_num": 2, "history": "words",
                                              "history_words": 20}, {"BLEU": 12.0, "chrF": 40.0, "LongYAAL": 1500.0,
                                                                     "StreamLAAL": 1400.0})
    text = plotted_and_tabled(exp, tmp_path, "stream_st_beam5/tst-COMMON/bleu_longyaal.png")
    assert "### Whole talks streamed (stage 10)" in text
    # the gold segmentation's same agent (f = 4) beside it: 90% of its BLEU; f = 2 has none
    assert "| alignatt_f4_punct_pd | 21.60 | 50.50 | 2100 | 1900 | 24.00 | 90% | 1750 |" in text
    assert "| alignatt_f2_words20 | 12.00 | 40.00 | 1500 | 1400 | – | – | – |" in text
    assert text.index("alignatt_f2_words20") < text.index("alignatt_f4_punct_pd")  # by LongYAAL
    assert "(exp/st_train/stream_st_beam5/tst-COMMON/bleu_longyaal.png)" in text


def test_no_simulation_no_section_and_plotting_names_the_missing_stage(exp, tmp_path, capsys):
    from espnet2_ext.bin import plot_simulation

    assert "Simultaneous" not in run(exp, tmp_path / "RESULTS.md")
    assert plot_simulation.main(["--exp_dir", str(exp)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "run stage 9" in err and err.count("\n") == 1
