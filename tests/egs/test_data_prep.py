"""Tests for egs/mustc_conformer_ctc/local/data_prep.py (MuST-C -> Kaldi-style data dirs)."""

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet2_ext.fileio.kaldi_table import read_text
from tests.helpers import load_recipe_script

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "egs" / "mustc_conformer_ctc" / "local" / "data_prep.py"
SPLITS = ("train", "dev", "tst-COMMON")
TEXT_FILES = {"text.src", "text.src.norm", "text.tgt", "text.tgt.tagged"}
KALDI_FILES = {"wav.scp", "segments", "utt2spk", "spk2utt"} | TEXT_FILES

data_prep = load_recipe_script("data_prep")


@dataclass(frozen=True)
class Seg:
    """One segment of the fixture corpus."""

    wav: str
    offset: float
    duration: float
    en: str
    de: str


# Two talks x three segments; ted_1 and ted_10 check that ids sort consistently.
TRAIN = [
    Seg("ted_10.wav", 0.5, 1.2, "Hello, world!", "Hallo, Welt!"),
    Seg("ted_10.wav", 2.0, 1.0, "Don't stop -- \u201cplease\u201d.", "Hör nicht auf, bitte."),
    Seg("ted_10.wav", 3.5, 0.4, "Yes.", "Ja, das ist wirklich eine sehr lange Übersetzung."),
    Seg("ted_1.wav", 0.0, 1.0, "It's  the well-known  'rock'n'roll' band.", "Die wohlbekannte Rock'n'Roll-Band."),
    Seg("ted_1.wav", 16.31, 3.5, "(Laughter)", "(Lachen)"),
    Seg("ted_1.wav", 1.5, 0.8, "A small cat.", "Eine Katze."),
]
DEV = [
    Seg("ted_2.wav", 0.0, 1.0, "Good morning.", "Guten Morgen."),
    Seg("ted_2.wav", 1.0, 1.0, "No.", "Nein, überhaupt nicht, niemals."),
    Seg("ted_2.wav", 2.5, 1.0, "Thanks.", "Danke."),
]
TEST = [
    Seg("ted_3.wav", 0.25, 1.0, "One.", "Eins."),
    Seg("ted_3.wav", 1.5, 1.0, "Two.", "Zwei."),
    Seg("ted_4.wav", 0.0, 2.0, "Three.", "Drei."),
]
TALK_SECONDS = 20.0


def yaml_line(seg: Seg) -> str:
    speaker = Path(seg.wav).stem.replace("ted_", "spk.")
    words = len(seg.en.split())
    return (
        f"- {{duration: {seg.duration:.6f}, offset: {seg.offset:.6f}, rW: {words}, uW: 0, "
        f"speaker_id: {speaker}, wav: {seg.wav}}}"
    )


def write_split(root: Path, split: str, segments: list[Seg], tgt: str = "de") -> Path:
    """One split in MuST-C layout: talk wavs (16 kHz int16 noise), yaml, .en and .<tgt>."""
    directory = root / f"en-{tgt}" / "data" / split
    (directory / "wav").mkdir(parents=True)
    (directory / "txt").mkdir()
    rng = np.random.default_rng(len(split))
    for wav in sorted({seg.wav for seg in segments}):
        samples = rng.integers(-3000, 3000, int(TALK_SECONDS * 16000), dtype=np.int16)
        sf.write(directory / "wav" / wav, samples, 16000, subtype="PCM_16")
    txt = directory / "txt"
    (txt / f"{split}.yaml").write_text("".join(yaml_line(s) + "\n" for s in segments))
    (txt / f"{split}.en").write_text("".join(s.en + "\n" for s in segments), encoding="utf-8")
    (txt / f"{split}.{tgt}").write_text("".join(s.de + "\n" for s in segments), encoding="utf-8")
    return directory


def write_corpus(root: Path) -> Path:
    for split, segments in zip(SPLITS, (TRAIN, DEV, TEST)):
        write_split(root, split, segments)
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "MUSTC")


def run(corpus: Path, out: Path, *extra: str) -> int:
    return data_prep.main(["--mustc_root", str(corpus), "--tgt_lang", "de", "--out", str(out), *extra])


