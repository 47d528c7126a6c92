"""Long-form scoring: OmniSTEval's numbers as its own command computes them, FBK's StreamLAAL."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from espnet2_ext.fileio.segment_list import SegmentListError
from espnet2_ext.simultaneous.instances import InstanceRecord, InstancesLogWriter
from espnet2_ext.simultaneous.latency import length_adaptive_average_lagging
from espnet2_ext.streaming.longform import LongformError, StreamReferences, score_longform

TALKS = {  # talk -> [(offset s, duration s, reference)]
    "ted_1.wav": [
        (0.5, 2.0, "Ich schreibe die Geschichten."),
        (3.0, 2.5, "Der Vater trinkt heute die frische Milch."),
        (6.0, 1.5, "Danke."),
    ],
    "ted_2.wav": [
        (0.2, 3.0, "Ein Mann sagt, dass der Lehrer den Ball bringt."),
        (4.0, 2.0, "Wir lachen."),
    ],
}
PREDICTIONS = {  # words and when (s) each was written: some late, one sentence half wrong
    "ted_1.wav": [("Ich", 1.0), ("schreibe", 1.0), ("Geschichten.", 2.0), ("Der", 4.0), ("Vater", 4.0),
                  ("trinkt", 5.0), ("die", 5.0), ("frische", 6.0), ("Milch.", 6.0), ("Danke.", 8.0)],
    "ted_2.wav": [("Ein", 1.0), ("Mann", 2.0), ("sagt,", 2.0), ("der", 3.0), ("Lehrer", 3.0), ("bringt", 4.0),
                  ("den", 4.0), ("Ball.", 5.0), ("Wir", 5.0), ("lachen.", 7.0)],
}
LENGTHS = {"ted_1.wav": 8.0, "ted_2.wav": 7.0}


def write_run(tmp_path: Path) -> tuple[Path, list[InstanceRecord], StreamReferences]:
    yaml = tmp_path / "ref.yaml"
    yaml.write_text("".join(
        f"- {{duration: {d}, offset: {o}, speaker_id: spk, wav: {talk}}}\n"
        for talk, sentences in TALKS.items() for o, d, _ in sentences
    ))
    text = tmp_path / "ref.de"
    text.write_text("".join(f"{r}\n" for sentences in TALKS.values() for _, _, r in sentences))
    records = []
    for index, (talk, words) in enumerate(PREDICTIONS.items()):
        delays = [1000 * t for _, t in words]
        elapsed = [d + 150 * (n + 1) for n, d in enumerate(delays)]  # computing accumulates, as SimulEval's
        records.append(InstanceRecord.from_words(
            index, [w for w, _ in words], delays, elapsed, "", [f"/data/wav/{talk}", "samplerate: 16000"],
            1000 * LENGTHS[talk],
        ))
    log = tmp_path / "instances.log"
    with InstancesLogWriter(log, resume=False) as writer:
        for record in records:
            writer.write(record)
    return log, records, StreamReferences.from_files(yaml, text)


def omnisteval_command(log: Path, references: StreamReferences, out: Path) -> dict[str, float]:
    """``omnisteval longform`` run as a user would, its scores.tsv read back."""
    command = Path(sys.executable).parent / "omnisteval"
    subprocess.run(
        [str(command), "longform", "--speech_segmentation", str(references.yaml), "--ref_sentences_file",
         str(references.text), "--hypothesis_file", str(log), "--lang", "de", "--word_level", "--bleu_tokenizer",
         "13a", "--fix_simuleval_emission_ca", "--output_folder", str(out)],
        check=True, capture_output=True,
    )
    rows = (out / "scores.tsv").read_text().splitlines()[1:]
    return {name: float(value) for name, value in (row.split("\t") for row in rows) if value not in ("YES", "NO")}


def test_omnisteval_command_gives_the_same_scores(tmp_path):
    log, records, references = write_run(tmp_path)
    ours = score_longform(log, records, references, "de", computation_aware=True).columns()
    theirs = omnisteval_command(log, references, tmp_path / "omni")
    assert ours["BLEU"] == pytest.approx(theirs["BLEU"], abs=1e-4)
    assert ours["chrF"] == pytest.approx(theirs["chrF"], abs=1e-4)
    assert ours["LongYAAL"] == pytest.approx(theirs["LongYAAL (CU)"], abs=1e-4)
    assert ours["LongYAAL_CA"] == pytest.approx(theirs["LongYAAL (CA)"], abs=1e-4)
    assert 0 < ours["BLEU"] < 100 and ours["LongYAAL_CA"] > ours["LongYAAL"]


def test_stream_laal_of_a_translation_that_is_its_references(tmp_path):
    """When the words are the reference sentences, mwerSegmenter cuts them back into those,
    and StreamLAAL is the mean of each sentence's LAAL on delays from its start."""
    log, _, references = write_run(tmp_path)
    records, expected = [], []
    for index, (talk, sentences) in enumerate(TALKS.items()):
        words, delays = [], []
        for offset, duration, text in sentences:
            sentence_delays = [1000 * (offset + 0.4 * (n + 1)) for n in range(len(text.split()))]
            words += text.split()
            delays += sentence_delays
            rebased = [d - 1000 * offset for d in sentence_delays]
            expected.append(length_adaptive_average_lagging(rebased, 1000 * duration, len(text.split(" "))))
        records.append(InstanceRecord.from_words(index, words, delays, delays, "", [talk], 1000 * LENGTHS[talk]))
    log.write_text("".join(record.json_line() + "\n" for record in records))
    scores = score_longform(log, records, references, "de")
    assert scores.stream_laal.plain == pytest.approx(sum(expected) / len(expected))
    assert scores.bleu == pytest.approx(100.0)
    assert list(scores.aligned) == [text for sentences in TALKS.values() for _, _, text in sentences]
    assert "LongYAAL_CA" not in scores.columns()


def test_references_and_talks_must_pair_up(tmp_path):
    log, records, references = write_run(tmp_path)
    with pytest.raises(LongformError, match="names ted_2.wav, which the records"):
        score_longform(log, records[:1], references, "de")
    short = tmp_path / "short.de"
    short.write_text("one line\n")
    with pytest.raises(LongformError, match="has 1 lines but .* has 5 segments"):
        StreamReferences.from_files(references.yaml, short)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {duration: 0, offset: 1, wav: a.wav}\n")
    with pytest.raises(SegmentListError, match="bad.yaml: entry 1: expected duration > 0"):
        StreamReferences.from_files(bad, short)
    assert math.isnan(score_longform(log, [
        InstanceRecord.from_words(r.index, [], [], [], "", r.source, r.source_length) for r in records
    ], references, "de").columns()["StreamLAAL"])
