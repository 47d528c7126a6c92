"""``export_fbk`` writes what FBK-fairseq reads, and ``import_fbk`` brings it back.

Two kinds of zip, each with every compression strategy, with and without a language tag:

- ``imported``: one of FBK's checkpoints (:func:`tests.fbk_reference.make_fbk_checkpoint`)
  through ``import_fbk``. Exporting it must give FBK's own files back: the state dict
  bit for bit, the dictionaries, the SentencePiece models, the model's arguments.
- ``recipe``: a model as recipe stage 8 packs it: the recipe's own SentencePiece models
  and token lists (no ``<s>``; ``<sos/eos>`` ending the source list), random weights made
  to look trained. fairseq's ``<s>`` (and the source ``<pad>``) become rows no input reaches.

For both: the exported checkpoint, run by the plain reference of FBK's formulas
(:class:`tests.fbk_reference.FBKReference`, one utterance at a time), gives the zip's
encoder states, CTC logits and teacher-forced decoder log-probabilities within ``ATOL``
(1e-5) and its n-best (tokens, scores within ``SCORE_ATOL``); ``import_fbk`` of the export
gives back the zip's weights and the same n-best with scores.
"""

import copy
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from espnet2_ext.bin import export_fbk as export_program
from espnet2_ext.inference.speech2translation import Speech2Translation
from espnet2_ext.main_funcs.fbk_export import SINK_LOGIT, FBKExportError, export_fbk
from espnet2_ext.main_funcs.fbk_format import CTC_BLANK, FBK_DEFAULTS, SOURCE, TARGET
from espnet2_ext.main_funcs.fbk_import import import_fbk
from espnet2_ext.main_funcs.model_archive import open_model
from espnet2_ext.main_funcs.model_packing import pack_model
from tests.fbk_reference import (
    EOS,
    FRAMES,
    LANG_TAG,
    FBKReference,
    fbk_state_dict,
    features,
    make_fbk_checkpoint,
    max_diff,
    pad,
    utterance_cmvn,
)
from tests.helpers import load_recipe_script

ATOL = 1e-5
SCORE_ATOL = 1e-4
BEAM = 4
MAX_LEN = 8
NO_REPEAT = 2
SEARCH = dict(beam_size=BEAM, nbest=BEAM, no_repeat_ngram_size=NO_REPEAT, maxlen_a=0.0, maxlen_b=MAX_LEN)
FBK_FILES = ("checkpoint.pt", "config.yaml", "tgtdict.txt", "srcdict.txt", "tgtdict.model", "srcdict.model")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Case(NamedTuple):
    kind: str  # imported | recipe
    strategy: str
    max_out_size: int  # -1: none
    lang_tag: bool
    seed: int
    shared: bool = False  # tied decoder input and output embeddings


CASES = [
    Case(kind, strategy, max_out, tag, seed + (10 if kind == "recipe" else 0), shared=kind == "imported" and seed == 4)
    for kind in ("imported", "recipe")
    for strategy, max_out, tag, seed in (
        ("none", -1, False, 0), ("none", 3, True, 1), ("avg", -1, True, 2), ("avg", 3, False, 5),
        ("weighted", -1, False, 4), ("weighted", 3, True, 3), ("softmax", -1, True, 7), ("softmax", 3, False, 9),
        ("fixed", -1, False, 6), ("fixed", 3, True, 8),
    )
]


def case_id(case: Case) -> str:
    max_out = f"max{case.max_out_size}" if case.max_out_size > 0 else "nomax"
    return "-".join([case.kind, case.strategy, max_out, "tag" if case.lang_tag else "notag"]
                    + (["shared"] if case.shared else []))


