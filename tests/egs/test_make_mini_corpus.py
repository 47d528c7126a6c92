"""Tests for egs/mustc_conformer_ctc/local/make_mini_corpus.py and its mini_corpus package
(synthetic MuST-C generator: word lists, grammar, speech).

The audio tests need espeak-ng; when it is missing they fail with the generator's
install hint instead of being skipped, because the recipe cannot run without it.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_ext.utils.fbank import resample
from tests.helpers import load_recipe_script

SPLITS = ("train", "dev", "tst-COMMON")
SIZES = {"n_train": 6, "n_dev": 3, "n_test": 3}
YAML_LINE = re.compile(
    r"- \{duration: \d+\.\d{6}, offset: \d+\.\d{6}, rW: \d+, uW: 0, "
    r"speaker_id: spk\.\d+, wav: ted_\d+\.wav\}"
)

cli = load_recipe_script("make_mini_corpus")  # puts local/ on sys.path for the package below
from mini_corpus import grammar, lexicon, speech  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus_a")
    speech.build_corpus(out, seed=3, talk_size=3, **SIZES)
    return out


@pytest.fixture(scope="module")
def corpus_same_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus_b")
    speech.build_corpus(out, seed=3, talk_size=3, **SIZES)
    return out


def data_dir(out: Path, split: str) -> Path:
    return out / "en-de" / "data" / split


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def load_split(out: Path, split: str) -> tuple[list[dict], list[str], list[str]]:
    txt = data_dir(out, split) / "txt"
    entries = yaml.safe_load((txt / f"{split}.yaml").read_text(encoding="utf-8"))
    return entries, read_lines(txt / f"{split}.en"), read_lines(txt / f"{split}.de")


def talks(entries: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for entry in entries:
        grouped.setdefault(entry["wav"], []).append(entry)
    return grouped


def region(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[round(start * speech.SAMPLE_RATE) : round(end * speech.SAMPLE_RATE)]


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


# --------------------------------------------------------------------------- layout


def test_layout_and_formats(corpus: Path) -> None:
    seen_talks: set[str] = set()
    for split in SPLITS:
        entries, en, de = load_split(corpus, split)
        expected = {"train": 6, "dev": 3, "tst-COMMON": 3}[split]
        assert len(entries) == len(en) == len(de) == expected
        for line in read_lines(data_dir(corpus, split) / "txt" / f"{split}.yaml"):
            assert YAML_LINE.fullmatch(line), line
        for entry, sentence in zip(entries, en):
            assert entry["rW"] == len(sentence.split())
            assert entry["speaker_id"] == entry["wav"].replace("ted_", "spk.").removesuffix(".wav")
        wav_names = {p.name for p in (data_dir(corpus, split) / "wav").glob("*.wav")}
        assert wav_names == set(talks(entries))
        assert not seen_talks & wav_names, "talk ids must be unique across splits"
        seen_talks |= wav_names


def test_wavs_are_16k_mono_pcm16(corpus: Path) -> None:
    for split in SPLITS:
        for wav in (data_dir(corpus, split) / "wav").glob("*.wav"):
            info = sf.info(wav)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_segments_lie_inside_their_wav_in_order(corpus: Path) -> None:
    for split in SPLITS:
        entries, _, _ = load_split(corpus, split)
        for wav_name, segments in talks(entries).items():
            wav_duration = sf.info(data_dir(corpus, split) / "wav" / wav_name).duration
            previous_end = 0.0
            for segment in segments:
                assert segment["duration"] > 0
                assert segment["offset"] >= previous_end + speech.KEPT_GAP_MS / 1000 - 1e-6
                previous_end = segment["offset"] + segment["duration"]
                assert previous_end <= wav_duration


def test_no_temporary_files_left(corpus: Path) -> None:
    assert not list(corpus.rglob("*.tmp"))
    assert all((data_dir(corpus, split) / ".done").is_file() for split in SPLITS)


# --------------------------------------------------------------------------- audio content


def test_speech_is_audible_and_gaps_hold_only_the_noise_floor(corpus: Path) -> None:
    for split in SPLITS:
        entries, _, _ = load_split(corpus, split)
        for wav_name, segments in talks(entries).items():
            audio, _ = sf.read(data_dir(corpus, split) / "wav" / wav_name, dtype="int16")
            gap_start = 0.0
            for segment in segments:
                end = segment["offset"] + segment["duration"]
                assert rms(region(audio, segment["offset"], end)) > 500
                gap = region(audio, gap_start, segment["offset"])
                assert 0.5 * speech.NOISE_RMS < rms(gap) < 2 * speech.NOISE_RMS, "a noise floor, not digital silence"
                gap_start = end
            tail = region(audio, gap_start, len(audio) / speech.SAMPLE_RATE)
            assert 0.5 * speech.NOISE_RMS < rms(tail) < 2 * speech.NOISE_RMS


def test_segments_take_a_margin_of_the_pauses_around_their_speech(corpus: Path) -> None:
    """Not cut exactly at the speech, as MuST-C's are not: margins vary from segment to segment."""
    starts = []
    for split in SPLITS:
        entries, _, _ = load_split(corpus, split)
        for wav_name, segments in talks(entries).items():
            audio, _ = sf.read(data_dir(corpus, split) / "wav" / wav_name, dtype="int16")
            for segment in segments:
                samples = region(audio, segment["offset"], segment["offset"] + segment["duration"])
                loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 300)
                starts.append(loud[0] / speech.SAMPLE_RATE)
    assert max(starts) <= speech.MAX_MARGIN_MS / 1000 + 0.05
    assert np.std(starts) > 0.02 and sum(s > 0.05 for s in starts) > len(starts) / 4


