"""Imported FBK checkpoints compute what FBK-fairseq computes.

Tiny FBK models (checkpoint, ``config.yaml``, fairseq dictionaries, SentencePiece
models, as FBK publishes them; :func:`tests.fbk_reference.make_fbk_checkpoint`)
are imported with :func:`espnet2_ext.main_funcs.fbk_import.import_fbk` and
compared with :class:`tests.fbk_reference.FBKReference`, a plain re-implementation
of FBK-fairseq HEAD's formulas that runs one utterance at a time, unpadded.
Our side runs padded batches of utterances of different lengths.

Compared, in float32 (max abs diff ``ATOL`` 1e-5), ids mapped by token string:
utterance CMVN, encoder states, CTC logits and lengths before and after
compression, teacher-forced decoder log-probabilities; and the n-best of
``translate_features`` against fairseq's ``SequenceGenerator`` rules (tokens
exactly, scores within ``SCORE_ATOL`` 1e-4).
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from espnet2_ext.bin import import_fbk as import_fbk_program
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs.fbk_import import FBKImportError, import_fbk
from tests.fbk_reference import (
    EOS,
    FRAMES,
    LANG_TAG,
    FBKFiles,
    FBKReference,
    ensure_max_ctc_out_len,
    features,
    make_fbk_checkpoint,
    max_diff,
    merge_sublist,
    pad,
    utterance_cmvn,
)

ATOL = 1e-5
SCORE_ATOL = 1e-4
BEAM = 5
MAX_LEN = 10  # maxlen_b (maxlen_a 0): some hypotheses reach it
NO_REPEAT = 2

# fairseq's special symbols -> ours; every other symbol keeps its string
TARGET_NAMES = {"<pad>": "<blank>", "</s>": "<sos/eos>"}
SOURCE_NAMES = {"<ctc_blank>": "<blank>"}


class Case(NamedTuple):
    strategy: str
    max_out_size: int
    lang_tag: bool
    args_format: str
    seed: int  # of the random weights (3 and 9: max-out-size merges with majority ties)
    eos_scale: float  # on </s>'s output row, chosen so that hypotheses end at several lengths
    share_embeddings: bool = False


CASES = [
    Case("none", -1, False, "namespace", seed=0, eos_scale=1.5),
    Case("none", 3, True, "cfg", seed=1, eos_scale=-1.5),  # max-out-size without compression: no effect
    Case("avg", -1, True, "cfg", seed=2, eos_scale=2.5),
    Case("avg", 3, False, "cfg_namespace", seed=5, eos_scale=1.5),
    Case("weighted", -1, False, "cfg", seed=4, eos_scale=2.5, share_embeddings=True),
    Case("weighted", 3, True, "namespace", seed=3, eos_scale=3.0),
    Case("softmax", -1, True, "cfg_namespace", seed=7, eos_scale=-1.5),
    Case("softmax", 3, False, "namespace", seed=9, eos_scale=1.5),
    Case("fixed", -1, False, "cfg", seed=6, eos_scale=1.5),
    Case("fixed", 3, True, "cfg_namespace", seed=8, eos_scale=2.5),
]


def case_id(case: Case) -> str:
    parts = [case.strategy, f"max{case.max_out_size}" if case.max_out_size > 0 else "nomax",
             "tag" if case.lang_tag else "notag", case.args_format]
    return "-".join(parts + (["shared"] if case.share_embeddings else []))


class Imported(NamedTuple):
    case: Case
    files: FBKFiles
    reference: FBKReference
    translator: Speech2Translation
    target_ids: list[int]  # our id of each fairseq target id
    source_ids: list[int]  # our id of each fairseq source id


def import_and_load(files: FBKFiles, out: Path, cache: Path) -> Speech2Translation:
    zip_path = import_fbk(files.checkpoint, files.config, files.tgt_spm, files.tgt_dict,
                          files.src_spm, files.src_dict, out)
    return Speech2Translation.from_pretrained(
        zip_path, cache_dir=cache, beam_size=BEAM, nbest=BEAM, no_repeat_ngram_size=NO_REPEAT,
        maxlen_a=0.0, maxlen_b=MAX_LEN,
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def imported(request, tmp_path_factory) -> Imported:
    case = request.param
    work = tmp_path_factory.mktemp(case_id(case))
    files = make_fbk_checkpoint(
        work / "fbk", strategy=case.strategy, max_out_size=case.max_out_size, lang_tag=case.lang_tag,
        args_format=case.args_format, share_embeddings=case.share_embeddings, eos_scale=case.eos_scale,
        seed=case.seed,
    )
    translator = import_and_load(files, work / "model.zip", work / "cache")
    reference = FBKReference.from_files(files.checkpoint, files.tgt_dict, files.src_dict)
    model = translator.model
    target_ids = [model.token_list.index(TARGET_NAMES.get(s, s)) for s in reference.tgt_symbols]
    source_ids = [model.src_token_list.index(SOURCE_NAMES.get(s, s)) for s in reference.src_symbols]
    return Imported(case, files, reference, translator, target_ids, source_ids)


# --------------------------------------------------------------------------- the reference itself


def test_reference_relative_shift_is_the_closed_form():
    """FBK's zero-pad-and-reshape shift, element by element (query i, key j, table P):
    j <= i: (q_i + v) . P[L-1-(i-j)]; j == i+1: 0; j >= i+2: (q_{i+1} + v) . P[j-i-2]."""
    length = 6
    pos_score = torch.randn(2, length, length)  # [h, i, m] = (q_i + v) . P[m]
    shifted = FBKReference.relative_shift(pos_score)
    for i in range(length):
        for j in range(length):
            if j <= i:
                expected = pos_score[:, i, length - 1 - (i - j)]
            elif j == i + 1:
                expected = torch.zeros(2)
            else:
                expected = pos_score[:, i + 1, j - i - 2]
            assert torch.equal(shifted[:, i, j], expected), (i, j)


def test_reference_merges_runs_as_fbk_documents():
    # ctc_support.py's docstrings: [(a, 3), (b, 5), (c, 6), (a, 4)] -> (a, 18)
    assert merge_sublist([(7, 3), (8, 5), (9, 6), (7, 4)]) == (7, 18)
    # ties: the label that reached the count first
    assert merge_sublist([(5, 2), (7, 2)]) == (5, 4)
    assert merge_sublist([(5, 1), (7, 2), (5, 1)]) == (7, 4)
    # max out size 3, five runs: the first two merged, then the next two, then the last
    runs = [(1, 1), (2, 2), (3, 1), (4, 1), (5, 3)]
    assert ensure_max_ctc_out_len(runs, 3) == [(2, 3), (3, 2), (5, 3)]
    assert ensure_max_ctc_out_len(runs, 5) == runs
    assert ensure_max_ctc_out_len(runs, -1) == runs


def test_reference_decoder_is_causal(tmp_path):
    files = make_fbk_checkpoint(tmp_path)
    reference = FBKReference.from_files(files.checkpoint, files.tgt_dict, files.src_dict)
    states = torch.randn(7, 32)
    tokens = [EOS, 9, 4, 12, 30]
    full = reference.decoder_log_probs(states, tokens)
    assert torch.allclose(reference.decoder_log_probs(states, tokens[:3]), full[:3], atol=1e-6)
    assert torch.allclose(full.exp().sum(-1), torch.ones(len(tokens)), atol=1e-5)


# --------------------------------------------------------------------------- imported vs reference


def test_token_lists(imported):
    ref = imported.reference
    model = imported.translator.model
    assert model.token_list == ["<blank>", "<unk>", *ref.tgt_symbols[4:], "<s>", "<sos/eos>"]
    assert model.src_token_list == ["<blank>", "<unk>", *ref.src_symbols[4:-1], "<s>", "<pad>", "</s>"]


def test_utterance_cmvn(imported):
    feats = features()
    lengths = torch.tensor(FRAMES)
    normalised, out_lengths = imported.translator.model.normalize(pad(feats), lengths)
    assert torch.equal(out_lengths, lengths)
    for b, x in enumerate(feats):
        expected = torch.from_numpy(utterance_cmvn(x))
        assert max_diff(normalised[b, : len(x)], expected) <= ATOL
        assert not normalised[b, len(x) :].any()


def test_encoder(imported):
    ref, model = imported.reference, imported.translator.model
    normalised = [utterance_cmvn(x) for x in features()]
    with torch.no_grad():
        hidden, lengths, ctc_logits, ctc_lengths = model.encoder.encode(pad(normalised), torch.tensor(FRAMES))
    for b, x in enumerate(normalised):
        expected = ref.encode(torch.from_numpy(x))
        assert int(ctc_lengths[b]) == expected.ctc_logits.size(0)
        ours = ctc_logits[b, : ctc_lengths[b]][:, imported.source_ids]
        assert max_diff(ours, expected.ctc_logits) <= ATOL, f"utterance {b}: CTC logits"
        assert int(lengths[b]) == expected.states.size(0), f"utterance {b}: runs {expected.runs}"
        assert max_diff(hidden[b, : lengths[b]], expected.states) <= ATOL, f"utterance {b}: states"


def test_compiled_encoder(imported):
    """The encoder's compiled code path (traced by dynamo, eager kernels: ``aot_eager``) gives FBK's
    states too; the compression's output, padded to a width known from the shapes, holds them first."""
    from espnet2_ext.train.compilation import compiled

    ref, model = imported.reference, imported.translator.model
    normalised = [utterance_cmvn(x) for x in features()]
    encode = compiled(model.encoder.encode, backend="aot_eager")
    with torch.no_grad():
        hidden, lengths, ctc_logits, ctc_lengths = encode(pad(normalised), torch.tensor(FRAMES))
    for b, x in enumerate(normalised):
        expected = ref.encode(torch.from_numpy(x))
        assert int(ctc_lengths[b]) == expected.ctc_logits.size(0)
        assert int(lengths[b]) == expected.states.size(0), f"utterance {b}: runs {expected.runs}"
        assert max_diff(hidden[b, : lengths[b]], expected.states) <= ATOL, f"utterance {b}: states"
        assert not hidden[b, lengths[b] :].any()


