"""Our simultaneous translator as a SimulEval 1.1.4 agent, for SimulEval's own evaluation::

    simuleval --agent-class espnet2_ext.simultaneous.agent.ESPnetSimulSTAgent \\
        --model model.zip --policy alignatt --frame_num 4 \\
        --source SRC.txt --target TGT.txt --source-segment-size 1000 --output DIR

``--source-segment-size`` is SimulEval's chunk; the agent's ``--segment_ms`` (the
chunk after which the policy runs) follows it unless given (SimulEval's default, 1 ms,
is refused: give the chunk). The agent's options left out are the model's packed
settings, else FBK's, as for ``simulate``. A bad option or model ends SimulEval with
one ``ERROR:`` line and exit status 1, as our programs do. Each ``policy`` call
passes the samples received since the last one to
:class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator`; on the last
segment (``source_finished``) everything left is written with ``finished=True``,
as FBK's v1_1 agents do. The instances equal ``simulate``'s (delays and words);
the elapsed times are SimulEval's own clock.

SimulEval is imported only here (``requirements-nodeps.txt``).
"""

import sys
from argparse import ArgumentParser, Namespace
from dataclasses import fields

from simuleval.agents import SpeechToTextAgent
from simuleval.agents.actions import Action, ReadAction, WriteAction

from espnet2_ext.main_funcs.model_archive import ModelArchiveError
from espnet2_ext.simultaneous.options import MIN_SEGMENT_MS, SimulOptions, SimulOptionsError
from espnet2_ext.simultaneous.translator import SimultaneousTranslator, model_settings

__all__ = ["ESPnetSimulSTAgent"]


class ESPnetSimulSTAgent(SpeechToTextAgent):
    """FBK's offline-model policies (AlignAtt, EDAtt, local agreement, wait-k) over a packed model."""

    def __init__(self, args: Namespace):
        options = {f.name: getattr(args, f.name) for f in fields(SimulOptions) if getattr(args, f.name) is not None}
        SimulOptions.checked(**options)  # the values given, named if wrong, before the model is opened
        if "segment_ms" not in options:
            chunk = args.source_segment_size
            if chunk < MIN_SEGMENT_MS:
                packed = model_settings(args.model, args.cache_dir).get("segment_ms")
                suggestion = f"this model's chunk: {packed}" if packed is not None else "FBK's: 1000"
                raise SimulOptionsError(
                    f"--source-segment-size {chunk} ms (SimulEval's default when it is left out) is under one "
                    f"encoder frame ({MIN_SEGMENT_MS} ms): give SimulEval's chunk ({suggestion})"
                )
            options["segment_ms"] = int(chunk)
        self.translator = SimultaneousTranslator.from_pretrained(
            args.model, args.cache_dir, device=args.device, **options
        )
        self._consumed = 0
        super().__init__(args)  # which calls reset()

    @classmethod
    def from_args(cls, args: Namespace) -> "ESPnetSimulSTAgent":
        """SimulEval's constructor: a bad option or model is one ``ERROR:`` line and exit status 1
        (SimulEval's command line would print the traceback its call went through)."""
        try:
            return cls(args)
        except (ModelArchiveError, ValueError) as err:  # SimulOptionsError is a ValueError
            print(f"ERROR: {err}", file=sys.stderr)
            sys.exit(1)

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        parser.add_argument("--model", required=True, help="model.zip from recipe stage 8")
        parser.add_argument("--cache_dir", default=None, help="where the zip is extracted")
        for field in fields(SimulOptions):  # unset: the model's packed settings, else FBK's
            parser.add_argument(f"--{field.name}", type=field.type if field.type in (int, float) else str, default=None)

    def reset(self) -> None:
        super().reset()
        self.translator.reset()
        self._consumed = 0

    def policy(self) -> Action:
        states = self.states
        new = states.source[self._consumed :]
        self._consumed = len(states.source)
        rate = states.source_sample_rate
        if states.source_finished:
            words = self.translator.finish(new if new else None, rate)
            return WriteAction(" ".join(word.text for word in words), finished=True)
        words = self.translator.push(new, rate) if new else []
        if not words:
            return ReadAction()
        return WriteAction(" ".join(word.text for word in words), finished=False)