# --------------------------------------------------------------------------- determinism and splits


def test_same_seed_gives_identical_files(corpus: Path, corpus_same_seed: Path) -> None:
    files_a = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(corpus_same_seed) for p in corpus_same_seed.rglob("*") if p.is_file())
    assert files_a == files_b
    for relative in files_a:
        assert (corpus / relative).read_bytes() == (corpus_same_seed / relative).read_bytes(), relative


def test_different_seed_gives_different_text() -> None:
    first = grammar.make_text_splits(3, **SIZES)
    second = grammar.make_text_splits(4, **SIZES)
    assert first["train"] != second["train"]


def test_dev_and_test_sentences_not_in_train(corpus: Path) -> None:
    train = set(load_split(corpus, "train")[1])
    for split in ("dev", "tst-COMMON"):
        assert not train & set(load_split(corpus, split)[1])


def test_default_sized_splits_are_disjoint() -> None:
    splits = grammar.make_text_splits(1, 1200, 100, 150)
    sentences = {split: {pair.en for pair in pairs} for split, pairs in splits.items()}
    assert [len(sentences[s]) for s in SPLITS] == [1200, 100, 150]
    assert not sentences["train"] & (sentences["dev"] | sentences["tst-COMMON"])
    assert not sentences["dev"] & sentences["tst-COMMON"]


def test_rerun_skips_complete_splits(corpus: Path) -> None:
    wav = data_dir(corpus, "train") / "wav" / "ted_1.wav"
    before = wav.stat().st_mtime_ns
    assert speech.build_corpus(corpus, seed=3, talk_size=3, **SIZES) == dict.fromkeys(SPLITS, False)
    assert wav.stat().st_mtime_ns == before


def test_changed_settings_regenerate_and_remove_stale_wavs(tmp_path: Path) -> None:
    sizes = {"n_train": 2, "n_dev": 1, "n_test": 1}
    speech.build_corpus(tmp_path, seed=5, talk_size=1, **sizes)
    assert speech.build_corpus(tmp_path, seed=5, talk_size=2, **sizes)["train"]
    entries, _, _ = load_split(tmp_path, "train")
    wav_names = {p.name for p in (data_dir(tmp_path, "train") / "wav").glob("*.wav")}
    assert wav_names == set(talks(entries)) == {"ted_1.wav"}


# --------------------------------------------------------------------------- CLI and errors


def test_missing_espeak_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(speech.SpeechError, match="apt-get install espeak-ng"):
        speech.require_espeak()
    assert cli.main(["--out", str(tmp_path / "out"), "--n_train", "2", "--n_dev", "1", "--n_test", "1"]) == 1
    assert capsys.readouterr().err == "ERROR: espeak-ng not found on PATH; install it with `apt-get install espeak-ng`\n"