def test_decoder_teacher_forced(imported):
    ref, model = imported.reference, imported.translator.model
    rng = np.random.default_rng(2)
    states = [ref.encode(torch.from_numpy(utterance_cmvn(x))).states for x in features()]
    prefix = [EOS] + ([ref.tgt_symbols.index(LANG_TAG)] if imported.case.lang_tag else [])
    targets = [prefix + rng.integers(4, len(ref.tgt_symbols), size=n).tolist() for n in (5, 7, 3, 6)]
    ys_in = torch.full((len(targets), max(map(len, targets))), model.eos)
    for b, tokens in enumerate(targets):
        ys_in[b, : len(tokens)] = torch.tensor([imported.target_ids[t] for t in tokens])
    ys_lengths = torch.tensor([len(t) for t in targets])
    with torch.no_grad():
        logits, _ = model.decoder(pad(states), torch.tensor([len(s) for s in states]), ys_in, ys_lengths)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    for b, tokens in enumerate(targets):
        expected = ref.decoder_log_probs(states[b], tokens)
        ours = log_probs[b, : len(tokens)][:, imported.target_ids]
        assert max_diff(ours, expected) <= ATOL, f"utterance {b}"


def test_nbest(imported):
    ref, translator = imported.reference, imported.translator
    feats = features()
    nbests = translator.translate_features(pad(feats), torch.tensor(FRAMES))
    prefix = [ref.tgt_symbols.index(LANG_TAG)] if imported.case.lang_tag else []
    lengths_seen = set()
    for b, x in enumerate(feats):
        states = ref.encode(torch.from_numpy(utterance_cmvn(x))).states
        expected = ref.beam_search(states, BEAM, ref.max_len(len(x), 0.0, MAX_LEN), prefix, NO_REPEAT)
        assert len(nbests[b]) == len(expected) == BEAM
        for rank, (hyp, (tokens, score)) in enumerate(zip(nbests[b], expected)):
            assert tokens[: len(prefix)] == prefix and tokens[-1] == EOS
            pieces = [ref.tgt_symbols[t] for t in tokens[len(prefix) : -1]]
            assert hyp.tokens == pieces, f"utterance {b}, hypothesis {rank}"
            assert abs(hyp.score - score) <= SCORE_ATOL, f"utterance {b}, hypothesis {rank}"
            lengths_seen.add(len(tokens))
    assert len(lengths_seen) >= 3  # hypotheses that end at several lengths


