"""SimulEval 1.1.4's scores of a simultaneous run: BLEU and the latency metrics.

Each latency metric is computed per instance and averaged over the instances that
have a prediction (an empty one is skipped, as SimulEval skips it; BLEU counts it).
The formulas are SimulEval 1.1.4's (``simuleval/evaluator/scorers/latency_scorer.py``),
for speech input and text output, latency unit "word". With d_i the delay of
word i (ms of source read when it was written; ``elapsed`` for the ``_CA``
variants), |X| the source length in ms, |Y*| the number of predicted words and |Y|
the reference length ``len(reference.split(" "))`` (|Y*| with ``use_ref_len=False``):

- AL = (1/τ) Σ_{i≤τ} [d_i − (i−1)·|X|/|Y|], τ the first i with d_i ≥ |X| (that
  word included; τ = |Y*| if none); so d_1 itself when d_1 ≥ |X|.
- LAAL: AL with max(|Y|, |Y*|) in place of |Y|.
- AP = Σ_i d_i / (|X|·|Y|), over all predicted words.
- DAL = (1/|Y*|) Σ_i [g_i − (i−1)/γ], γ = |Y*|/|X|, g_1 = d_1, g_i = max(d_i, g_{i−1} + 1/γ).
- ATD: :func:`average_token_delay` (300 ms per source token, 0 ms per target word).
- StartOffset = d_1; EndOffset = d_{|Y*|} − |X|.

BLEU is sacreBLEU's corpus BLEU of the predictions against the references, tokenizer
13a unless told (SimulEval's ``SacreBLEUScorer``), computed by the project's one BLEU
code (:func:`espnet2_ext.main_funcs.scoring.score_lines`), which keeps the signature.
``scores.tsv`` is SimulEval's: one header row, one row of values rounded to 3 decimals,
with one difference: with ``--computation-aware`` SimulEval 1.1.4 also computes the
plain columns on ``elapsed`` (``LatencyScorer.from_args`` passes the flag to every
scorer; SimulEval issue #44), so ``AL`` repeats ``AL_CA``. Ours keep the plain value
there, the one SimulEval writes without the flag.
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.main_funcs.experiment import ScoreResult
from espnet2_ext.main_funcs.scoring import score_lines
from espnet2_ext.simultaneous.instances import InstanceRecord

# SimulEval 1.1.4's default --latency-metrics (simuleval/options.py), then the two offsets it also
# has for text output (NumChunks, RTF and its speech-output metrics are left out).
DEFAULT_LATENCY_METRICS = ("LAAL", "AL", "AP", "DAL", "ATD")
LATENCY_METRICS = (*DEFAULT_LATENCY_METRICS, "StartOffset", "EndOffset")
SOURCE_TOKEN_MS = 300  # ATD's length of a source token for speech input (ATDScorer's SRC_TOKEN_LEN)


class LatencyError(ValueError):
    """A metric SimulEval does not have, or nothing to average it over."""


def average_lagging(delays: Sequence[float], source_length: float, target_length: int) -> float:
    """AL of one instance (``ALScorer.compute``): the mean lag behind an ideal writer
    spreading ``target_length`` words evenly over the source, up to the first word
    written once the whole source was read. SimulEval's early return of d_1 when
    d_1 > |X| is what this gives then (τ = 1)."""
    tau = next((i for i, delay in enumerate(delays, 1) if delay >= source_length), len(delays))
    ms_per_word = source_length / target_length
    return sum(delay - i * ms_per_word for i, delay in enumerate(delays[:tau])) / tau


def length_adaptive_average_lagging(delays: Sequence[float], source_length: float, target_length: int) -> float:
    """LAAL (``LAALScorer.compute``): AL against the longer of the reference and the
    prediction, so that writing too many words does not lower the lag."""
    return average_lagging(delays, source_length, max(len(delays), target_length))


def average_proportion(delays: Sequence[float], source_length: float, target_length: int) -> float:
    """AP (``APScorer.compute``): the mean fraction of the source read per word,
    summed over every predicted word but divided by ``target_length``."""
    return sum(delays) / (source_length * target_length)


def differentiable_average_lagging(delays: Sequence[float], source_length: float) -> float:
    """DAL (``DALScorer.compute``), with γ = |Y*|/|X| always the prediction's length.

    SimulEval's recurrence g_i = max(d_i, g_{i−1} + 1/γ) makes g_i − (i−1)/γ the
    running maximum of d_j − (j−1)/γ, which is what is averaged here.
    """
    ms_per_word = source_length / len(delays)
    return statistics.fmean(accumulate((delay - i * ms_per_word for i, delay in enumerate(delays)), max))


def computation_times(delays: Sequence[float], elapsed: Sequence[float]) -> list[float]:
    """The computation time ATD adds to each word (``ATDScorer.__call__``): the growth
    of ``elapsed − delays`` since the previous word (all 0 when ``elapsed`` is all 0)."""
    if all(e == 0 for e in elapsed):
        return [0.0] * len(elapsed)
    computing = [e - d for e, d in zip(elapsed, delays, strict=True)]
    return [now - before for now, before in zip(computing, [0.0, *computing[:-1]], strict=True)]


def average_token_delay(delays: Sequence[float], compute_times: Sequence[float]) -> float:
    """ATD for speech input and text output (``ATDScorer.__call__`` and ``compute``).

    The source is cut into chunks that end at each distinct delay (first appearance
    order), each chunk into 300 ms tokens, its remainder last; the target into
    chunks of consecutive words with equal delays (the same chunks when delays never
    decrease, as SimulEval's always do). A word takes no time to write: word t ends
    at e_t = max(d_t, e_{t−1}) + c_t (e_0 = 0, c_t its computation time). It is paired
    with source token s_t = min(t − max(0, W − S), R), W and S the words and source
    tokens of the chunks before its own, R the source tokens up to the end of its
    chunk. ATD is the mean of e_t − (end of source token s_t; 0 for s_t = 0).
    """
    source_ends = [0.0]  # the end of source token j, j = 0 standing for "none"
    tokens_by_chunk = [0]  # source tokens up to the end of chunk k
    chunk_start = 0.0
    for chunk_end in dict.fromkeys(delays):
        full, rest = divmod(chunk_end - chunk_start, SOURCE_TOKEN_MS)
        for length in [SOURCE_TOKEN_MS] * int(full) + ([rest] if rest else []):
            source_ends.append(source_ends[-1] + length)
        tokens_by_chunk.append(len(source_ends) - 1)
        chunk_start = chunk_end
    last_chunk = len(tokens_by_chunk) - 1

    words_by_chunk = [0]  # words up to the end of target chunk k
    lags, end = [], 0.0
    for t, (delay, compute) in enumerate(zip(delays, compute_times, strict=True), 1):
        if t == 1 or delay != delays[t - 2]:
            words_by_chunk.append(words_by_chunk[-1])
        words_by_chunk[-1] += 1
        chunk = len(words_by_chunk) - 1
        ahead = words_by_chunk[chunk - 1] - tokens_by_chunk[min(chunk - 1, last_chunk)]
        source_token = min(t - max(0, ahead), tokens_by_chunk[min(chunk, last_chunk)])
        end = max(delay, end) + compute
        lags.append(end - source_ends[source_token])
    return statistics.fmean(lags)


def instance_latency(
    record: InstanceRecord, metric: str, *, computation_aware: bool = False, use_ref_len: bool = True
) -> float | None:
    """``metric`` of one instance (on ``elapsed`` if ``computation_aware``); None for an
    empty prediction, which SimulEval leaves out of the average."""
    if metric not in LATENCY_METRICS:
        raise LatencyError(f"unknown latency metric {metric!r}: SimulEval 1.1.4 has {', '.join(LATENCY_METRICS)}")
    times = record.elapsed if computation_aware else record.delays
    if not times:
        return None
    target_length = record.reference_length if use_ref_len else len(times)
    if metric == "AL":
        return average_lagging(times, record.source_length, target_length)
    if metric == "LAAL":
        return length_adaptive_average_lagging(times, record.source_length, target_length)
    if metric == "AP":
        return average_proportion(times, record.source_length, target_length)
    if metric == "DAL":
        return differentiable_average_lagging(times, record.source_length)
    if metric == "ATD":  # on the delays, plus computation times when computation-aware
        computing = computation_times(record.delays, record.elapsed) if computation_aware else [0.0] * len(times)
        return average_token_delay(record.delays, computing)
    if metric == "StartOffset":
        return times[0]
    return times[-1] - record.source_length  # EndOffset


def corpus_latency(
    records: Sequence[InstanceRecord], metric: str, *, computation_aware: bool = False, use_ref_len: bool = True
) -> float:
    """The mean of :func:`instance_latency` over the instances with a prediction
    (``LatencyScorer.__call__``); :class:`LatencyError` if none has one."""
    values = [
        value
        for record in records
        if (value := instance_latency(record, metric, computation_aware=computation_aware, use_ref_len=use_ref_len))
        is not None
    ]
    if not values:
        raise LatencyError(f"{metric}: no instance has a prediction to measure")
    return statistics.fmean(values)


@dataclass(frozen=True)
class SimulScores:
    """A run's corpus scores: BLEU as sacreBLEU gives it, and the latency columns of
    ``scores.tsv`` in SimulEval's order (each metric, then its ``_CA`` if asked)."""

    bleu: ScoreResult
    latency: dict[str, float]

    def columns(self) -> dict[str, float]:
        """``scores.tsv``'s columns: ``BLEU`` first, then the latency ones."""
        return {"BLEU": self.bleu.bleu, **self.latency}


def corpus_scores(
    records: Sequence[InstanceRecord],
    *,
    latency_metrics: Sequence[str] = DEFAULT_LATENCY_METRICS,
    computation_aware: bool = False,
    use_ref_len: bool = True,
    tokenize: str = "13a",
    log: str = "instances.log",
    yaal: bool = True,
) -> SimulScores:
    """What SimulEval 1.1.4 reports for ``records`` with ``--latency-metrics``,
    ``--computation-aware``, ``--no-use-ref-len`` (``use_ref_len=False``) and
    ``--sacrebleu-tokenizer``; ``log`` names the records' file in the BLEU result. With
    ``yaal`` (and LAAL among the metrics) OmniSTEval's YAAL follows LAAL's columns."""
    if not records:
        raise LatencyError(f"{log}: no instances to score")
    bleu = score_lines(
        [record.prediction for record in records],
        [record.reference for record in records],
        "",
        hyp=f"{log} (prediction)",
        ref=f"{log} (reference)",
        tokenize=tokenize,
    )
    latency = {}
    for metric in latency_metrics:
        for aware in (False, True) if computation_aware else (False,):
            value = corpus_latency(records, metric, computation_aware=aware, use_ref_len=use_ref_len)
            latency[f"{metric}_CA" if aware else metric] = value
        if metric == "LAAL" and yaal:
            for aware in (False, True) if computation_aware else (False,):
                latency["YAAL_CA" if aware else "YAAL"] = yet_another_average_lagging(records, aware)
    return SimulScores(bleu, latency)


def yet_another_average_lagging(records: Sequence[InstanceRecord], computation_aware: bool = False) -> float:
    """YAAL (Polák et al., 2025; the IWSLT 2026 track's latency) of utterances, as OmniSTEval's
    shortform scorer computes it: its ``YAALScorer`` on the records (NaN if none has words
    before its end)."""
    from omnisteval.data import Instance
    from omnisteval.scoring import YAALScorer

    instances = [
        Instance.from_dict({
            "prediction": record.prediction, "reference": record.reference, "source_length": record.source_length,
            "emission_cu": list(record.delays), "emission_ca": list(record.elapsed),
        })
        for record in records
    ]
    return float(YAALScorer(computation_aware=computation_aware, is_longform=False)(instances))


def write_scores_tsv(path: str | Path, scores: SimulScores) -> None:
    """SimulEval's ``scores.tsv`` (``evaluator/evaluator.py``, ``dump_results``), atomically;
    the plain columns stay plain with ``_CA`` ones (module docstring)."""
    write_columns_tsv(path, scores.columns())


def write_columns_tsv(path: str | Path, columns: dict[str, float]) -> None:
    """A ``scores.tsv`` as SimulEval writes one: the column names, then each value rounded to
    3 decimals as pandas writes it (Python's ``repr``)."""
    values = (repr(round(value, 3)) for value in columns.values())
    write_text_atomically(path, "\t".join(columns) + "\n" + "\t".join(values) + "\n")
