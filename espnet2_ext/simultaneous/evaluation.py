"""Simulate a simultaneous run over a test set, as SimulEval 1.1.4 does, and score it.

Each instance (an audio file, or a segment of a data dir's recording: the gold
segmentation) is sent to a :class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator`
in segments of ``segment_ms`` (``ceil(segment_ms / 1000 * 16000)`` samples), the
last one as the end of the source, and every word written gets SimulEval's delay
(ms of source sent) and elapsed time (plus the computation). Finished instances go
to ``instances.log`` one line at a time, so a killed run resumes where it stopped;
``scores.tsv`` is SimulEval's, from the whole log.
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from espnet2_ext.fileio.atomic import write_text_atomically
from espnet2_ext.fileio.data_dir import Recording, Utterance, read_recordings, read_utterance
from espnet2_ext.fileio.kaldi_table import read_text
from espnet2_ext.fileio.yaml_file import read_yaml_mapping
from espnet2_ext.inference.audio import AudioError
from espnet2_ext.inference.file_inputs import Input, input_audio
from espnet2_ext.inference.speech_input import chunks_16k
from espnet2_ext.simultaneous.instances import InstanceRecord, InstancesLogWriter, read_instances
from espnet2_ext.simultaneous.latency import LATENCY_METRICS, corpus_scores, write_scores_tsv
from espnet2_ext.simultaneous.options import SimulOptions
from espnet2_ext.simultaneous.translator import SimultaneousTranslator
from espnet2_ext.utils.fbank import SAMPLE_RATE, resample
from espnet2_ext.utils.waveform import mix_to_mono

__all__ = [
    "INSTANCES_LOG",
    "SCORES_TSV",
    "SETTING_YAML",
    "SimulInstance",
    "SimulationError",
    "UtteranceRuns",
    "check_setting",
    "data_dir_instances",
    "dependencies",
    "file_instances",
    "run_setting",
    "simulate_instance",
    "translate_pending",
]

INSTANCES_LOG = "instances.log"
SCORES_TSV = "scores.tsv"
SETTING_YAML = "setting.yaml"  # the options the log was written with: a rerun must match them
DEPENDS_KEY = "instances"  # setting.yaml's record of the model, inputs and references of its run
SIMULEVAL_CONFIG = "config.yaml"  # what `simuleval --score-only --output DIR` reads
SIMULEVAL_TYPES = {"source_type": "speech", "target_type": "text"}


class SimulationError(ValueError):
    """Inputs, references or an output directory that cannot make one run."""


class SimulInstance(NamedTuple):
    """One source to translate: its index (SimulEval's), name, reference, and its audio
    (16 kHz mono float32, read only when it is its turn)."""

    index: int
    source: str
    reference: str
    samples: Callable[[], np.ndarray]


@dataclass(frozen=True)
class InstanceSource:
    """Where the instances come from, in a form another process can rebuild them from:
    a data dir's utterances, or audio files with their reference lines."""

    data_dir: Path | None = None
    reference_name: str = "text.tgt"
    inputs: tuple[Input, ...] = ()
    references: tuple[str, ...] | None = None
    raw_sample_rate: int | None = None

    def instances(self) -> list[SimulInstance]:
        """The instances (their audio is read only when each one's turn comes)."""
        if self.data_dir is not None:
            return data_dir_instances(self.data_dir, self.reference_name)
        return file_instances(self.inputs, self.references, self.raw_sample_rate)


def file_instances(
    inputs: Sequence[Input], references: Sequence[str] | None, raw_sample_rate: int | None = None
) -> list[SimulInstance]:
    """One instance per audio file (``translate``'s inputs), with line i of the references."""
    if references is not None and len(references) != len(inputs):
        raise SimulationError(f"{len(references)} reference lines for {len(inputs)} inputs: one line per input")

    def reader(item: Input) -> Callable[[], np.ndarray]:
        return lambda: _joined(chunks_16k(input_audio(item, raw_sample_rate)))

    return [
        SimulInstance(n, item.path, references[n] if references is not None else "", reader(item))
        for n, item in enumerate(inputs)
    ]


def data_dir_instances(data_dir: Path, reference_name: str = "text.tgt") -> list[SimulInstance]:
    """One instance per utterance of a Kaldi data dir (its ``segments``: the gold segmentation),
    in recording then time order, with its reference from ``reference_name``."""
    recordings = read_recordings(data_dir)
    references = read_text(data_dir / reference_name)
    instances: list[SimulInstance] = []
    for recording in recordings:
        for utt in recording.utterances:
            if utt.utt_id not in references:
                raise SimulationError(f"{data_dir / reference_name}: no reference for utterance {utt.utt_id}")

            def reader(recording: Recording = recording, utt: Utterance = utt) -> np.ndarray:
                samples, rate = read_utterance(recording, utt)
                return resample(mix_to_mono(samples), rate).astype(np.float32, copy=False)

            instances.append(SimulInstance(len(instances), utt.utt_id, references[utt.utt_id], reader))
    return instances


def simulate_instance(
    translator: SimultaneousTranslator, samples: np.ndarray, index: int, source: str, reference: str
) -> InstanceRecord:
    """The record of one source sent in segments (SimulEval's ``SpeechInputInstance``)."""
    if len(samples) == 0:
        raise AudioError(f"{source}: empty audio (0 samples)")
    segment = math.ceil(translator.options.segment_ms / 1000 * SAMPLE_RATE)
    translator.reset()
    starts = range(0, len(samples), segment)
    for start in starts[:-1]:
        translator.push(samples[start : start + segment])
    translator.finish(samples[starts[-1] :])
    words = translator.words
    return InstanceRecord.from_words(
        index,
        [word.text for word in words],
        [1000 * word.time for word in words],
        [1000 * word.elapsed for word in words],
        reference,
        source,
        1000 * len(samples) / SAMPLE_RATE,
    )


class SettingResult(NamedTuple):
    """What one setting's run left: the records in its log, how many instances failed, its
    scores (anything whose ``columns()`` are ``scores.tsv``'s)."""

    records: list[InstanceRecord]
    failed: list[str]
    scores: Any | None


def run_setting(
    translator: SimultaneousTranslator,
    instances: Sequence[SimulInstance],
    out_dir: Path,
    *,
    computation_aware: bool = False,
    scored: bool = True,
    on_record: Callable[[InstanceRecord], None] | None = None,
) -> SettingResult:
    """Translate the instances not yet in ``out_dir/instances.log``, then score the whole log.

    ``out_dir/setting.yaml`` records the options and what the instances depend on (the
    model, the inputs, the references: :func:`dependencies`); ``config.yaml`` SimulEval's
    input and output types, so that ``simuleval --score-only`` reads the directory. A log
    written with other options, another model or other inputs is a :class:`SimulationError`
    (its records would not be this run's); with other references only, the records keep
    their translations and get the new references, and the scores are computed anew. An
    instance whose audio cannot be read is reported in ``failed`` and left out;
    scores are written only when every instance is in the log (and ``scored``).
    """
    check_setting(out_dir, translator.options, dependencies(translator, instances), instances)

    def record(instance: SimulInstance, samples: np.ndarray) -> InstanceRecord:
        _warn_if_long(translator, instance.source, len(samples) / SAMPLE_RATE)
        return simulate_instance(translator, samples, instance.index, instance.source, instance.reference)

    records, failed = translate_pending(instances, out_dir, record, on_record)
    scores = None
    if scored and not failed and len(records) == len(instances):
        scores = corpus_scores(
            records,
            latency_metrics=LATENCY_METRICS,
            computation_aware=computation_aware,
            log=str(out_dir / INSTANCES_LOG),
        )
        write_scores_tsv(out_dir / SCORES_TSV, scores)
    return SettingResult(records, failed, scores)


def translate_pending(
    instances: Sequence[SimulInstance],
    out_dir: Path,
    record: Callable[[SimulInstance, np.ndarray], InstanceRecord],
    on_record: Callable[[InstanceRecord], None] | None = None,
) -> tuple[list[InstanceRecord], list[str]]:
    """``record`` every instance not yet in ``out_dir/instances.log``, appending each as it ends;
    the log's records by index, and the errors of the instances whose audio could not be read."""
    failed: list[str] = []
    with InstancesLogWriter(out_dir / INSTANCES_LOG, resume=True) as writer:
        for instance in _pending(instances, writer.done):
            try:
                result = record(instance, instance.samples())
            except AudioError as err:
                failed.append(str(err))
                continue
            writer.write(result)
            if on_record is not None:
                on_record(result)
    return sorted(read_instances(out_dir / INSTANCES_LOG).records, key=lambda r: r.index), failed


class UtteranceRuns:
    """How a worker process builds a run's translators and runs a setting: one utterance at a
    time (:func:`run_setting`). ``streaming.evaluation`` has whole talks' counterpart."""

    def translators(
        self, model: str, settings: Sequence[SimulOptions], cache_dir: str | None, device: str, silence_dbfs: float
    ) -> list[SimultaneousTranslator]:
        return SimultaneousTranslator.for_settings(model, settings, cache_dir, device, silence_dbfs)

    def run(
        self, translator: Any, instances: Sequence[SimulInstance], out_dir: Path, *, computation_aware: bool,
        scored: bool, on_record: Callable[[InstanceRecord], None] | None = None,
    ) -> SettingResult:
        return run_setting(
            translator, instances, out_dir, computation_aware=computation_aware, scored=scored, on_record=on_record
        )


class SettingSummary(NamedTuple):
    """What a worker process reports of one setting: where, failures, scores.tsv's columns."""

    out_dir: Path
    name: str
    failed: list[str]
    columns: dict[str, float] | None


def summary(out_dir: Path, name: str, result: SettingResult) -> SettingSummary:
    return SettingSummary(out_dir, name, result.failed, None if result.scores is None else result.scores.columns())


def run_settings_in_processes(
    model: str,
    jobs: Sequence[tuple[Path, SimulOptions]],
    source: Any,
    processes: int,
    *,
    cache_dir: str | None = None,
    device: str = "cpu",
    silence_dbfs: float = -60.0,
    computation_aware: bool = False,
    scored: bool = True,
    runs: Any = None,
) -> list[SettingSummary]:
    """Every setting run (``runs``: :class:`UtteranceRuns` unless given), spread over ``processes``
    processes of one thread each (the settings of a process share its model), in the order of ``jobs``.

    Each worker says which setting it starts and what each gave. However this function
    ends (an error, Ctrl-C, SIGTERM raised as :class:`~espnet2_ext.utils.cli.Interrupted`)
    the workers still running are terminated at once, so no setting starts after it; a
    worker that dies on its own (the out-of-memory killer's SIGKILL) is a
    :class:`SimulationError` naming the setting it was running.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # no forked torch state
    shares = [list(enumerate(jobs))[n::processes] for n in range(processes)]
    workers: dict[Any, tuple[Any, list[int]]] = {}  # receiving end -> (process, indices it has not finished)
    done: dict[int, SettingSummary] = {}
    try:
        for share in filter(None, shares):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_run_share,
                args=(
                    sender, model, share, source, cache_dir, device, silence_dbfs, computation_aware, scored,
                    runs or UtteranceRuns(),
                ),
                daemon=False,  # a setting may start processes of its own (OmniSTEval's alignment); ended below
            )
            process.start()
            sender.close()
            workers[receiver] = (process, [index for index, _ in share])
        while workers:
            for receiver in wait(list(workers)):
                process, pending = workers[receiver]
                try:
                    message = receiver.recv()
                except EOFError:  # the worker has gone: all done, or killed
                    del workers[receiver]
                    process.join()
                    if pending:
                        raise SimulationError(_worker_died(process.exitcode, jobs[pending[0]][0])) from None
                    continue
                if message[0] == "error":
                    raise message[1] from _RemoteTraceback(message[2])
                index, result = message[1], message[2]
                done[index] = result
                pending.remove(index)
    finally:
        for process, _ in workers.values():
            process.terminate()
        for process, _ in workers.values():
            process.join()
    return [done[index] for index in range(len(jobs))]


class _RemoteTraceback(Exception):
    """A worker's traceback, shown as the cause of the exception it sent."""

    def __str__(self) -> str:
        return f"in the worker process:\n{self.args[0]}"


def _worker_died(exitcode: int | None, out_dir: Path) -> str:
    how = f"killed by {signal.Signals(-exitcode).name}" if exitcode and exitcode < 0 else f"exit status {exitcode}"
    memory = " (out of memory? fewer --nj use less)" if exitcode == -signal.SIGKILL else ""
    return (
        f"setting {out_dir.name}: its worker process ended ({how}){memory}; the instances it finished are in "
        f"{out_dir / INSTANCES_LOG}: run the same command again to continue"
    )


def _run_share(
    connection: Any,
    model: str,
    share: list[tuple[int, tuple[Path, SimulOptions]]],
    source: Any,
    cache_dir: str | None,
    device: str,
    silence_dbfs: float,
    computation_aware: bool,
    scored: bool,
    runs: Any,
) -> None:
    """A worker: its settings in turn, each one's :class:`SettingSummary` sent as
    ``("done", index, summary)``; an exception as ``("error", exception, traceback)``."""
    import traceback

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    try:
        torch.set_num_threads(1)
        translators = runs.translators(model, [options for _, (_, options) in share], cache_dir, device, silence_dbfs)
        instances = source.instances()
        for (index, (out_dir, options)), translator in zip(share, translators):
            result = runs.run(translator, instances, out_dir, computation_aware=computation_aware, scored=scored)
            connection.send(("done", index, summary(out_dir, options.describe(), result)))
    except Exception as err:  # sent whole to the parent, which raises it
        try:
            connection.send(("error", err, traceback.format_exc()))
        except Exception:  # one that does not pickle
            connection.send(("error", RuntimeError(repr(err)), traceback.format_exc()))
    finally:
        connection.close()


def dependencies(translator: SimultaneousTranslator, instances: Sequence[SimulInstance]) -> dict[str, Any]:
    """What a run's records depend on besides the options: the model (its SHA-256), the
    inputs (how many, and the SHA-256 of their names in order) and the references (SHA-256)."""
    return {
        "model": translator.model_id,
        "inputs": len(instances),
        "inputs_sha256": _sha256_lines(instance.source for instance in instances),
        "references_sha256": _sha256_lines(instance.reference for instance in instances),
    }


def check_setting(
    out_dir: Path, options: SimulOptions, depends: dict[str, Any], instances: Sequence[SimulInstance]
) -> None:
    """Record ``options`` and ``depends`` (:func:`dependencies`) in ``out_dir/setting.yaml``, or
    check they are those already there; new references only are taken into the log."""
    path = out_dir / SETTING_YAML
    wanted = {**asdict(options), DEPENDS_KEY: depends}
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out_dir / SIMULEVAL_CONFIG, yaml.safe_dump(SIMULEVAL_TYPES))
        write_text_atomically(path, yaml.safe_dump(wanted, sort_keys=False))
        return
    found = read_yaml_mapping(path)
    recorded = found.pop(DEPENDS_KEY, None)
    if found != asdict(options):
        options_now = asdict(options)
        changed = sorted(key for key in options_now.keys() | found.keys() if found.get(key) != options_now.get(key))
        raise SimulationError(
            f"{out_dir} holds a run with other options ({', '.join(f'{k}: {found.get(k)!r}' for k in changed)}); "
            "use another --output, or delete it to start again"
        )
    if not isinstance(recorded, dict):
        raise SimulationError(
            f"{path} does not say which model, inputs and references its run had (written by an older version): "
            "use another --output, or delete it to start again"
        )
    if recorded.get("model") != depends["model"]:
        raise SimulationError(
            f"{out_dir} holds a run of another model (SHA-256 {str(recorded.get('model'))[:12]}, this one "
            f"{str(depends['model'])[:12]}); use another --output, or delete it to start again"
        )
    if (recorded.get("inputs"), recorded.get("inputs_sha256")) != (depends["inputs"], depends["inputs_sha256"]):
        raise SimulationError(
            f"{out_dir} holds a run of other inputs ({recorded.get('inputs')} then, {depends['inputs']} now, "
            "or other names); use another --output, or delete it to start again"
        )
    if recorded.get("references_sha256") != depends["references_sha256"]:
        _take_new_references(out_dir, instances)
        write_text_atomically(path, yaml.safe_dump(wanted, sort_keys=False))