@pytest.mark.parametrize("prime_prefix", [True, False], ids=["primed", "stepped"])
def test_forced_prefixes_and_the_attention_along_each_path(imported, prime_prefix, monkeypatch):
    """What FBK's simultaneous agents ask of the generator: per-utterance forced prefixes (the
    tag, then committed tokens) and one decoder layer's cross-attention, averaged over heads,
    along each hypothesis' path (fairseq's ``hypo["attention"]``, shape (S, tokens incl. </s>)):
    the n-best, scores and attention of FBK's formulas, for every utterance of a batch at once
    and alone, with the forced tokens a call shares scored in one decoder pass or stepped as FBK does."""
    ref, translator = imported.reference, imported.translator
    monkeypatch.setattr(translator.beam_search, "prime_prefix", prime_prefix)
    feats = features()
    tag = [ref.tgt_symbols.index(LANG_TAG)] if imported.case.lang_tag else []
    ours_of = imported.target_ids
    fairseq_of = {ours: fs for fs, ours in enumerate(ours_of)}
    model = translator.model
    with torch.no_grad():
        enc = model.encode_with_ctc(pad(feats), torch.tensor(FRAMES))
    first = translator.beam_search(enc.hidden, enc.lengths, [MAX_LEN] * len(feats))
    committed = [  # 0, 1, 2 tokens of each utterance's best hypothesis, as a policy would commit
        [fairseq_of[t] for t in hyps[0].tokens[1 + len(tag) : 1 + len(tag) + b % 3]] for b, hyps in enumerate(first)
    ]
    prefixes = [tag + c for c in committed]
    layer = len(model.decoder.decoders) - 1
    nbests = translator.beam_search(
        enc.hidden, enc.lengths, [MAX_LEN] * len(feats), prefixes=[[ours_of[t] for t in p] for p in prefixes],
        attention_layer=layer,
    )
    for b, x in enumerate(feats):
        states = ref.encode(torch.from_numpy(utterance_cmvn(x))).states
        expected = ref.beam_search(states, BEAM, ref.max_len(len(x), 0.0, MAX_LEN), prefixes[b], NO_REPEAT)
        alone = translator.beam_search(  # all its prefix shared: primed whole
            enc.hidden[b : b + 1, : enc.lengths[b]], enc.lengths[b : b + 1], [MAX_LEN],
            prefixes=[[ours_of[t] for t in prefixes[b]]], attention_layer=layer,
        )[0]
        for hyps in (nbests[b], alone):
            assert len(hyps) == len(expected)
            for hyp, (tokens, score) in zip(hyps, expected):
                assert [fairseq_of[t] for t in hyp.tokens[1:]] == tokens and abs(hyp.score - score) <= SCORE_ATOL
                kept: list = []
                ref.decoder_log_probs(states, [EOS] + tokens[:-1], attention=kept)
                assert hyp.attention.shape == (len(states), len(tokens))
                assert max_diff(hyp.attention, kept[layer].T) <= ATOL, f"utterance {b}"
                assert torch.allclose(hyp.attention.sum(0), torch.ones(len(tokens)), atol=1e-5)


