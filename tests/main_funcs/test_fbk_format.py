"""The one description of FBK's checkpoint format reads both ways: what import_fbk maps one way,
export_fbk maps back to the same names, rows and tensors."""

import argparse
import re

import pytest
import torch

from espnet2_ext.main_funcs.fbk_format import (
    CONSTANT_NAMES,
    FBK_DEFAULTS,
    SOURCE,
    TARGET,
    is_constant,
    our_model_settings,
    rename,
    to_fbk_tensor,
    to_our_tensor,
)
from espnet2_ext.tasks.model_building import build_st_model
from tests.fbk_reference import fbk_model_namespace, fbk_state_dict


@pytest.mark.parametrize("layout", [TARGET, SOURCE], ids=["target", "source"])
def test_split_undoes_our_tokens(layout):
    entries = ["▁a", "b", "<lang:de>", "c"]
    tokens, fairseq_ids = layout.our_tokens(entries), layout.fairseq_ids(entries)
    assert sorted(fairseq_ids) == list(range(len(tokens)))
    back, rows = layout.split(tokens)
    assert back == entries
    assert [rows[fairseq_id] for fairseq_id in fairseq_ids] == list(range(len(tokens)))


def test_a_recipe_token_list_lacks_rows_fairseq_has():
    assert TARGET.split(["<blank>", "<unk>", "a", "b", "<sos/eos>"]) == (["a", "b"], [None, 0, 4, 1, 2, 3])
    assert SOURCE.split(["<blank>", "<unk>", "a", "<sos/eos>"]) == (["a"], [None, None, 3, 1, 2, 0])


@pytest.mark.parametrize("tokens, message", [
    (["<blank>", "a", "a", "<sos/eos>"], "token 'a' appears twice (rows 1 and 2)"),
    (["<blank>", "</s>", "a", "<sos/eos>"], "tokens '</s>' and '<sos/eos>' both stand for fairseq's </s>"),
])
def test_split_refuses_ambiguous_lists(tokens, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SOURCE.split(tokens)


def test_every_fbk_parameter_renames_there_and_back():
    """Every name of FBK's Conformer (tests.fbk_reference builds them all) has one of ours, which
    renames back to it; together they are our model's state dict, for the same arguments; and
    each tensor's transformation is undone by its inverse."""
    namespace = fbk_model_namespace()
    state = fbk_state_dict(namespace, tgt_size=12, src_size=9, seed=0)
    renamed = {}
    for name, tensor in state.items():
        if is_constant(name):
            continue
        ours = rename(name, "to_ours")
        assert ours is not None and rename(ours, "to_fbk") == name, name
        assert torch.equal(to_fbk_tensor(name, to_our_tensor(name, tensor)), tensor), name
        renamed[ours] = to_our_tensor(name, tensor).shape
    args = {**FBK_DEFAULTS, **vars(namespace), "conv_kernel_sizes": [5, 5]}
    model = build_st_model(argparse.Namespace(
        **our_model_settings(args), token_list=[f"t{i}" for i in range(12)], src_token_list=[f"s{i}" for i in range(9)],
        frontend=None, frontend_conf={}, specaug=None, normalize=None,
    ))
    assert renamed == {name: value.shape for name, value in model.state_dict().items()}
    assert {name for name in state if is_constant(name)} >= {CONSTANT_NAMES[1], CONSTANT_NAMES[2]}
    assert rename("encoder.no_such_layer.weight", "to_ours") is None
