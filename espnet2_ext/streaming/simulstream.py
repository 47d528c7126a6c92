"""Our streaming translator as a simulstream ``SpeechProcessor``, so FBK's simulstream runs our zips.

simulstream (FBK; PyPI ``simulstream``) builds a processor from a YAML whose ``type``
names its class, calls ``load_model`` once, then makes one processor per stream and
feeds it 16-kHz float chunks of ``speech_chunk_size`` seconds (``process_chunk``),
then ``end_of_stream``. Its scorers read the same YAML to detokenise what was logged.
``conf/simulstream/streamatt.yaml`` is such a file::

    model: exp/st_finetune/packed/model.zip      # first: what to run
    type: espnet2_ext.streaming.simulstream.StreamAttProcessor
    detokenizer_type: simuleval                  # the tokens we log are words
    latency_unit: word
    policy: alignatt                             # then StreamOptions' fields, as `simulate` names them
    ...

then ``simulstream_inference --speech-processor-config streamatt.yaml --wav-list-file
talks.txt`` and ``simulstream_score_latency --eval-config streamatt.yaml --scorer
stream_laal ...``. The chunk is ``segment_ms``: each chunk is one policy step, and the
last, shorter one is the end of the talk, as ``simulate`` sends a talk. A key we do not
know, or a zip that is not there, stops ``load_model`` with one ``ERROR:`` line.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
from simulstream.server.speech_processors import SpeechProcessor
from simulstream.server.speech_processors.incremental_output import IncrementalOutput

from espnet2_ext.streaming.options import ATTENTION_HISTORIES, StreamOptions

__all__ = ["StreamAttProcessor", "processor_options"]

SIMULSTREAM_KEYS = ("type", "detokenizer_type", "latency_unit", "speech_chunk_size")  # simulstream's own
LOADING_KEYS = ("model", "cache_dir", "device", "silence_dbfs")


class ProcessorConfigError(ValueError):
    """A processor YAML that cannot configure our translator; the message names the key."""


def processor_options(config: SimpleNamespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(loading keys, translator options) of a processor YAML, every key known and the zip there."""
    values = dict(vars(config))
    known = {*SIMULSTREAM_KEYS, *LOADING_KEYS, *(f.name for f in fields(StreamOptions))}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ProcessorConfigError(
            f"unknown key(s) {', '.join(unknown)}; expected {', '.join(LOADING_KEYS)}, simulstream's "
            f"{', '.join(SIMULSTREAM_KEYS)}, or the streaming options {', '.join(f.name for f in fields(StreamOptions))}"
        )
    model = values.get("model")
    if not isinstance(model, str) or not Path(model).exists():
        raise ProcessorConfigError(f"model: {model!r} is not a model zip or directory (the first key, model: PATH)")
    loading = {key: values[key] for key in LOADING_KEYS if key in values}
    options = {name: values[name] for name in (f.name for f in fields(StreamOptions)) if name in values}
    history = StreamOptions.checked(**{"history": "words", **options}).history  # checked before the model loads
    if history not in ATTENTION_HISTORIES:
        raise ProcessorConfigError(
            f"history: {history}: the processor streams with StreamAtt, whose history is one of "
            f"{', '.join(ATTENTION_HISTORIES)}"
        )
    return loading, options


class StreamAttProcessor(SpeechProcessor):
    """One stream of a simulstream server or run: a StreamingTranslator on the class's model."""

    _loaded: ClassVar[dict[str, Any]] = {}  # a translator per YAML, its model loaded once per process

    @classmethod
    def load_model(cls, config: SimpleNamespace) -> None:
        from espnet2_ext.streaming.translator import StreamingTranslator

        try:
            loading, options = processor_options(config)
            translator = StreamingTranslator.from_pretrained(
                loading["model"], loading.get("cache_dir"), loading.get("device", "cpu"),
                loading.get("silence_dbfs", -60.0), **options,
            )
        except (ValueError, OSError) as err:
            print(f"ERROR: {err}", file=sys.stderr)
            raise SystemExit(1) from None
        cls._loaded[_key(config)] = translator

    def __init__(self, config: SimpleNamespace):
        super().__init__(config)
        from espnet2_ext.streaming.translator import StreamingTranslator

        loaded = self._loaded[_key(config)]
        self.translator = StreamingTranslator(
            loaded.translator, loaded.options, loaded.global_cmvn, source=config.model, model_id=loaded.model_id
        )

    @property
    def speech_chunk_size(self) -> float:
        """One policy step of audio (s)."""
        return self.translator.options.segment_ms / 1000

    def process_chunk(self, waveform: np.ndarray) -> IncrementalOutput:
        """A full chunk runs the policy; a shorter one is the end of the talk and waits for ``end_of_stream``."""
        return self._output(self.translator.push(waveform))

    def end_of_stream(self) -> IncrementalOutput:
        return self._output(self.translator.finish())

    def set_source_language(self, language: str) -> None:
        """The model translates English: nothing to set."""

    def set_target_language(self, language: str) -> None:
        """The model's target language is the one it was trained for (its tag, if any, is in the zip)."""

    def tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def clear(self) -> None:
        self.translator.reset()

    def _output(self, words: list) -> IncrementalOutput:
        tokens = [word.text for word in words]
        return IncrementalOutput(tokens, self.tokens_to_string(tokens), [], "")


def _key(config: SimpleNamespace) -> str:
    return repr(sorted(vars(config).items()))