# --------------------------------------------------------------------------- no omegaconf, no fairseq

IMPORT_WITHOUT_OMEGACONF = """
import runpy, sys
sys.modules["omegaconf"] = None  # `import omegaconf` now raises ImportError
sys.modules["fairseq"] = None
from espnet2_ext.main_funcs.fbk_import import import_fbk
names = ["checkpoint", "config", "tgt_spm", "tgt_dict", "src_spm", "src_dict", "out"]
function_args, cli_args = sys.argv[1:8], sys.argv[8:]
import_fbk(*function_args)
sys.argv = ["import_fbk"] + [f"--{k}={v}" for k, v in zip(names, cli_args)]
try:
    runpy.run_module("espnet2_ext.bin.import_fbk", run_name="__main__")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
"""


def test_import_without_omegaconf_or_fairseq(tmp_path):
    """Both cfg checkpoints (``model`` a DictConfig node, and a Namespace inside the
    DictConfig) import in a process where omegaconf and fairseq cannot be imported:
    one through ``import_fbk``, one through the command line. The models match the reference."""
    runs = []
    for fmt, lang_tag in (("cfg_namespace", True), ("cfg", False)):
        files = make_fbk_checkpoint(tmp_path / fmt, strategy="avg", max_out_size=3, lang_tag=lang_tag,
                                    args_format=fmt, seed=3)
        runs.append((fmt, files, tmp_path / f"{fmt}.zip"))
    argv = [str(p) for _, files, out in runs for p in (*files[:6], out)]
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_OMEGACONF, *argv],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    x = utterance_cmvn(features()[1])
    for fmt, files, out in runs:
        translator = Speech2Translation.from_pretrained(out, cache_dir=tmp_path / "cache", beam_size=2, nbest=1)
        reference = FBKReference.from_files(files.checkpoint, files.tgt_dict, files.src_dict)
        with torch.no_grad():
            hidden, lengths, _, _ = translator.model.encoder.encode(torch.from_numpy(x)[None], torch.tensor([len(x)]))
        expected = reference.encode(torch.from_numpy(x)).states
        assert max_diff(hidden[0, : lengths[0]], expected) <= ATOL, fmt


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def fbk_files(tmp_path_factory) -> FBKFiles:
    return make_fbk_checkpoint(tmp_path_factory.mktemp("fbk"), strategy="avg", seed=0)