def read(path: Path) -> dict[str, str]:
    """A Kaldi table as {first field: rest of line}: the project's one reader of them."""
    return read_text(path)


def keys(path: Path) -> list[str]:
    return [line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- output


def test_writes_every_split_with_kaldi_files(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    assert run(corpus, out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLITS)
    for split in SPLITS:
        assert {p.name for p in (out / split).iterdir()} == KALDI_FILES


def test_ids_times_and_recordings(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    run(corpus, out, "--char_ratio_filter", "false")
    segments = read(out / "train" / "segments")
    assert segments["ted_1-0001631-0001981"] == "ted_1 16.310000 19.810000"
    assert segments["ted_10-0000050-0000170"] == "ted_10 0.500000 1.700000"
    assert len(segments) == 6
    wav_scp = read(out / "train" / "wav.scp")
    assert wav_scp == {
        "ted_1": str(corpus / "en-de" / "data" / "train" / "wav" / "ted_1.wav"),
        "ted_10": str(corpus / "en-de" / "data" / "train" / "wav" / "ted_10.wav"),
    }
    assert all(Path(path).is_absolute() for path in wav_scp.values())
    assert read(out / "dev" / "utt2spk") == {
        "ted_2-0000000-0000100": "ted_2",
        "ted_2-0000100-0000200": "ted_2",
        "ted_2-0000250-0000350": "ted_2",
    }


def test_every_file_sorted_by_id_and_consistent_with_speaker_order(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    run(corpus, out, "--char_ratio_filter", "false")
    for split in SPLITS:
        utt_ids = keys(out / split / "segments")
        assert utt_ids == sorted(utt_ids) and len(set(utt_ids)) == len(utt_ids)
        for name in KALDI_FILES - {"wav.scp", "spk2utt"}:
            assert keys(out / split / name) == utt_ids, name
        utt2spk = (out / split / "utt2spk").read_text().splitlines()
        # Kaldi's validate_data_dir.sh: sorting by speaker must give the same order.
        assert sorted(utt2spk, key=lambda line: line.split()[1]) == utt2spk
        spk2utt = read(out / split / "spk2utt")
        assert list(spk2utt) == sorted(spk2utt) == keys(out / split / "wav.scp")
        assert {u: s for s, us in spk2utt.items() for u in us.split()} == read(out / split / "utt2spk")


def test_text_files(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    run(corpus, out, "--char_ratio_filter", "false")
    train = out / "train"
    utt = "ted_1-0000000-0000100"
    assert read(train / "text.src")[utt] == "It's the well-known 'rock'n'roll' band."
    assert read(train / "text.src.norm")[utt] == "it's the well known rock'n'roll band"
    assert read(train / "text.tgt")[utt] == "Die wohlbekannte Rock'n'Roll-Band."
    assert read(train / "text.tgt.tagged")[utt] == "<lang:de> Die wohlbekannte Rock'n'Roll-Band."
    assert read(train / "text.src.norm")["ted_10-0000200-0000300"] == "don't stop please"
    assert read(train / "text.src.norm")["ted_1-0001631-0001981"] == "laughter"


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Hello, World!", "hello world"),
        ("I don't know -- it\u2019s \u201cfine\u201d.", "i don't know it's fine"),
        ("'Quoted' words' ends", "quoted words ends"),
        ("well-known  U.S.  $5 100%", "well known u s 5 100"),
        ("Stra\u00dfe \u00c9T\u00c9 \u266b", "stra\u00dfe \u00e9t\u00e9"),
        ("snake_case\tand\u2028separators", "snake case and separators"),
        ("--", ""),
    ],
)
def test_normalize_source(raw: str, norm: str):
    assert data_prep.normalize_source(raw) == norm


def test_char_ratio_filter_applies_to_train_only(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    assert run(corpus, out) == 0
    train = keys(out / "train" / "segments")
    # "Yes." -> long translation (ratio 12.5) and "(Laughter)" -> "(Lachen)" (0.8, kept: bounds inclusive).
    assert "ted_10-0000350-0000390" not in train
    assert "ted_1-0001631-0001981" in train
    assert len(train) == 5
    assert len(keys(out / "dev" / "segments")) == 3  # dev keeps its ratio-10 pair


def test_joined_runs_of_consecutive_segments_are_added_to_train(corpus: Path, tmp_path: Path, caplog):
    """--join_segments 3: per talk, runs of 2 and of 3 consecutive segments, each one more
    utterance spanning them; a run over a pause longer than --join_max_pause is not joined."""
    caplog.set_level("INFO")
    out = tmp_path / "data"
    assert run(corpus, out, "--join_segments", "3", "--char_ratio_filter", "false") == 0
    segments = read(out / "train" / "segments")
    joined = {
        "ted_10-0000050-0000300": ("ted_10 0.500000 3.000000", "Hallo, Welt! Hör nicht auf, bitte."),
        "ted_10-0000050-0000390": (
            "ted_10 0.500000 3.900000", "Hallo, Welt! Hör nicht auf, bitte. Ja, das ist wirklich eine sehr lange Übersetzung."
        ),
        "ted_1-0000000-0000230": ("ted_1 0.000000 2.300000", "Die wohlbekannte Rock'n'Roll-Band. Eine Katze."),
    }
    assert len(segments) == len(TRAIN) + len(joined)
    targets, sources = read(out / "train" / "text.tgt"), read(out / "train" / "text.src.norm")
    for utt, (where, target) in joined.items():
        assert (segments[utt], targets[utt]) == (where, target)
    assert sources["ted_1-0000000-0000230"] == "it's the well known rock'n'roll band a small cat"
    assert keys(out / "train" / "segments") == sorted(segments)
    assert len(read(out / "dev" / "segments")) == len(DEV)  # dev and test keep their segments
    assert "(3 of them joined runs)" in caplog.text
    assert run(corpus, tmp_path / "tight", "--join_segments", "3", "--join_max_pause", "0.4",
               "--char_ratio_filter", "false") == 0
    assert set(read(tmp_path / "tight" / "train" / "segments")) - {s for s in segments if s not in joined} == {
        "ted_10-0000050-0000300"
    }


def test_char_ratio_filter_logs_count(corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level("INFO")
    run(corpus, tmp_path / "data")
    assert "train: 2 talks, 5 segments" in caplog.text
    assert "removed by char-ratio filter: 1" in caplog.text


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--char_ratio_filter", "false"], 6),
        (["--char_ratio_min", "0.85"], 4),
        (["--char_ratio_max", "20"], 6),
    ],
)
def test_char_ratio_options(corpus: Path, tmp_path: Path, options: list[str], expected: int):
    out = tmp_path / "data"
    assert run(corpus, out, *options) == 0
    assert len(keys(out / "train" / "segments")) == expected


def test_config_file_sets_options(corpus: Path, tmp_path: Path):
    config = tmp_path / "data.yaml"
    config.write_text(f"mustc_root: {corpus}\ntgt_lang: de\nchar_ratio_filter: false\n")
    out = tmp_path / "data"
    assert data_prep.main(["--config", str(config), "--out", str(out)]) == 0
    assert len(keys(out / "train" / "segments")) == 6


def test_extra_corpora_add_prefixed_train_segments(corpus: Path, tmp_path: Path):
    extra = tmp_path / "europarl-st"
    write_split(extra, "train", TRAIN[:2])
    other = tmp_path / "other"
    write_split(other, "train", TRAIN[3:4])
    out = tmp_path / "data"
    assert run(corpus, out, "--extra_train", f"{extra},{other}", "--char_ratio_filter", "false") == 0
    ids = keys(out / "train" / "segments")
    assert len(ids) == len(set(ids)) == 9 and ids == sorted(ids)
    assert "europarl_st_ted_10-0000050-0000170" in ids
    assert "other_ted_1-0000000-0000100" in ids
    assert "ted_10-0000050-0000170" in ids
    wav_scp = read(out / "train" / "wav.scp")
    assert wav_scp["europarl_st_ted_10"] == str(extra / "en-de" / "data" / "train" / "wav" / "ted_10.wav")
    assert len(keys(out / "dev" / "segments")) == 3


def test_repeated_segment_is_kept_once_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    root = tmp_path / "MUSTC"
    write_corpus(root)
    directory = txt(root)
    for name in ("train.yaml", "train.en", "train.de"):
        lines = (directory / name).read_text(encoding="utf-8").splitlines()
        (directory / name).write_text("\n".join(lines + lines[:1]) + "\n", encoding="utf-8")
    caplog.set_level("INFO")
    assert run(root, tmp_path / "data", "--char_ratio_filter", "false") == 0
    assert len(keys(tmp_path / "data" / "train" / "segments")) == 6
    assert "duplicate ids dropped: 1" in caplog.text


def test_small_overshoot_is_clipped_to_the_wav_end(tmp_path: Path):
    root = tmp_path / "MUSTC"
    write_corpus(root)
    yaml_path = root / "en-de" / "data" / "dev" / "txt" / "dev.yaml"
    lines = yaml_path.read_text().splitlines()
    lines[2] = yaml_line(Seg("ted_2.wav", TALK_SECONDS - 0.99, 1.02, "", ""))
    yaml_path.write_text("\n".join(lines) + "\n")
    assert run(root, tmp_path / "data") == 0
    assert read(tmp_path / "data" / "dev" / "segments")["ted_2-0001901-0002003"] == "ted_2 19.010000 20.000000"


def test_rerun_replaces_output_and_cleans_leftover_temp_dirs(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    run(corpus, out, "--char_ratio_filter", "false")
    (out / ".train.tmp").mkdir()
    (out / ".train.tmp" / "junk").write_text("from a killed run")
    assert run(corpus, out) == 0
    assert len(keys(out / "train" / "segments")) == 5
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLITS)


def test_failed_write_keeps_previous_output(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "data"
    assert run(corpus, out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    written = []

    def disk_full_at_second_talk(*args):
        written.append(args[0])
        if len(written) == 2:
            raise OSError("disk full")
        return kaldi_lines(*args)

    kaldi_lines = data_prep.kaldi_lines
    monkeypatch.setattr(data_prep, "kaldi_lines", disk_full_at_second_talk)
    with pytest.raises(OSError):
        run(corpus, out, "--char_ratio_filter", "false")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLITS)


# --------------------------------------------------------------------------- bad input


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def txt(root: Path, split: str = "train") -> Path:
    return root / "en-de" / "data" / split / "txt"


def missing_root(root: Path) -> list[str]:
    return ["--mustc_root", str(root / "nowhere")]


def missing_language_pair(root: Path) -> list[str]:
    return ["--tgt_lang", "fr"]


def missing_split(root: Path) -> list[str]:
    shutil.rmtree(root / "en-de" / "data" / "tst-COMMON")
    return []


def missing_wav(root: Path) -> list[str]:
    (root / "en-de" / "data" / "dev" / "wav" / "ted_2.wav").unlink()
    return []


def unreadable_wav(root: Path) -> list[str]:
    (root / "en-de" / "data" / "train" / "wav" / "ted_1.wav").write_bytes(b"RIFF junk")
    return []


def malformed_yaml(root: Path) -> list[str]:
    replace_line(txt(root) / "train.yaml", 3, "- {duration: 1.0, offset: [0.5, wav: ted_1.wav}")
    return []


def yaml_entry_without_offset(root: Path) -> list[str]:
    replace_line(txt(root) / "train.yaml", 2, "- {duration: 1.0, wav: ted_10.wav}")
    return []


def yaml_entry_with_text_duration(root: Path) -> list[str]:
    replace_line(txt(root) / "train.yaml", 5, "- {duration: long, offset: 1.0, wav: ted_1.wav}")
    return []


def line_counts_disagree(root: Path) -> list[str]:
    (txt(root) / "train.de").write_text("Eins.\nZwei.\n")
    return []


def empty_sentence(root: Path) -> list[str]:
    replace_line(txt(root, "dev") / "dev.en", 2, "   ")
    return []


def text_not_utf8(root: Path) -> list[str]:
    (txt(root) / "train.de").write_bytes("\n".join(s.de for s in TRAIN).replace("Welt", "W\udcfclt").encode(
        "utf-8", "surrogateescape") + b"\n")
    return []


def segment_past_wav_end(root: Path) -> list[str]:
    replace_line(txt(root, "dev") / "dev.yaml", 3, yaml_line(Seg("ted_2.wav", 19.5, 1.0, "", "")))
    return []


def unknown_config_key(root: Path) -> list[str]:
    config = root.parent / "data.yaml"
    config.write_text("char_ratio_min: 0.5\nchar_ratio_mx: 2\n")
    return ["--config", str(config)]


def extra_corpus_given_twice(root: Path) -> list[str]:
    return ["--extra_train", str(root)]


def extra_corpora_with_one_name(root: Path) -> list[str]:
    for parent in ("a", "b"):
        write_split(root.parent / parent / "MUSTC", "train", TRAIN[:1])
    return ["--extra_train", f"{root.parent / 'a' / 'MUSTC'},{root.parent / 'b' / 'MUSTC'}"]


def missing_config(root: Path) -> list[str]:
    return ["--config", str(root.parent / "missing.yaml")]


def min_above_max(root: Path) -> list[str]:
    return ["--char_ratio_min", "2", "--char_ratio_max", "1"]


def no_segments_joined(root: Path) -> list[str]:
    return ["--join_segments", "0"]


@pytest.mark.parametrize(
    ("break_corpus", "fragments"),
    [
        (missing_root, ["nowhere", "does not exist"]),
        (missing_language_pair, ["no language pair dir en-fr"]),
        (missing_split, ["no split dir data/tst-COMMON"]),
        (missing_wav, ["missing wav", "ted_2.wav", "dev.yaml entry 1"]),
        (unreadable_wav, ["cannot read wav", "ted_1.wav", "train.yaml entry 4"]),
        (malformed_yaml, ["train.yaml:3:", "not valid YAML"]),
        (yaml_entry_without_offset, ["train.yaml: entry 2", "missing key(s) offset"]),
        (yaml_entry_with_text_duration, ["train.yaml: entry 5", "duration must be a number"]),
        (line_counts_disagree, ["train.yaml: 6 entries", "train.en: 6 lines", "train.de: 2 lines"]),
        (empty_sentence, ["dev.en:2: empty sentence"]),
        (text_not_utf8, ["train.de:1: not UTF-8"]),
        (segment_past_wav_end, ["dev.yaml entry 3", "ted_2-0001950-0002050", "past the end", "20.000 s"]),
        (unknown_config_key, ["data.yaml:2: unknown key 'char_ratio_mx'", "char_ratio_max"]),
        (extra_corpus_given_twice, ["is given twice"]),
        (extra_corpora_with_one_name, ["would share the id prefix 'MUSTC_'"]),
        (missing_config, ["no such config file", "missing.yaml"]),
        (min_above_max, ["must not exceed"]),
        (no_segments_joined, ["--join_segments must be an integer >= 1"]),
    ],
    ids=lambda value: value.__name__ if callable(value) else "",
)
def test_bad_input_gives_one_error_line_exit_1_and_no_output(
    break_corpus: Callable[[Path], list[str]],
    fragments: list[str],
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
):
    extra_args = break_corpus(corpus)
    out = tmp_path / "data"
    assert run(corpus, out, *extra_args) == 1
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in errors[0]
    assert not out.exists()


def test_failed_run_keeps_previous_output(corpus: Path, tmp_path: Path):
    out = tmp_path / "data"
    assert run(corpus, out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (txt(corpus, "tst-COMMON") / "tst-COMMON.de").write_text("Eins.\n")
    assert run(corpus, out) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_script_exits_1_without_traceback(corpus: Path, tmp_path: Path):
    (txt(corpus) / "train.en").write_text("too few\n")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--mustc_root", str(corpus), "--tgt_lang", "de", "--out", str(tmp_path / "d")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("ERROR: segment counts disagree")
    assert result.stderr.count("\n") == 1


def test_out_that_is_a_file_is_refused_before_reading_the_corpus(corpus: Path, tmp_path: Path, capsys):
    out = tmp_path / "data"
    out.write_text("a file\n")
    assert run(corpus, out) == 1
    assert capsys.readouterr().err == f"ERROR: --out {out} exists and is not a directory\n"


def test_required_options_may_come_from_the_config(corpus: Path, tmp_path: Path):
    config = tmp_path / "data.yaml"
    config.write_text(f"mustc_root: {corpus}\ntgt_lang: de\nout: {tmp_path / 'data'}\nchar_ratio_filter: false\n")
    assert data_prep.main(["--config", str(config)]) == 0
    assert (tmp_path / "data" / "train" / "segments").read_text().count("\n") == len(TRAIN)