# --------------------------------------------------------------------------- recipe-style zips


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> dict[bool, Path]:
    """The recipe's SentencePiece models and token lists (local/train_bpe.py), with and without a tag."""
    train = load_recipe_script("train_bpe").train
    rng = np.random.default_rng(0)
    words = "the a small large house tree river stone light night day water fire green blue talk".split()
    source = [" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(60)]
    target = [" ".join(w.capitalize() for w in s.split()[::-1]) + "." for s in source]
    dirs = {}
    for tag in (False, True):
        out = tmp_path_factory.mktemp("tagged" if tag else "untagged")
        train([f"{LANG_TAG} {t}" if tag else t for t in target], 40, out, "tgt")
        train(source, 30, out, "src")
        dirs[tag] = out
    return dirs


def recipe_config(strategy: str = "avg", max_out_size: int = -1, lang_tag: bool = False) -> dict:
    """A tiny model of conf/train.yaml's kind (its keys, FBK's arithmetic)."""
    return dict(
        encoder="ctc_compress_conformer",
        encoder_conf=dict(
            output_size=32, attention_heads=4, linear_units=128, num_blocks=3, cnn_module_kernel=7,
            subsampling_channels=32, ctc_block=2, compression=strategy,
            compression_max_out_size=max_out_size if max_out_size > 0 else None,
        ),
        decoder="fbk_transformer",
        decoder_conf=dict(attention_heads=4, linear_units=64, num_blocks=2),
        model_conf=dict(ctc_weight=0.5, lsm_weight=0.1, ignore_prefix_size=1 if lang_tag else 0),
        normalize="utterance_cmvn",
        specaug="specaug",
        specaug_conf=dict(apply_time_warp=False, freq_mask_width_range=[0, 5], num_freq_mask=1,
                          time_mask_width_range=[0, 10], num_time_mask=1),
    )


def look_trained(model: nn.Module, seed: int) -> None:
    """Random weights as a trained model's differ from an initialisation: LayerNorm and BatchNorm
    gains and biases away from 1 and 0, running statistics, a CTC head favouring the blank."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
                size = module.weight.shape
                module.weight.copy_(1 + 0.1 * torch.randn(size, generator=gen))
                module.bias.copy_(0.1 * torch.randn(size, generator=gen))
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.copy_(0.3 * torch.randn(module.running_mean.shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=gen))
        model.encoder.ctc_head.bias[0] += 3.0  # runs of several frames, as a trained head's


def recipe_zip(work: Path, pieces: Path, config: dict, seed: int = 0, trained: bool = True,
               stats: Path | None = None, pack_stats: bool = False) -> Path:
    """``config.yaml`` and weights as ESPnet's trainer writes them, packed by stage 8's function
    (``stats``: stage 4's statistics, for ``normalize: global_mvn`` and, ``pack_stats``, run.sh's --global_cmvn)."""
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet2_ext.tasks.st_ctc_compress import STCTCCompressTask

    exp = work / "exp"
    exp.mkdir(parents=True)
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    stats_file = ["--normalize_conf", f"stats_file={stats}"] if config.get("normalize") == "global_mvn" else []
    args = STCTCCompressTask.get_parser().parse_args([
        "--config", str(work / "train.yaml"), "--input_size", "20", "--output_dir", str(exp),
        "--token_type", "bpe", "--bpemodel", str(pieces / "tgt.model"), "--token_list", str(pieces / "tgt_tokens.txt"),
        "--src_token_type", "bpe", "--src_bpemodel", str(pieces / "src.model"),
        "--src_token_list", str(pieces / "src_tokens.txt"), *stats_file,
    ])
    torch.manual_seed(seed)
    model = STCTCCompressTask.build_model(args)
    if trained:
        look_trained(model, seed)
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml_no_alias_safe_dump(vars(args), indent=4, sort_keys=False))
    pack_model(exp, exp / "model.pth", work / "model.zip", global_cmvn=stats if pack_stats else None)
    return work / "model.zip"


# --------------------------------------------------------------------------- the round trip


class Exported(NamedTuple):
    case: Case
    zip: Path
    out: Path  # export_fbk's directory
    translator: Speech2Translation  # the zip
    back: Speech2Translation  # import_fbk of the export
    reference: FBKReference  # the exported checkpoint, by FBK's formulas
    fbk_files: object  # the original FBK files (imported kind), else None


def _import(out: Path, zip_path: Path) -> Path:
    return import_fbk(out / "checkpoint.pt", out / "config.yaml", out / "tgtdict.model", out / "tgtdict.txt",
                      out / "srcdict.model", out / "srcdict.txt", zip_path)


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def exported(request, tmp_path_factory, pieces) -> Exported:
    case = request.param
    work = tmp_path_factory.mktemp(case_id(case))
    fbk_files = None
    if case.kind == "imported":
        fbk_files = make_fbk_checkpoint(
            work / "fbk", strategy=case.strategy, max_out_size=case.max_out_size, lang_tag=case.lang_tag,
            share_embeddings=case.shared, eos_scale=2.0, seed=case.seed,
        )
        zip_path = import_fbk(*fbk_files[:6], work / "model.zip")
    else:
        config = recipe_config(case.strategy, case.max_out_size, case.lang_tag)
        zip_path = recipe_zip(work / "recipe", pieces[case.lang_tag], config, seed=case.seed)
    out = export_fbk(zip_path, work / "fbk_export", cache_dir=work / "cache")
    back = _import(out, work / "back.zip")
    load = lambda path: Speech2Translation.from_pretrained(path, cache_dir=work / "cache", **SEARCH)  # noqa: E731
    reference = FBKReference.from_files(out / "checkpoint.pt", out / "tgtdict.txt", out / "srcdict.txt")
    return Exported(case, zip_path, out, load(zip_path), load(back), reference, fbk_files)


def our_rows(tokens: list[str], layout) -> list[int | None]:
    """Our row of each fairseq id of the exported dictionary."""
    return layout.split(tokens)[1]


def test_exported_files(exported):
    assert sorted(p.name for p in exported.out.iterdir()) == sorted(FBK_FILES)  # no gcmvn: none packed
    data = yaml.safe_load((exported.out / "config.yaml").read_text())
    assert data["transforms"]["*"] == ["utterance_cmvn"] and data["vocab_filename_src"] == "srcdict.txt"
    assert data.get("prepend_tgt_lang_tag", False) is exported.case.lang_tag
    checkpoint = torch.load(exported.out / "checkpoint.pt", weights_only=False)
    args = vars(checkpoint["args"])
    assert args["ctc_compress_strategy"] == exported.case.strategy
    assert args["ctc_compress_max_out_size"] == exported.case.max_out_size
    assert args["share_decoder_input_output_embed"] is exported.case.shared
    # FBK's parameter names and shapes, as tests.fbk_reference builds them for these arguments
    sizes = [len(exported.reference.tgt_symbols), len(exported.reference.src_symbols)]
    expected = fbk_state_dict(checkpoint["args"], *sizes, seed=0)
    assert {k: v.shape for k, v in checkpoint["model"].items()} == {k: v.shape for k, v in expected.items()}


def test_exported_files_are_their_sources(exported):
    """An imported model gives FBK's own files back; a recipe's, its SentencePiece models and token lists."""
    out = exported.out
    written = torch.load(out / "checkpoint.pt", weights_only=False)
    if exported.case.kind == "imported":
        files = exported.fbk_files
        original = torch.load(files.checkpoint, weights_only=False)
        assert set(written["model"]) == set(original["model"])
        for name, tensor in original["model"].items():
            assert torch.equal(written["model"][name], tensor), name
        for key in (*FBK_DEFAULTS, "arch", "criterion"):
            assert vars(written["args"])[key] == files.args[key], key
        sources = {"tgtdict.txt": files.tgt_dict, "srcdict.txt": files.src_dict,
                   "tgtdict.model": files.tgt_spm, "srcdict.model": files.src_spm}
    else:
        model = exported.translator.model
        entries = {"tgtdict.txt": model.token_list[2:-1], "srcdict.txt": model.src_token_list[2:-1]}
        for name, tokens in entries.items():
            assert (out / name).read_text() == "".join(f"{t} 1\n" for t in tokens), name
        config = open_model(exported.zip, out.parent / "cache").config
        sources = {"tgtdict.model": Path(config["bpemodel"]), "srcdict.model": Path(config["src_bpemodel"])}
    for name, source in sources.items():
        assert (out / name).read_bytes() == source.read_bytes(), name


def _back_row(token: str, back_tokens: list[str], source_side: bool) -> int:
    """Where import_fbk puts our token: a recipe's source <sos/eos> comes back as fairseq's </s>."""
    return back_tokens.index("</s>" if source_side and token == "<sos/eos>" else token)


def test_import_gives_back_the_weights(exported):
    ours, back = exported.translator.model, exported.back.model
    state, back_state = ours.state_dict(), back.state_dict()
    assert set(state) == set(back_state)
    by_rows = {"decoder.embed.weight": False, "decoder.output_layer.weight": False,
               "encoder.ctc_head.weight": True, "encoder.ctc_head.bias": True}  # name -> source side
    for name, tensor in state.items():
        if name not in by_rows:
            assert torch.equal(back_state[name], tensor), name
            continue
        tokens, back_tokens = ((ours.src_token_list, back.src_token_list) if by_rows[name]
                               else (ours.token_list, back.token_list))
        for row, token in enumerate(tokens):
            assert torch.equal(back_state[name][_back_row(token, back_tokens, by_rows[name])], tensor[row]), name
    if exported.case.kind == "imported":
        assert ours.token_list == back.token_list and ours.src_token_list == back.src_token_list
    else:  # the recipe's lists gain the specials fairseq always has
        assert back.token_list == ["<blank>", "<unk>", *ours.token_list[2:-1], "<s>", "<sos/eos>"]
        assert back.src_token_list == ["<blank>", "<unk>", *ours.src_token_list[2:-1], "<s>", "<pad>", "</s>"]


def test_import_gives_back_the_model_settings(exported):
    config = open_model(exported.zip, exported.out.parent / "cache").config
    back = open_model(exported.out.parent / "back.zip", exported.out.parent / "cache").config
    for key in ("input_size", "encoder", "decoder", "normalize"):
        assert back[key] == config[key], key
    for section in ("encoder_conf", "decoder_conf"):
        assert {k: back[section][k] for k in config[section]} == config[section], section
    for key in ("ctc_weight", "lsm_weight", "ignore_prefix_size"):
        assert back["model_conf"][key] == config["model_conf"][key], key


def test_import_gives_back_the_nbest_with_scores(exported):
    feats = features()
    ours = exported.translator.translate_features(pad(feats), torch.tensor(FRAMES))
    back = exported.back.translate_features(pad(feats), torch.tensor(FRAMES))
    exact = exported.case.kind == "imported"  # the same model; a recipe's gains rows of logit SINK_LOGIT
    for b in range(len(feats)):
        assert [h.tokens for h in back[b]] == [h.tokens for h in ours[b]], f"utterance {b}"
        for hyp, expected in zip(back[b], ours[b]):
            assert hyp.score == expected.score if exact else abs(hyp.score - expected.score) <= ATOL


# --------------------------------------------------------------------------- the exported checkpoint by FBK's formulas


def test_reference_encoder_and_ctc(exported):
    ref, model = exported.reference, exported.translator.model
    rows = our_rows(model.src_token_list, SOURCE)
    kept = [f for f, row in enumerate(rows) if row is not None]
    feats = features()
    with torch.no_grad():
        normalised, lengths = model.normalize(pad(feats), torch.tensor(FRAMES))
        hidden, out_lengths, ctc_logits, ctc_lengths = model.encoder.encode(normalised, lengths)
    for b, x in enumerate(feats):
        expected = ref.encode(torch.from_numpy(utterance_cmvn(x)))
        assert int(ctc_lengths[b]) == expected.ctc_logits.size(0)
        ours = ctc_logits[b, : ctc_lengths[b]][:, [rows[f] for f in kept]]
        assert max_diff(ours, expected.ctc_logits[:, kept]) <= ATOL, f"utterance {b}: CTC logits"
        sinks = [f for f, row in enumerate(rows) if row is None]
        assert torch.equal(expected.ctc_logits[:, sinks], torch.full((len(ours), len(sinks)), SINK_LOGIT))
        assert int(out_lengths[b]) == expected.states.size(0), f"utterance {b}: runs {expected.runs}"
        assert max_diff(hidden[b, : out_lengths[b]], expected.states) <= ATOL, f"utterance {b}: states"
    assert ref.src_symbols[-1] == CTC_BLANK


def test_reference_decoder(exported):
    ref, model = exported.reference, exported.translator.model
    rows = our_rows(model.token_list, TARGET)
    kept = [f for f, row in enumerate(rows) if row is not None]
    rng = np.random.default_rng(2)
    states = [ref.encode(torch.from_numpy(utterance_cmvn(x))).states for x in features()]
    prefix = [EOS] + ([ref.tgt_symbols.index(LANG_TAG)] if exported.case.lang_tag else [])
    targets = [prefix + rng.integers(4, len(ref.tgt_symbols), size=n).tolist() for n in (5, 7, 3, 6)]
    ys_in = torch.full((len(targets), max(map(len, targets))), model.eos)
    for b, tokens in enumerate(targets):
        ys_in[b, : len(tokens)] = torch.tensor([rows[t] for t in tokens])
    with torch.no_grad():
        logits, _ = model.decoder(pad(states), torch.tensor([len(s) for s in states]), ys_in,
                                  torch.tensor([len(t) for t in targets]))
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    for b, tokens in enumerate(targets):
        expected = ref.decoder_log_probs(states[b], tokens)
        ours = log_probs[b, : len(tokens)][:, [rows[f] for f in kept]]
        assert max_diff(ours, expected[:, kept]) <= ATOL, f"utterance {b}"
        assert bool((expected[:, [f for f in range(len(rows)) if rows[f] is None]] < SINK_LOGIT / 2).all())


def test_reference_nbest(exported):
    ref, translator = exported.reference, exported.translator
    feats = features()
    nbests = translator.translate_features(pad(feats), torch.tensor(FRAMES))
    prefix = [ref.tgt_symbols.index(LANG_TAG)] if exported.case.lang_tag else []
    for b, x in enumerate(feats):
        states = ref.encode(torch.from_numpy(utterance_cmvn(x))).states
        expected = ref.beam_search(states, BEAM, ref.max_len(len(x), 0.0, MAX_LEN), prefix, NO_REPEAT)
        assert len(nbests[b]) == len(expected) == BEAM
        for rank, (hyp, (tokens, score)) in enumerate(zip(nbests[b], expected)):
            assert hyp.tokens == [ref.tgt_symbols[t] for t in tokens[len(prefix) : -1]], f"utterance {b}, {rank}"
            assert abs(hyp.score - score) <= SCORE_ATOL, f"utterance {b}, hypothesis {rank}"


# --------------------------------------------------------------------------- global CMVN statistics


def test_fbk_gcmvn_goes_out_and_comes_back(tmp_path):
    """FBK's gcmvn.npz packed by import_fbk is written as FBK's extract_gcmvn.py writes it and named
    by config.yaml's global_cmvn (where FBK's agents read it); importing it again packs the same numbers."""
    from espnet2_ext.simultaneous.incremental_features import load_global_cmvn

    files = make_fbk_checkpoint(tmp_path / "fbk", strategy="avg", seed=0)
    mean, std = np.linspace(-3, 3, 80, dtype=np.float32), np.linspace(0.5, 2, 80, dtype=np.float32)
    np.savez(tmp_path / "gcmvn.npz", mean=mean, std=std)
    zip_path = import_fbk(*files[:6], tmp_path / "model.zip", gcmvn=tmp_path / "gcmvn.npz")
    out = export_fbk(zip_path, tmp_path / "out", cache_dir=tmp_path / "cache")
    with np.load(out / "gcmvn.npz") as written:
        assert sorted(written.files) == ["mean", "std"]
        assert written["mean"].dtype == written["std"].dtype == np.float32
        np.testing.assert_array_equal(written["mean"], mean)
        np.testing.assert_array_equal(written["std"], std)
    assert yaml.safe_load((out / "config.yaml").read_text())["global_cmvn"] == {"stats_npz_path": "gcmvn.npz"}
    back = import_fbk(out / "checkpoint.pt", out / "config.yaml", out / "tgtdict.model", out / "tgtdict.txt",
                      out / "srcdict.model", out / "srcdict.txt", tmp_path / "back.zip", gcmvn=out / "gcmvn.npz")
    stats = load_global_cmvn(open_model(back, tmp_path / "cache").global_cmvn)
    np.testing.assert_array_equal(stats.mean, mean)
    np.testing.assert_array_equal(stats.std, std)


def test_espnet_statistics_are_written_as_fbk_mean_and_std(tmp_path, pieces):
    """A recipe zip packs stage 4's feats_stats.npz (count, sum, sum_square): exported as the mean
    and std simultaneous translation here normalises with, in float32."""
    from espnet2_ext.simultaneous.incremental_features import load_global_cmvn

    stats = tmp_path / "feats_stats.npz"
    rng = np.random.default_rng(0)
    count, mean, std = 5000, rng.normal(5, 2, 80), rng.uniform(1, 3, 80)
    np.savez(stats, count=np.array(count), sum=mean * count, sum_square=(std**2 + mean**2) * count)
    zip_path = recipe_zip(tmp_path / "recipe", pieces[False], recipe_config(), stats=stats, pack_stats=True)
    out = export_fbk(zip_path, tmp_path / "out", cache_dir=tmp_path / "cache")
    expected = load_global_cmvn(stats)
    with np.load(out / "gcmvn.npz") as written:
        assert written["mean"].dtype == np.float32
        np.testing.assert_array_equal(written["mean"], expected.mean)
        np.testing.assert_array_equal(written["std"], expected.std)
        np.testing.assert_allclose(written["std"], std, rtol=1e-6)


# --------------------------------------------------------------------------- what is refused


def _merged(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


@pytest.mark.parametrize("overrides, trained, message", [
    (dict(encoder_conf=dict(rel_pos_type="latest")), True,
     "encoder_conf.rel_pos_type: latest is ESPnet's attention (FBK's is fbk)"),
    (dict(decoder="transformer"), True, "decoder: transformer is ESPnet's decoder (FBK's is fbk_transformer)"),
    (dict(normalize="global_mvn"), True, "normalize: global_mvn (export_fbk writes utterance_cmvn, FBK's, or none)"),
    (dict(normalize_conf=dict(eps=1e-5)), True, "normalize_conf.eps: 1e-05 (FBK's utterance_cmvn floors"),
    (dict(encoder_conf=dict(linear_units=100)), True, "encoder_conf.linear_units: 100 (FBK's is a multiple of"),
    (dict(encoder_conf=dict(rel_pos_type="latest"), decoder="transformer"), True,
     "rel_pos_type: latest is ESPnet's attention (FBK's is fbk); decoder: transformer is ESPnet's decoder"),
    ({}, False, "fairseq's target dictionary starts with <s>, which token_list lacks, and its output row cannot get "
                "a logit of -100 for every input: decoder.after_norm's bias is about 0 (an untrained model?)"),
], ids=["latest", "transformer", "global_mvn", "cmvn_eps", "ffn_size", "two", "untrained"])
def test_what_fbk_cannot_hold_is_one_error_line_and_nothing_written(tmp_path, pieces, capsys, overrides, trained,
                                                                     message):
    stats = tmp_path / "feats_stats.npz"
    np.savez(stats, count=np.array(10), sum=np.full(20, 50.0), sum_square=np.full(20, 300.0))
    config = _merged(recipe_config(), overrides)
    zip_path = recipe_zip(tmp_path / "recipe", pieces[False], config, trained=trained, stats=stats)
    out = tmp_path / "out" / "fbk"
    assert export_program.main(["--model", str(zip_path), "--out", str(out), "--cache_dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ERROR: ") and message in err, err
    assert not out.exists() and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def small_zip(tmp_path_factory, pieces) -> Path:
    return recipe_zip(tmp_path_factory.mktemp("small"), pieces[True], recipe_config(lang_tag=True))


@pytest.mark.parametrize("what", ["missing zip", "not a zip", "out is a file", "out not empty", "out unwritable"])
def test_bad_model_or_out_is_one_error_line(small_zip, tmp_path, capsys, what):
    model, out = small_zip, tmp_path / "fbk"
    if what == "missing zip":
        model = tmp_path / "no_such.zip"
        expected = f"ERROR: model {model} not found"
    elif what == "not a zip":
        model = tmp_path / "model.zip"
        model.write_text("not a zip\n")
        expected = f"ERROR: {model}"
    elif what == "out is a file":
        out.write_text("mine\n")
        expected = f"ERROR: --out {out} exists and is not a directory"
    elif what == "out not empty":
        out.mkdir()
        (out / "mine.txt").write_text("mine\n")
        expected = f"ERROR: --out {out} exists and is not empty (--overwrite replaces it)"
    else:
        out = Path("/proc/nope/fbk")
        expected = "ERROR: --out /proc/nope/fbk: cannot create directories in /proc"
    before = sorted(tmp_path.rglob("*"))
    assert export_program.main(["--model", str(model), "--out", str(out), "--cache_dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1, err
    assert sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "c")) == before


def test_overwrite_replaces_the_directory_and_an_empty_one_is_used(small_zip, tmp_path, capsys):
    out = tmp_path / "fbk"
    out.mkdir()
    assert export_program.main(["--model", str(small_zip), "--out", str(out), "--cache_dir", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    (out / "mine.txt").write_text("mine\n")
    assert export_program.main(["--model", str(small_zip), "--out", str(out), "--overwrite",
                                "--cache_dir", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FBK_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "fbk"]  # no temporary directory left
    with pytest.raises(FBKExportError, match="exists and is not empty"):
        export_fbk(small_zip, tmp_path)  # the library refuses too, for callers other than the program


def test_dropouts_fbk_keeps_once_are_named_in_a_warning(tmp_path, pieces, caplog):
    config = _merged(recipe_config(), dict(decoder_conf=dict(dropout_rate=0.3)))
    zip_path = recipe_zip(tmp_path / "recipe", pieces[False], config)
    out = export_fbk(zip_path, tmp_path / "out", cache_dir=tmp_path / "cache")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "FBK keeps once" in r.getMessage()]
    assert warnings == ["training-only settings FBK keeps once, written as the first: decoder_conf.dropout_rate 0.3 "
                        "(FBK's dropout is encoder_conf.positional_dropout_rate's 0.1)"]
    args = vars(torch.load(out / "checkpoint.pt", weights_only=False)["args"])
    assert args["dropout"] == 0.1 and args["activation_dropout"] == 0.3