def _broken(files: FBKFiles, tmp_path: Path, what: str) -> FBKFiles:
    """A copy of ``files`` with one thing wrong, as a user might hand it over."""
    if what == "missing checkpoint":
        return files._replace(checkpoint=tmp_path / "no_such_ckp.pt")
    if what == "checkpoint directory":  # FBK's downloads unpack into one
        (tmp_path / "ckpts").mkdir()
        return files._replace(checkpoint=tmp_path / "ckpts")
    if what == "not a checkpoint":
        (tmp_path / "ckp.pt").write_bytes(b"this is not a torch checkpoint\n")
        return files._replace(checkpoint=tmp_path / "ckp.pt")
    if what == "dictionary of the wrong size":
        (tmp_path / "tgtdict.txt").write_text(files.tgt_dict.read_text(encoding="utf-8") + "extra 1\n",
                                              encoding="utf-8")
        return files._replace(tgt_dict=tmp_path / "tgtdict.txt")
    if what == "unknown architecture":
        state = torch.load(files.checkpoint, weights_only=False)
        state["args"].arch = "s2t_transformer_s"
        torch.save(state, tmp_path / "ckp.pt")
        return files._replace(checkpoint=tmp_path / "ckp.pt")
    raise ValueError(what)


@pytest.mark.parametrize("what, message", [
    ("missing checkpoint", "checkpoint .*no_such_ckp.pt not found"),
    ("checkpoint directory", "checkpoint .*ckpts is a directory; expected an FBK-fairseq checkpoint file"),
    ("not a checkpoint", "ckp.pt is not a readable PyTorch checkpoint"),
    ("dictionary of the wrong size", "has .* rows but the target dictionary gives"),
    ("unknown architecture", "architecture 's2t_transformer_s' is not FBK's Conformer"),
])
def test_bad_input_is_one_error_line_and_no_zip(fbk_files, tmp_path, what, message):
    files = _broken(fbk_files, tmp_path, what)
    out = tmp_path / "model.zip"
    names = ["checkpoint", "config", "tgt_spm", "tgt_dict", "src_spm", "src_dict"]
    result = subprocess.run(
        [sys.executable, "-m", "espnet2_ext.bin.import_fbk",
         *(f"--{name}={path}" for name, path in zip(names, files[:6])), f"--out={out}"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert re.search(message, errors[0]), errors[0]
    assert not out.exists() and not list(tmp_path.glob("*.zip*"))


@pytest.mark.parametrize("name, message", [
    ("checkpoint", "checkpoint {path} is a directory; expected an FBK-fairseq checkpoint file (ckp.pt)"),
    ("config", "data config {path} is a directory; expected FBK's data config file (config.yaml)"),
    ("tgt_spm", "target SentencePiece model {path} is a directory; expected a SentencePiece model file"),
    ("tgt_dict", "dictionary {path} is a directory; expected a fairseq dictionary file (dict.txt)"),
    ("src_spm", "source SentencePiece model {path} is a directory; expected a SentencePiece model file"),
    ("src_dict", "dictionary {path} is a directory; expected a fairseq dictionary file (dict.txt)"),
])
def test_directory_given_for_an_input_file_is_named_a_directory(fbk_files, tmp_path, name, message):
    """Not "not found": the path is there, it is just not a file."""
    given = tmp_path / name
    given.mkdir()
    files = fbk_files._replace(**{name: given})
    with pytest.raises(FBKImportError) as caught:
        import_fbk(*files[:6], tmp_path / "model.zip")
    assert str(caught.value).startswith(message.format(path=given)), caught.value
    assert not list(tmp_path.glob("*.zip*"))


def test_output_that_is_a_directory_is_refused_before_any_work(fbk_files, tmp_path, capsys):
    out = tmp_path / "model.zip"
    out.mkdir()
    names = ["checkpoint", "config", "tgt_spm", "tgt_dict", "src_spm", "src_dict"]
    argv = [*(f"--{name}={path}" for name, path in zip(names, fbk_files[:6])), f"--out={out}"]
    assert import_fbk_program.main(argv) == 1
    assert capsys.readouterr().err == f"ERROR: --out {out} is a directory; expected a file to write\n"


def test_non_utf8_dictionary_is_placed(tmp_path):
    from espnet2_ext.fileio.fairseq_checkpoint import FairseqCheckpointError, read_fairseq_dictionary

    path = tmp_path / "dict.txt"
    path.write_bytes(b"a 1\nb\xe9 1\n")
    with pytest.raises(FairseqCheckpointError, match=f"^{path}:2: not UTF-8: byte 0xe9 at byte offset 5 "):
        read_fairseq_dictionary(path)


# --------------------------------------------------------------------------- FBK's global CMVN statistics (--gcmvn)


def _import_argv(files: FBKFiles, out: Path, *extra: str) -> list[str]:
    names = ["checkpoint", "config", "tgt_spm", "tgt_dict", "src_spm", "src_dict"]
    return [*(f"--{name}={path}" for name, path in zip(names, files[:6])), f"--out={out}", *extra]


def test_gcmvn_is_packed_where_open_model_finds_it(fbk_files, tmp_path, capsys):
    from espnet2_ext.main_funcs.model_archive import open_model
    from espnet2_ext.simultaneous.incremental_features import load_global_cmvn

    gcmvn = tmp_path / "fbk/gcmvn.npz"
    gcmvn.parent.mkdir()
    mean, std = np.linspace(-3, 3, 80, dtype=np.float32), np.linspace(0.5, 2, 80, dtype=np.float32)
    np.savez(gcmvn, mean=mean, std=std)  # FBK's keys, as its simultaneous agents read them
    out = tmp_path / "model.zip"
    assert import_fbk_program.main(_import_argv(fbk_files, out, f"--gcmvn={gcmvn}")) == 0, capsys.readouterr().err
    packed = open_model(out, tmp_path / "cache")
    assert packed.meta["global_cmvn"] == "gcmvn.npz" and packed.global_cmvn == packed.extraction / "gcmvn.npz"
    loaded = load_global_cmvn(packed.global_cmvn)
    np.testing.assert_array_equal(loaded.mean, mean)
    np.testing.assert_array_equal(loaded.std, std)
    Speech2Translation.from_pretrained(out, cache_dir=tmp_path / "cache", beam_size=2, nbest=1)  # still loads

    without = import_fbk(*fbk_files[:6], tmp_path / "plain.zip")
    assert open_model(without, tmp_path / "cache").global_cmvn is None


@pytest.mark.parametrize("what", ["missing", "other keys"])
def test_bad_gcmvn_is_one_error_line_naming_the_option_and_no_zip(fbk_files, tmp_path, capsys, what):
    gcmvn = tmp_path / "gcmvn.npz"
    if what == "other keys":
        np.savez(gcmvn, mu=np.zeros(80), sigma=np.ones(80))
    expected = {"missing": " not found", "other keys": ": expected the keys count, sum, sum_square"}[what]
    out = tmp_path / "model.zip"
    assert import_fbk_program.main(_import_argv(fbk_files, out, f"--gcmvn={gcmvn}")) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ERROR: --gcmvn {gcmvn}{expected}") and err.count("\n") == 1, err
    with pytest.raises(FBKImportError) as caught:  # the library's own check, for callers other than the program
        import_fbk(*fbk_files[:6], out, gcmvn=gcmvn)
    assert str(caught.value).startswith(f"global CMVN statistics {gcmvn}{expected}")
    assert not list(tmp_path.glob("*.zip*"))
