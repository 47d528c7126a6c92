"""``simulate --history``: whole talks streamed, scored as the IWSLT 2026 track scores them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from espnet2_ext.bin import simulate
from espnet2_ext.fileio.data_dir import read_recordings
from espnet2_ext.simultaneous.instances import read_instances

STREAM = ["--policy", "alignatt", "--frame_num", "1", "--segment_ms", "400", "--cmvn", "prefix", "--beam_size", "3",
          "--maxlen_b", "40", "--attention_layer", "1", "--history", "words", "--history_words", "3"]
COLUMNS = ["BLEU", "chrF", "LongYAAL", "StreamLAAL", "LongYAAL_CA", "StreamLAAL_CA"]


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = simulate.main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def talks(trained) -> Path:
    """The tiny recipe's test set: its recordings are whole talks, its segments their sentences."""
    work, _, _ = trained
    return work / "data/tst-COMMON"


def test_data_dir_talks_are_streamed_and_scored_as_omnisteval_scores_them(
    packed_trained, cache, talks, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = ["--model", str(packed_trained), "--cache_dir", str(cache), *STREAM, "--data_dir", str(talks),
            "--computation_aware", "--output", str(out)]
    code, err = cli(capsys, *argv)
    assert code == 0, err
    recordings = read_recordings(talks)
    records = read_instances(out / "instances.log").records
    assert [r.source for r in records] == [(f"{r.recording_id}.wav",) for r in recordings]
    assert [r.source_length for r in records] == pytest.approx([1000 * sf.info(r.wav).duration for r in recordings])
    header, values = (out / "scores.tsv").read_text().splitlines()
    assert header.split("\t") == COLUMNS
    sentences = sum(len(r.utterances) for r in recordings)
    assert len((out / "aligned.txt").read_text().splitlines()) == sentences
    assert len((out / "reference.txt").read_text().splitlines()) == sentences
    assert yaml.safe_load((out / "setting.yaml").read_text())["history"] == "words"

    # OmniSTEval's own command, run by hand on the directory, gives the same scores
    omni = tmp_path / "omni"
    subprocess.run(
        [str(Path(sys.executable).parent / "omnisteval"), "longform", "--speech_segmentation",
         str(out / "reference.yaml"), "--ref_sentences_file", str(out / "reference.txt"), "--hypothesis_file",
         str(out / "instances.log"), "--lang", "de", "--word_level", "--bleu_tokenizer", "13a",
         "--fix_simuleval_emission_ca", "--output_folder", str(omni)],
        check=True, capture_output=True,
    )
    theirs = dict(row.split("\t") for row in (omni / "scores.tsv").read_text().splitlines()[1:])
    ours = dict(zip(header.split("\t"), map(float, values.split("\t"))))
    for column, name in (("BLEU", "BLEU"), ("chrF", "chrF"), ("LongYAAL", "LongYAAL (CU)")):
        # (this tiny model writes only at the end of each talk, which LongYAAL leaves out: NaN both)
        assert ours[column] == pytest.approx(float(theirs[name]), abs=1e-3, nan_ok=True)

    # a rerun after a kill streams only the missing talk
    lines = (out / "instances.log").read_text().splitlines()
    (out / "instances.log").write_text(lines[0] + "\n")
    code, err = cli(capsys, *argv)
    assert code == 0, err
    again = (out / "instances.log").read_text().splitlines()
    assert again[0] == lines[0] and [json.loads(line)["prediction"] for line in again] == [
        json.loads(line)["prediction"] for line in lines
    ]


def test_audio_files_with_a_segment_list_and_references(packed_trained, cache, talks, tmp_path, capsys):
    """INPUTs are talks; --segmentation (MuST-C's yaml) and --reference score them; without
    both, the instances are written and nothing scored."""
    recordings = read_recordings(talks)[:2]
    texts = dict(line.split(" ", 1) for line in (talks / "text.tgt").read_text().splitlines())
    yaml_path, ref_path = tmp_path / "tst.yaml", tmp_path / "tst.de"
    yaml_path.write_text("".join(
        f"- {{duration: {u.end - u.start:.3f}, offset: {u.start:.3f}, wav: {Path(r.wav).name}}}\n"
        for r in recordings for u in r.utterances
    ))
    ref_path.write_text("".join(texts[u.utt_id] + "\n" for r in recordings for u in r.utterances))
    base = ["--model", str(packed_trained), "--cache_dir", str(cache), *STREAM]
    code, err = cli(capsys, *base, "--reference", str(ref_path), "--segmentation", str(yaml_path),
                    "--output", str(tmp_path / "scored"), *(r.wav for r in recordings))
    assert code == 0, err
    assert (tmp_path / "scored/scores.tsv").read_text().splitlines()[0].split("\t") == COLUMNS[:4]
    code, err = cli(capsys, *base, "--output", str(tmp_path / "unscored"), *(r.wav for r in recordings))
    assert code == 0 and "no scores without references" in err
    assert len(read_instances(tmp_path / "unscored/instances.log").records) == 2


@pytest.mark.parametrize("extra, message", [
    (["--policy", "waitk"], "history words needs a policy that reads the cross-attention"),
    (["--history_words", "0"], "history_words must be an integer >= 1"),
    (["--segmentation", "x.yaml"], "--segmentation without --reference"),
    (["--reference", "x.de"], "--reference without --segmentation"),
    (["--reference", "REF_SHORT", "--segmentation", "YAML"], "has 1 lines but"),
    (["--reference", "REF", "--segmentation", "YAML_OTHER_WAV"], "names no segment of"),
    (["--reference", "REF3", "--segmentation", "YAML_EXTRA_WAV"], "names elsewhere.wav, which the inputs do not hold"),
])
def test_bad_stream_options_are_one_error_line_and_nothing_written(
    packed_trained, cache, talks, tmp_path, capsys, extra, message
):
    recording = read_recordings(talks)[0]
    yaml_path = tmp_path / "tst.yaml"
    yaml_path.write_text("".join(f"- {{duration: 1.0, offset: {n}.0, wav: {Path(recording.wav).name}}}\n" for n in range(2)))
    other = tmp_path / "other.yaml"
    other.write_text("- {duration: 1.0, offset: 0.0, wav: elsewhere.wav}\n- {duration: 1.0, offset: 1.0, wav: elsewhere.wav}\n")
    (tmp_path / "ref.de").write_text("eins\nzwei\n")
    (tmp_path / "ref3.de").write_text("eins\nzwei\ndrei\n")
    more = tmp_path / "more.yaml"
    more.write_text(yaml_path.read_text() + "- {duration: 1.0, offset: 0.0, wav: elsewhere.wav}\n")
    (tmp_path / "short.de").write_text("eins\n")
    names = {"REF": tmp_path / "ref.de", "REF_SHORT": tmp_path / "short.de", "YAML": yaml_path, "YAML_OTHER_WAV": other,
             "REF3": tmp_path / "ref3.de", "YAML_EXTRA_WAV": more}
    extra = [str(names.get(a, a)) for a in extra]
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), *STREAM, *extra,
                    "--output", str(out), recording.wav)
    assert code == 1 and err.count("\n") == 1 and err.startswith("ERROR: ") and message in err, err
    assert not out.exists()