def _take_new_references(out_dir: Path, instances: Sequence[SimulInstance]) -> None:
    """The log's records with the instances' (corrected) references; the old scores removed."""
    log = out_dir / INSTANCES_LOG
    if log.exists():
        references = {instance.index: instance.reference for instance in instances}
        records = read_instances(log).records  # a torn last line is left out: it is translated again
        lines = [replace(record, reference=references[record.index]).json_line() + "\n" for record in records]
        write_text_atomically(log, "".join(lines))
    (out_dir / SCORES_TSV).unlink(missing_ok=True)
    logging.warning("%s: the references changed since its run: its instances are scored with the new ones", out_dir)


def _sha256_lines(lines: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _warn_if_long(translator: SimultaneousTranslator, source: str, seconds: float) -> None:
    """A source far longer than the model's utterances is one utterance to the agent, re-encoded
    whole at every chunk: slow, and a sentence-level model translates little of it."""
    longest = translator.translator.segmentation.max_seconds
    if seconds > 2 * longest:
        logging.warning(
            "%s: %.1f s, one utterance to the agent, but the model's are shorter than %.1f s: cut it first "
            "(translate's segmentation, or LiveTranslator for a stream)", source, seconds, longest
        )


def _pending(instances: Iterable[SimulInstance], done: set[int]) -> Iterator[SimulInstance]:
    return (instance for instance in instances if instance.index not in done)


def _joined(chunks: Iterable[np.ndarray]) -> np.ndarray:
    parts = list(chunks)
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, dtype=np.float32)
