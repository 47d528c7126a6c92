"""The task: building FBK's full model from the recipe config, and its preprocessing."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from espnet2_ext.layers.masked_convolution import MaskedConvolutionModule
from espnet2_ext.tasks.st_ctc_compress import ModelLoadError, STCTCCompressTask
from espnet2_ext.train.preprocessor import TooShortUtteranceError

RECIPE_CONF = Path(__file__).resolve().parents[2] / "egs" / "mustc_conformer_ctc" / "conf" / "train.yaml"
FBK_PARAMETERS = 116e6


def parse(tmp_path, *extra):
    target = tmp_path / "tokens.txt"
    target.write_text("\n".join(["<blank>", "<unk>"] + [f"t{i}" for i in range(7997)] + ["<sos/eos>"]) + "\n")
    source = tmp_path / "src_tokens.txt"
    source.write_text("\n".join(["<blank>", "<unk>"] + [f"s{i}" for i in range(4998)]) + "\n")
    argv = [
        "--config", str(RECIPE_CONF), "--token_list", str(target), "--src_token_list", str(source),
        "--input_size", "80", "--output_dir", str(tmp_path / "exp"), *extra,
    ]
    return STCTCCompressTask.get_parser().parse_args(argv)


def test_recipe_config_builds_fbk_full_size_model(tmp_path):
    model = STCTCCompressTask.build_model(parse(tmp_path))
    parameters = sum(p.numel() for p in model.parameters())
    # 114.9M: encoder 81.5M (CTC head 2.6M) + decoder 33.4M; FBK reports ~116M.
    assert abs(parameters - FBK_PARAMETERS) / FBK_PARAMETERS < 0.02, parameters
    assert model.encoder.ctc_head.out_features == 5000
    assert model.decoder.output_layer.out_features == 8000
    assert model.ctc_weight == 0.5 and model.ignore_prefix_size == 1


def test_unknown_encoder_key_is_named(tmp_path):
    args = parse(tmp_path, "--encoder_conf", "compresion=avg")
    with pytest.raises(TypeError, match="compresion"):
        STCTCCompressTask.build_model(args)


def test_source_token_list_is_required(tmp_path):
    args = parse(tmp_path)
    args.src_token_list = None
    with pytest.raises(ValueError, match="src_token_list"):
        STCTCCompressTask.build_model(args)


def test_preprocessor_rejects_too_short_features_by_utterance_name(tmp_path):
    args = parse(tmp_path, "--use_preprocessor", "false")
    preprocess = STCTCCompressTask.build_preprocess_fn(args, train=True)
    ok = {"speech": np.zeros((5, 80), dtype=np.float32)}
    assert preprocess("utt_ok", ok) is ok
    with pytest.raises(TooShortUtteranceError, match="'ted_1_0001_0004'.*4 feature frames.*at least 5"):
        preprocess("ted_1_0001_0004", {"speech": np.zeros((4, 80), dtype=np.float32)})


def test_distributed_training_sums_the_conv_modules_statistics_over_the_processes(tmp_path):
    """Built in a process group with ``sync_batchnorm`` (the default), on GPUs or on the CPU: every conv
    module adds its BatchNorm statistics over the processes (no SyncBatchNorm: ours are masked sums, see
    tests/layers/test_masked_convolution.py); outside a group, or with ``--sync_batchnorm false``, not."""
    blocks = ("--encoder_conf", "num_blocks=2", "--encoder_conf", "ctc_block=1")
    gpu, cpu = parse(tmp_path, *blocks, "--ngpu", "1"), parse(tmp_path, *blocks, "--ngpu", "0")
    apart = parse(tmp_path, *blocks, "--ngpu", "1", "--sync_batchnorm", "false")
    assert gpu.sync_batchnorm is True

    def synced(model) -> list[bool]:
        assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
        return [m.sync_statistics for m in model.modules() if isinstance(m, MaskedConvolutionModule)]

    assert synced(STCTCCompressTask.build_model(gpu)) == [False, False]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        on_gpus, on_cpu, not_asked = (STCTCCompressTask.build_model(a) for a in (gpu, cpu, apart))
    finally:
        dist.destroy_process_group()
    assert synced(on_gpus) == synced(on_cpu) == [True, True] and synced(not_asked) == [False, False]


def test_compile_option_compiles_in_place_keeping_the_checkpoint_keys(tmp_path):
    """``compile: auto`` in the recipe config: eager on the CPU, compiled with GPUs; compiled in
    place, so the weights keep their names (no ``_orig_mod.`` prefix)."""
    blocks = ("--encoder_conf", "num_blocks=2", "--encoder_conf", "ctc_block=1")
    assert parse(tmp_path).compile == "auto"
    eager = STCTCCompressTask.build_model(parse(tmp_path, *blocks, "--ngpu", "0"))
    compiled = STCTCCompressTask.build_model(parse(tmp_path, *blocks, "--ngpu", "0", "--compile", "true"))
    on_gpus = STCTCCompressTask.build_model(parse(tmp_path, *blocks, "--ngpu", "1"))
    assert eager._compiled_call_impl is None
    assert compiled._compiled_call_impl is not None and on_gpus._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    with pytest.raises(SystemExit):
        parse(tmp_path, "--compile", "maybe")


# --------------------------------------------------------------------------- strict loading


def _altered_weights(tiny_exps, tmp_path, change) -> Path:
    state = torch.load(tiny_exps / "exp_abs/1epoch.pth", weights_only=True)
    change(state)
    path = tmp_path / "altered.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.pop("decoder.output_layer.bias"),
            r"1 missing parameters \(decoder.output_layer.bias\), 0 unexpected \(\), 0 of another shape \(\)",
        ),
        (
            lambda s: s.update(extra=torch.zeros(1)),
            r"0 missing parameters \(\), 1 unexpected \(extra\), 0 of another shape \(\)",
        ),
        (
            lambda s: s.update({"encoder.ctc_head.bias": torch.zeros(3)}),
            r"0 missing parameters \(\), 0 unexpected \(\), "
            r"1 of another shape \(encoder.ctc_head.bias \(3,\) instead of \(40,\)\)",
        ),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_weights_that_do_not_fit_are_refused(tiny_exps, tmp_path, change, message):
    weights = _altered_weights(tiny_exps, tmp_path, change)
    with pytest.raises(ModelLoadError, match=f"{weights} does not fit the model its config describes: {message}"):
        STCTCCompressTask.build_model_from_file(tiny_exps / "exp_abs/config.yaml", weights)


def test_weights_file_that_is_not_a_state_dict_is_refused(tiny_exps, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match=f"^{junk} is not a readable PyTorch weights file \\(UnpicklingError: "):
        STCTCCompressTask.build_model_from_file(tiny_exps / "exp_abs/config.yaml", junk)
    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    with pytest.raises(ModelLoadError, match="holds a list, not a state dict"):
        STCTCCompressTask.build_model_from_file(tiny_exps / "exp_abs/config.yaml", listed)
