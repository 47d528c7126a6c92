"""What a simultaneous run is asked to do, checked before any model is loaded.

One :class:`SimulOptions` holds a setting of FBK's agents (policy, its parameter,
chunk size, attention layer, normalisation); the command line, the recipe's
``conf/simulate.yaml`` and :class:`~espnet2_ext.simultaneous.translator.SimultaneousTranslator`
all go through :meth:`SimulOptions.checked`, so a bad value gets the same message
everywhere. Numpy-free and torch-free: ``simulate --help`` and option errors stay fast.

A packed model carries the settings its recipe chose (stage 9's ``conf/simulate.yaml``,
its keys shared by every setting) in ``meta.yaml``'s :data:`META_KEY`: the programs'
defaults, over FBK's (:class:`SimulOptions`' own) and under what a user gives.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "CMVN_MODES",
    "FRAME_UNITS",
    "META_KEY",
    "MIN_SEGMENT_MS",
    "POLICIES",
    "WAITK_SOURCES",
    "SimulOptions",
    "SimulOptionsError",
    "packed_settings",
]

POLICIES = ("alignatt", "edatt", "la", "waitk")
FRAME_UNITS = ("position", "time")  # what AlignAtt's f counts
CMVN_MODES = ("prefix", "global")
WAITK_SOURCES = ("fixed", "ctc")
MIN_SEGMENT_MS = 40  # one encoder frame of FBK's 4x subsampling: less could never add a frame
META_KEY = "simultaneous"  # in a packed model's meta.yaml: the settings its recipe chose


class SimulOptionsError(ValueError):
    """An option out of its range; the message names the option and what it expects."""


@dataclass(frozen=True)
class SimulOptions:
    """One setting of a simultaneous agent (FBK's flag names in parentheses).

    Attributes:
        policy: ``alignatt``, ``edatt``, ``la`` (local agreement) or ``waitk``.
        frame_num: AlignAtt's f, EDAtt's lambda (``--frame-num``); >= 0.
        frame_unit: what AlignAtt's f counts: ``position`` (FBK: encoder positions)
            or ``time`` (ours: 40-ms frames, whatever CTC compression merged).
        attn_threshold: EDAtt's alpha (``--attn-threshold``); at most sqrt(``frame_num``) for
            ``frame_num`` >= 1, the most a sum of lambda values of an L2-normalised row can be
            (Cauchy-Schwarz: sum of u_i <= sqrt(lambda) * ||u||_2 = sqrt(lambda), equal only for
            a row uniform over those lambda values and 0 elsewhere).
        waitk: wait-k's k (``--waitk``).
        waitk_source: wait-k's source words: ``fixed`` (one per ``segment_factor``
            40-ms frames) or ``ctc`` (the words of the greedy CTC transcript;
            FBK's ``--adaptive-segmentation``).
        segment_factor: 40-ms frames per source word for ``fixed`` wait-k (FBK: 8).
        attention_layer: the decoder layer whose cross-attention AlignAtt and EDAtt
            read, 0-based (``--extract-attn-from-layer``; FBK's READMEs: 3).
        segment_ms: the chunk of audio after which the policy runs
            (``--source-segment-size``); >= 40.
        cmvn: ``prefix`` (the model's utterance CMVN over the audio received) or
            ``global`` (the zip's global statistics, as FBK's released setup).
        beam_size: beam of each search (FBK's agents: 5).
        no_repeat_ngram_size: FBK's agents: 0 (off).
        maxlen_b: most target tokens, forced prefix included (fairseq's 200).
        lang_tag: the language tag forced first, for a model with several.
    """

    policy: str = "alignatt"
    frame_num: int = 4
    frame_unit: str = "position"
    attn_threshold: float = 0.1
    waitk: int = 5
    waitk_source: str = "fixed"
    segment_factor: int = 8
    attention_layer: int = 3
    segment_ms: int = 1000
    cmvn: str = "global"
    beam_size: int = 5
    no_repeat_ngram_size: int = 0
    maxlen_b: int = 200
    lang_tag: str | None = None

    @classmethod
    def checked(cls, **values: Any) -> "SimulOptions":
        """Options from keyword values (a YAML mapping, parsed arguments); unknown names refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SimulOptionsError(
                f"unknown option(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
            )
        options = cls(**values)
        options.check()
        return options

    def with_values(self, **values: Any) -> "SimulOptions":
        """A checked copy with some values changed."""
        return type(self).checked(**{**asdict(self), **values})

    def check(self) -> None:
        """:class:`SimulOptionsError` for the first value out of its range."""
        _choice("policy", self.policy, POLICIES)
        _choice("frame_unit", self.frame_unit, FRAME_UNITS)
        _choice("cmvn", self.cmvn, CMVN_MODES)
        _choice("waitk_source", self.waitk_source, WAITK_SOURCES)
        _integer("frame_num", self.frame_num, 0)
        _integer("waitk", self.waitk, 0)
        _integer("segment_factor", self.segment_factor, 1)
        _integer("attention_layer", self.attention_layer, 0)
        _integer("segment_ms", self.segment_ms, MIN_SEGMENT_MS, "ms")
        _integer("beam_size", self.beam_size, 1)
        _integer("no_repeat_ngram_size", self.no_repeat_ngram_size, 0)
        _integer("maxlen_b", self.maxlen_b, 1)
        if isinstance(self.attn_threshold, bool) or not isinstance(self.attn_threshold, (int, float)):
            raise SimulOptionsError(f"attn_threshold must be a number, got {self.attn_threshold!r}")
        if self.policy == "edatt" and self.frame_num > 0 and self.attn_threshold > math.sqrt(self.frame_num):
            raise SimulOptionsError(
                f"attn_threshold {self.attn_threshold:g} is never reached with frame_num {self.frame_num}: EDAtt "
                f"sums {self.frame_num} values of an L2-normalised attention row, at most sqrt({self.frame_num}) "
                f"= {math.sqrt(self.frame_num):.4g} (all the attention on those positions, evenly): "
                f"give attn_threshold <= {math.sqrt(self.frame_num):.4g}"
            )
        if self.lang_tag is not None and not isinstance(self.lang_tag, str):
            raise SimulOptionsError(f"lang_tag must be a token such as <lang:de>, got {self.lang_tag!r}")

    @property
    def reads_attention(self) -> bool:
        """AlignAtt and EDAtt decide from the cross-attention; the others need none."""
        return self.policy in ("alignatt", "edatt")

    def describe(self) -> str:
        """A short name of the setting, for logs, directory names and tables."""
        if self.policy == "alignatt":
            unit = "" if self.frame_unit == "position" else "t"
            return f"alignatt_f{self.frame_num}{unit}"
        if self.policy == "edatt":
            return f"edatt_l{self.frame_num}_a{self.attn_threshold:g}"
        if self.policy == "waitk":
            return f"waitk_k{self.waitk}" + ("_ctc" if self.waitk_source == "ctc" else "")
        return "la"


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SimulOptionsError(f"{name}: unknown {value!r}, expected one of {', '.join(choices)}")


def _integer(name: str, value: object, lowest: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise SimulOptionsError(f"{name} must be an integer >= {lowest}{' ' + unit if unit else ''}, got {value!r}")



def packed_settings(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a packed model's ``meta.yaml`` carries (:data:`META_KEY`), checked; ``{}``
    for a model packed without them (older zips, imported FBK models): FBK's defaults apply."""
    entry = meta.get(META_KEY)
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise SimulOptionsError(f"meta.yaml: {META_KEY} must map simulate's options to values, got {entry!r}")
    try:
        SimulOptions.checked(**entry)
    except SimulOptionsError as err:
        raise SimulOptionsError(f"meta.yaml: {META_KEY}: {err}") from None
    return dict(entry)
