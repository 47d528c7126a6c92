"""Our SimulEval scores against SimulEval 1.1.4's own scorers on the same instances.log:
every latency metric and its _CA variant per instance and per corpus (to 1e-9), BLEU
against sacreBLEU, and scores.tsv against the file SimulEval's evaluator writes."""

import random
import statistics
from argparse import Namespace
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU
from simuleval.evaluator import SentenceLevelEvaluator
from simuleval.evaluator.instance import LogInstance
from simuleval.evaluator.scorers.latency_scorer import LATENCY_SCORERS_DICT
from simuleval.evaluator.scorers.quality_scorer import SacreBLEUScorer

from espnet2_ext.main_funcs.scoring import ScoringError
from espnet2_ext.simultaneous.instances import InstanceRecord, InstancesLogWriter, read_instances
from espnet2_ext.simultaneous.latency import (
    DEFAULT_LATENCY_METRICS,
    LATENCY_METRICS,
    LatencyError,
    corpus_latency,
    corpus_scores,
    instance_latency,
    write_scores_tsv,
)

TOLERANCE = 1e-9
VOCABULARY = "der die das Haus ist groß klein und ein Baum am Fluss , . ?".split()
KINDS = ("chunked", "over", "under", "past-end", "empty", "zero-elapsed", "odd-references", "unsorted", "one-word")


