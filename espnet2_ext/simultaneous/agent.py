"""Our simultaneous translator as a SimulEval 1.1.4 agent, for SimulEval's own evaluation::

    simuleval --agent-class espnet2_ext.simultaneous.agent.ESPnetSimulSTAgent \\
        --model model.zip --policy alignatt --frame_num 4 \\
        --source SRC.txt --target TGT.txt --source-segment-size 1000 --output DIR

``--source-segment-size`` is SimulEval's chunk; the agent's ``--segment_ms`` (the
chunk after which the policy runs) follows it unless given. Each ``policy`` call
passes the samples received since the last one to
:class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator`; on the last
segment (``source_finished``) everything left is written with ``finished=True``,
as FBK's v1_1 agents do. The instances equal ``simulate``'s (delays and words);
the elapsed times are SimulEval's own clock.

SimulEval is imported only here (``requirements-nodeps.txt``).
"""

from argparse import ArgumentParser, Namespace
from dataclasses import fields

from simuleval.agents import SpeechToTextAgent
from simuleval.agents.actions import Action, ReadAction, WriteAction

from espnet2_ext.simultaneous.options import SimulOptions
from espnet2_ext.simultaneous.translator import SimultaneousTranslator

__all__ = ["ESPnetSimulSTAgent"]


class ESPnetSimulSTAgent(SpeechToTextAgent):
    """FBK's offline-model policies (AlignAtt, EDAtt, local agreement, wait-k) over a packed model."""

    def __init__(self, args: Namespace):
        options = {f.name: getattr(args, f.name) for f in fields(SimulOptions)}
        if options["segment_ms"] is None:
            options["segment_ms"] = int(args.source_segment_size)
        self.translator = SimultaneousTranslator.from_pretrained(
            args.model, args.cache_dir, device=args.device, **options
        )
        self._consumed = 0
        super().__init__(args)  # which calls reset()

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        defaults = SimulOptions()
        parser.add_argument("--model", required=True, help="model.zip from recipe stage 8")
        parser.add_argument("--cache_dir", default=None, help="where the zip is extracted")
        parser.add_argument("--policy", default=defaults.policy)
        parser.add_argument("--frame_num", type=int, default=defaults.frame_num)
        parser.add_argument("--frame_unit", default=defaults.frame_unit)
        parser.add_argument("--attn_threshold", type=float, default=defaults.attn_threshold)
        parser.add_argument("--waitk", type=int, default=defaults.waitk)
        parser.add_argument("--waitk_source", default=defaults.waitk_source)
        parser.add_argument("--segment_factor", type=int, default=defaults.segment_factor)
        parser.add_argument("--attention_layer", type=int, default=defaults.attention_layer)
        parser.add_argument("--segment_ms", type=int, default=None, help="default: --source-segment-size")
        parser.add_argument("--cmvn", default=defaults.cmvn)
        parser.add_argument("--beam_size", type=int, default=defaults.beam_size)
        parser.add_argument("--no_repeat_ngram_size", type=int, default=defaults.no_repeat_ngram_size)
        parser.add_argument("--maxlen_b", type=int, default=defaults.maxlen_b)
        parser.add_argument("--lang_tag", default=None)

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