def test_settings_mixing_utterances_and_talks_are_refused(packed_trained, cache, talks, tmp_path, capsys):
    settings = tmp_path / "mixed.yaml"
    settings.write_text("segment_ms: 400\nsettings:\n  - {policy: alignatt, frame_num: 1}\n"
                        "  - {policy: alignatt, frame_num: 1, history: words}\n")
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), "--attention_layer", "1",
                    "--cmvn", "prefix", "--settings", str(settings), "--data_dir", str(talks),
                    "--output", str(tmp_path / "out"))
    assert code == 1 and "mix utterances (history: none) and whole talks" in err and err.count("\n") == 1


def test_the_voice_activity_cut_baseline_streams_talks_too(packed_trained, cache, talks, tmp_path, capsys):
    out = tmp_path / "vad"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache),
                    *[a if a != "words" else "vad" for a in STREAM], "--data_dir", str(talks), "--output", str(out))
    assert code == 0, err
    assert out.name == "vad" and (out / "scores.tsv").is_file()
    assert yaml.safe_load((out / "setting.yaml").read_text())["history"] == "vad"


def test_stream_settings_run_in_worker_processes(packed_trained, cache, talks, tmp_path, capsys):
    """--nj 2: each setting in a process of its own, scored there (OmniSTEval's alignment starts
    processes of its own, which a daemonic worker could not)."""
    settings = tmp_path / "stream.yaml"
    settings.write_text(
        "policy: alignatt\nsegment_ms: 400\nattention_layer: 1\ncmvn: prefix\nbeam_size: 2\nmaxlen_b: 30\n"
        "settings:\n  - {history: punctuation, frame_num: 1}\n  - {history: words, frame_num: 1, history_words: 3}\n"
    )
    out = tmp_path / "out"
    code, err = cli(capsys, "--model", str(packed_trained), "--cache_dir", str(cache), "--settings", str(settings),
                    "--nj", "2", "--data_dir", str(talks), "--output", str(out))
    assert code == 0, err
    for name in ("alignatt_f1_punct", "alignatt_f1_words3"):
        assert (out / name / "scores.tsv").read_text().startswith("BLEU\tchrF\tLongYAAL\tStreamLAAL")