def make_records(kind: str, seed: int = 0, n: int = 24) -> list[InstanceRecord]:
    """``n`` instances of one kind (index 0 first: SimulEval's ATD looks at instance 0):

    chunked: delays on a chunk grid (160 to 1000 ms), the last words at |X|, as SimulEval
    writes them; over / under: 2-4 times more / fewer words than the reference; past-end:
    delays beyond |X| (d1 > |X| included); empty: some empty predictions; zero-elapsed:
    elapsed all 0 (ATD's special case); odd-references: empty references and double
    spaces; unsorted: delays in random order; one-word: single-word predictions.
    """
    rng = random.Random(f"{kind}-{seed}")
    records = []
    for index in range(n):
        source_length = rng.randint(4000, 160000) * 1000 / 16000  # samples at 16 kHz, in ms
        reference = " ".join(rng.choices(VOCABULARY, k=rng.randint(1, 30)))
        length = rng.randint(1, 30)
        if kind == "over":
            length = len(reference.split()) * rng.randint(2, 4)
        elif kind == "under":
            length = max(1, len(reference.split()) // rng.randint(2, 4))
        elif kind == "empty" and index % 3 == 1:
            length = 0
        elif kind == "one-word":
            length = 1
        elif kind == "odd-references":
            reference = rng.choice(["", " ", reference.replace(" ", "  ", 2), f" {reference} "])
        chunk = rng.choice([160, 320, 640, 1000])
        delays = sorted(
            min(rng.randint(0, int(source_length // chunk) + 1) * chunk, source_length) for _ in range(length)
        )
        if kind == "past-end":
            delays = sorted(rng.uniform(0.5, 1.5) * source_length for _ in range(length))
        elif kind == "unsorted":
            delays = [rng.uniform(0, source_length * 1.1) for _ in range(length)]
        compute = 0.0
        elapsed = []
        for delay in delays:
            compute += rng.choice([0.0, rng.uniform(0, 400)])
            elapsed.append(delay + compute)
        if kind == "zero-elapsed":
            elapsed = [0.0] * length
        words = rng.choices(VOCABULARY, k=length)
        records.append(
            InstanceRecord.from_words(index, words, delays, elapsed, reference, f"{index}.wav", source_length)
        )
    return records


def write_log(path: Path, records: list[InstanceRecord]) -> dict[int, LogInstance]:
    """``records`` written by our writer, then read back by SimulEval as its --score-only does."""
    with InstancesLogWriter(path, resume=False) as writer:
        for r in records:
            writer.write(r)
    with path.open(encoding="utf-8") as lines:
        instances = [LogInstance(line.strip()) for line in lines]
    return {instance.index: instance for instance in instances}


def simuleval_score(line: str, metric: str, computation_aware: bool, use_ref_len: bool) -> float:
    """SimulEval's score of one instance: its scorer on a corpus of that instance alone."""
    scorer = LATENCY_SCORERS_DICT[metric](computation_aware=computation_aware, use_ref_len=use_ref_len)
    return scorer({0: LogInstance(line)})


@pytest.mark.parametrize("use_ref_len", [True, False], ids=["ref-len", "no-ref-len"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_instance_as_simuleval_scores_it(tmp_path, kind, use_ref_len):
    records = make_records(kind)
    write_log(tmp_path / "instances.log", records)
    wrong = []
    for ours in read_instances(tmp_path / "instances.log").records:
        for metric in LATENCY_METRICS:
            for aware in (False, True):
                value = instance_latency(ours, metric, computation_aware=aware, use_ref_len=use_ref_len)
                if not ours.delays:  # SimulEval skips it, and has nothing to average
                    with pytest.raises(statistics.StatisticsError):
                        simuleval_score(ours.json_line(), metric, aware, use_ref_len)
                    assert value is None
                    continue
                expected = simuleval_score(ours.json_line(), metric, aware, use_ref_len)
                if not abs(value - expected) <= TOLERANCE:
                    wrong.append(f"instance {ours.index} {metric}{'_CA' * aware}: {value} != {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_corpus_latency_as_simuleval_averages_it(tmp_path, kind):
    records = make_records(kind, seed=1, n=40)
    instances = write_log(tmp_path / "instances.log", records)
    wrong = []
    for metric in LATENCY_METRICS:
        for aware in (False, True):
            for use_ref_len in (True, False):
                value = corpus_latency(records, metric, computation_aware=aware, use_ref_len=use_ref_len)
                scorer = LATENCY_SCORERS_DICT[metric](computation_aware=aware, use_ref_len=use_ref_len)
                expected = scorer(instances)
                if not abs(value - expected) <= TOLERANCE:
                    wrong.append(f"{metric}{'_CA' * aware} use_ref_len={use_ref_len}: {value} != {expected}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("tokenize", ["13a", "char", "none"])
def test_bleu_is_sacrebleu_corpus_bleu_as_simuleval_computes_it(tmp_path, tokenize):
    records = make_records("empty", seed=2) + make_records("over", seed=3)[1:]
    records = [
        InstanceRecord(
            i, r.prediction, r.delays, r.elapsed, r.prediction_length, r.reference, r.source, r.source_length
        )
        for i, r in enumerate(records)
    ]
    instances = write_log(tmp_path / "instances.log", records)
    scores = corpus_scores(records, tokenize=tokenize)
    bleu = BLEU(tokenize=tokenize)
    expected = bleu.corpus_score([r.prediction for r in records], [[r.reference for r in records]])
    assert scores.bleu.bleu == expected.score == SacreBLEUScorer(tokenize)(instances)
    assert scores.bleu.bleu_signature == str(bleu.get_signature())
    assert f"tok:{tokenize}" in scores.bleu.bleu_line and 0 < scores.bleu.bleu < 100
    assert scores.bleu.n_segments == len(records)


def simuleval_scores_tsv(out: Path, metrics: tuple, computation_aware: bool, use_ref_len: bool, tokenize: str) -> str:
    """The scores.tsv that SimulEval 1.1.4's evaluator writes with --score-only on ``out``."""
    args = Namespace(
        output=str(out), score_only=True, no_scoring=False, source_type="speech", target_type="text",
        eval_latency_unit="word", eval_latency_spm_model=None, latency_metrics=list(metrics),
        quality_metrics=["BLEU"], computation_aware=computation_aware, no_use_ref_len=not use_ref_len,
        sacrebleu_tokenizer=tokenize, no_progress_bar=True, start_index=0, end_index=-1,
    )  # fmt: skip
    SentenceLevelEvaluator.from_args(args).dump_results()
    return (out / "scores.tsv").read_text(encoding="utf-8")


def tsv_columns(text: str) -> dict[str, str]:
    header, values = text.splitlines()
    return dict(zip(header.split("\t"), values.split("\t"), strict=True))


@pytest.mark.parametrize(
    ("metrics", "use_ref_len", "tokenize", "header"),
    [
        (DEFAULT_LATENCY_METRICS, True, "13a", "BLEU LAAL AL AP DAL ATD"),
        (LATENCY_METRICS[::-1], False, "intl", "BLEU EndOffset StartOffset ATD DAL AP AL LAAL"),
    ],
    ids=["defaults", "all-reversed"],
)
def test_scores_tsv_is_the_file_simuleval_writes(tmp_path, metrics, use_ref_len, tokenize, header):
    records = make_records("chunked", seed=4, n=30)
    write_log(tmp_path / "simuleval" / "instances.log", records)
    expected = simuleval_scores_tsv(tmp_path / "simuleval", metrics, False, use_ref_len, tokenize)

    log = read_instances(tmp_path / "simuleval" / "instances.log").records
    scores = corpus_scores(log, latency_metrics=metrics, use_ref_len=use_ref_len, tokenize=tokenize, yaal=False)
    write_scores_tsv(tmp_path / "ours" / "scores.tsv", scores)
    written = (tmp_path / "ours" / "scores.tsv").read_text(encoding="utf-8")
    assert written == expected
    assert written.splitlines()[0].split("\t") == header.split()
    assert [p.name for p in (tmp_path / "ours").iterdir()] == ["scores.tsv"]


@pytest.mark.parametrize("use_ref_len", [True, False], ids=["ref-len", "no-ref-len"])
def test_computation_aware_scores_tsv(tmp_path, use_ref_len):
    """SimulEval 1.1.4 with --computation-aware writes each metric then its _CA, but
    builds the plain scorers computation-aware too (``LatencyScorer.from_args``;
    SimulEval issue #44), so both columns hold the _CA value. Ours keep the plain
    value: the one SimulEval writes without --computation-aware."""
    records = make_records("chunked", seed=5, n=30)
    for name in ("aware", "plain"):
        write_log(tmp_path / name / "instances.log", records)
    aware = tsv_columns(simuleval_scores_tsv(tmp_path / "aware", LATENCY_METRICS, True, use_ref_len, "13a"))
    plain = tsv_columns(simuleval_scores_tsv(tmp_path / "plain", LATENCY_METRICS, False, use_ref_len, "13a"))
    assert all(aware[m] == aware[f"{m}_CA"] for m in LATENCY_METRICS)  # issue #44
    assert any(aware[m] != plain[m] for m in LATENCY_METRICS)

    scores = corpus_scores(
        records, latency_metrics=LATENCY_METRICS, computation_aware=True, use_ref_len=use_ref_len, yaal=False
    )
    write_scores_tsv(tmp_path / "scores.tsv", scores)
    ours = tsv_columns((tmp_path / "scores.tsv").read_text(encoding="utf-8"))
    assert list(ours) == list(aware) == ["BLEU", *(f"{m}{ca}" for m in LATENCY_METRICS for ca in ("", "_CA"))]
    assert ours == {name: plain.get(name, value) for name, value in aware.items()}


def test_nothing_to_measure_and_unknown_metrics():
    empty = [InstanceRecord.from_words(0, [], [], [], "a b", "s", 1000.0)]
    with pytest.raises(LatencyError, match="^AL: no instance has a prediction to measure"):
        corpus_latency(empty, "AL")
    with pytest.raises(statistics.StatisticsError):  # SimulEval fails on it too
        LATENCY_SCORERS_DICT["AL"]()({0: LogInstance(empty[0].json_line())})
    with pytest.raises(LatencyError, match="unknown latency metric 'RTF': SimulEval 1.1.4 has LAAL, AL, AP"):
        corpus_latency(make_records("chunked"), "RTF")
    with pytest.raises(LatencyError, match="^run/instances.log: no instances to score"):
        corpus_scores([], log="run/instances.log")
    with pytest.raises(ScoringError, match="BLEU tokenizer 14a: not one of sacreBLEU's"):
        corpus_scores(make_records("chunked"), tokenize="14a")


def test_a_worked_example():
    """|X| = 2000 ms, reference of 4 words, 3 words written at 500, 1000 and 2000 ms."""
    record = InstanceRecord.from_words(0, ["a", "b", "c"], [500, 1000, 2000], [600, 1300, 2500], "w x y z", "s", 2000)

    def score(metric, aware=False):
        return instance_latency(record, metric, computation_aware=aware)

    assert score("AL") == pytest.approx((500 + (1000 - 500) + (2000 - 1000)) / 3)  # τ = 3, 500 ms per word
    assert score("LAAL") == score("AL")  # max(|Y|, |Y*|) = |Y| = 4
    assert score("AP") == pytest.approx(3500 / (2000 * 4))
    assert score("DAL") == pytest.approx((500 + 500 + (2000 - 4000 / 3)) / 3)  # g2 = 500 + 2000/3 > 1000
    assert score("StartOffset") == 500 and score("EndOffset") == 0
    assert score("AL", aware=True) == pytest.approx((600 + 800 + 1500) / 3)  # τ = 3: 2500 ≥ 2000
    # ATD: source tokens end at 300, 500 | 800, 1000 | 1300, 1600, 1900, 2000; word t is paired with token t.
    assert score("ATD") == pytest.approx(((500 - 300) + (1000 - 500) + (2000 - 800)) / 3)