def test_out_that_is_a_file_is_refused_before_speaking(tmp_path: Path, capsys) -> None:
    (tmp_path / "out").write_text("a file\n")
    assert cli.main(["--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == f"ERROR: --out {tmp_path / 'out'} exists and is not a directory\n"


def test_espeak_s_rate_is_resampled_by_the_features_own_resampler() -> None:
    """espeak-ng speaks at 22.05 kHz; the corpus holds 16 kHz int16, padded to whole milliseconds."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.int16)
    audio = speech.to_16k_int16(tone, 22050)
    assert audio.dtype == np.int16 and len(audio) == 16000
    expected = resample(tone.astype(np.float32), 22050, 16000)
    assert np.abs(audio.astype(np.float64) - expected).max() <= 0.5


def test_help_exits_cleanly() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0


def test_yaml_line_format() -> None:
    pair = grammar.SentencePair("The old teacher sees a red car.", "Der alte Lehrer sieht einen roten Wagen.")
    talk = speech.Talk(1, speech.Voice("en-us+m1", 160, 50), (pair,), (200, 200), ((0, 0),), 0)
    line = speech.Segment(talk, pair, offset=16.31, duration=3.5).yaml_line()
    assert line == "- {duration: 3.500000, offset: 16.310000, rW: 7, uW: 0, speaker_id: spk.1, wav: ted_1.wav}"
    assert yaml.safe_load(line) == [
        {"duration": 3.5, "offset": 16.31, "rW": 7, "uW": 0, "speaker_id": "spk.1", "wav": "ted_1.wav"}
    ]


# --------------------------------------------------------------------------- German grammar


def np_(noun: str, determiner: str = "the", adjective: str | None = None, plural: bool = False, number: int = 0):
    adj = lexicon.find_adjective(adjective) if adjective else None
    return grammar.NounPhrase(lexicon.find_noun(noun), determiner, plural, adj, number)


def clause(subject, verb: str, obj, time=None):
    return grammar.Clause(subject, lexicon.find_verb(verb), obj, time)


PRONOUN = lexicon.find_pronoun

GRAMMAR_CASES = [
    (
        grammar.SimpleSentence(clause(np_("teacher", "the", "old"), "see", np_("car", "a", "red"))),
        "The old teacher sees a red car.",
        "Der alte Lehrer sieht einen roten Wagen.",
    ),
    (
        grammar.SimpleSentence(clause(np_("man"), "see", np_("dog", "the", "old"))),
        "The man sees the old dog.",
        "Der Mann sieht den alten Hund.",
    ),
    (
        grammar.SimpleSentence(clause(np_("child"), "find", np_("cat", "a", "small"))),
        "The child finds a small cat.",
        "Das Kind findet eine kleine Katze.",
    ),
    (
        grammar.SimpleSentence(clause(PRONOUN("I"), "buy", np_("house", "a", "big"))),
        "I buy a big house.",
        "Ich kaufe ein großes Haus.",
    ),
    (
        grammar.SimpleSentence(clause(np_("girl", "a", "tired"), "see", np_("house", "the", "big"))),
        "A tired girl sees the big house.",
        "Ein müdes Mädchen sieht das große Haus.",
    ),
    (
        grammar.SimpleSentence(
            clause(np_("man", "number", "old", number=3), "buy", np_("book", "number", "new", number=20))
        ),
        "Three old men buy twenty new books.",
        "Drei alte Männer kaufen zwanzig neue Bücher.",
    ),
    (
        grammar.SimpleSentence(clause(np_("uncle", "number", number=1), "read", np_("book", "number", number=3))),
        "One uncle reads three books.",
        "Ein Onkel liest drei Bücher.",
    ),
    (
        grammar.SimpleSentence(clause(PRONOUN("we"), "wash", np_("dog", "our", "black", plural=True))),
        "We wash our black dogs.",
        "Wir waschen unsere schwarzen Hunde.",
    ),
    (
        grammar.SimpleSentence(clause(PRONOUN("you"), "eat", np_("apple", "my", "green"))),
        "You eat my green apple.",
        "Du isst meinen grünen Apfel.",
    ),
    (
        grammar.SimpleSentence(clause(np_("cook", "a", "hungry"), "drink", np_("milk", "the", "cold"))),
        "A hungry cook drinks the cold milk.",
        "Ein hungriger Koch trinkt die kalte Milch.",
    ),
    (
        grammar.SimpleSentence(
            clause(np_("teacher"), "read", np_("letter", "a", "long"), lexicon.clock_time(7)), front_time=True
        ),
        "At seven o'clock the teacher reads a long letter.",
        "Um sieben Uhr liest der Lehrer einen langen Brief.",
    ),
    (
        grammar.SimpleSentence(clause(np_("woman"), "meet", np_("doctor"), lexicon.clock_time(1))),
        "The woman meets the doctor at one o'clock.",
        "Die Frau trifft um ein Uhr den Arzt.",
    ),
    (
        grammar.SimpleSentence(clause(np_("duck", "a"), "see", PRONOUN("we"), lexicon.find_time("tomorrow"))),
        "A duck sees us tomorrow.",
        "Eine Ente sieht uns morgen.",
    ),
    (
        grammar.ThatSentence(PRONOUN("I"), lexicon.find_clause_verb("think"), clause(np_("man"), "see", np_("dog"))),
        "I think that the man sees the dog.",
        "Ich denke, dass der Mann den Hund sieht.",
    ),
    (
        grammar.ThatSentence(
            PRONOUN("he"),
            lexicon.find_clause_verb("know"),
            clause(PRONOUN("you"), "meet", PRONOUN("she"), lexicon.find_time("today")),
        ),
        "He knows that you meet her today.",
        "Er weiß, dass du sie heute triffst.",
    ),
    (
        grammar.ThatSentence(
            np_("sister", "my", plural=True),
            lexicon.find_clause_verb("say"),
            clause(np_("child"), "paint", np_("tower", "a", "white"), lexicon.clock_time(12)),
        ),
        "My sisters say that the child paints a white tower at twelve o'clock.",
        "Meine Schwestern sagen, dass das Kind um zwölf Uhr einen weißen Turm malt.",
    ),
    (
        grammar.BecauseSentence(
            clause(PRONOUN("she"), "drink", np_("milk")),
            clause(PRONOUN("she"), "see", np_("cat")),
        ),
        "She drinks the milk because she sees the cat.",
        "Sie trinkt die Milch, weil sie die Katze sieht.",
    ),
]


@pytest.mark.parametrize(("sentence", "english", "german"), GRAMMAR_CASES)
def test_translation(sentence, english: str, german: str) -> None:
    assert sentence.translate() == grammar.SentencePair(english, german)


@pytest.mark.parametrize(
    ("infinitive", "overrides", "forms"),
    [
        ("kaufen", {}, ("kaufe", "kaufst", "kauft", "kaufen")),
        ("finden", {}, ("finde", "findest", "findet", "finden")),
        ("zeichnen", {}, ("zeichne", "zeichnest", "zeichnet", "zeichnen")),
        ("putzen", {}, ("putze", "putzt", "putzt", "putzen")),
        ("lesen", {"du": "liest", "er": "liest"}, ("lese", "liest", "liest", "lesen")),
    ],
)
def test_conjugation(infinitive: str, overrides: dict, forms: tuple) -> None:
    assert lexicon.conjugate(infinitive, **overrides) == forms


def test_verb_agrees_with_subject_person() -> None:
    see = lexicon.find_verb("see")
    assert [see.de_form(p) for p in lexicon.PERSONS] == ["sehe", "siehst", "sieht", "sehen", "sehen"]
    assert [see.en_form(p) for p in lexicon.PERSONS] == ["see", "see", "sees", "see", "see"]


def test_invalid_noun_phrases_are_rejected() -> None:
    with pytest.raises(ValueError):
        np_("milk", "a")
    with pytest.raises(ValueError):
        np_("dog", "a", plural=True)
    with pytest.raises(ValueError):
        np_("water", "number", number=3)
