"""Train a tiny model on espeak-ng speech with ESPnet's trainer, then decode it.

Training is the ``trained`` fixture (``tests/conftest.py``), shared with the tests
of translation from a packed model.
"""

import kaldiio
import numpy as np
import torch
import yaml
from espnet2.train.reporter import Reporter

from espnet2_ext.inference.speech2translation import Speech2Translation
from tests.helpers import DECODE_SEARCH, decode_dump


def test_collect_stats_wrote_global_cmvn_and_shapes(trained):
    work, _, dump = trained
    stats = np.load(work / "stats/train/feats_stats.npz")
    assert stats["sum"].shape == (80,) and stats["count"] == sum(
        m.shape[0] for _, m in kaldiio.load_scp_sequential(str(dump / "train/feats.scp"))
    )


def test_training_lowers_the_loss(trained):
    _, exp, _ = trained
    epochs = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))["max_epoch"]
    reporter = Reporter()
    reporter.load_state_dict(torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"])
    assert reporter.get_epoch() == epochs
    first = reporter.get_value("train", "loss", 1)
    last = reporter.get_value("train", "loss", epochs)
    assert last < 0.8 * first, (first, last)
    assert reporter.get_value("valid", "loss", epochs) < reporter.get_value("valid", "loss", 1)
    logged = set(reporter.get_keys2("train"))
    assert {"loss_ce", "loss_ctc", "acc", "compression_ratio", "ctc_infeasible"} <= logged


def test_decoding_at_batch_1_and_10_gives_identical_hypotheses(trained):
    work, exp, dump = trained
    single = decode_dump(exp, dump / "tst-COMMON", work / "decode_b1", batch_size=1)
    batched = decode_dump(exp, dump / "tst-COMMON", work / "decode_b10", batch_size=10)
    assert len(single) == 12
    assert single == batched
    assert any(text.strip() for text in single.values())
    assert not any("<lang:" in text for text in single.values())


def test_reloaded_model_decodes_the_same(trained):
    work, exp, dump = trained
    reference = decode_dump(exp, dump / "tst-COMMON", work / "decode_ref", batch_size=4)
    translator = Speech2Translation(exp / "config.yaml", exp / "valid.loss.best.pth", **DECODE_SEARCH)
    for key, feats in kaldiio.load_scp_sequential(str(dump / "tst-COMMON/feats.scp")):
        speech = torch.tensor(feats).unsqueeze(0)
        (best, *_), = translator.translate_features(speech, torch.tensor([len(feats)]))
        assert best.text == reference[key], key
        assert best.token_ids and best.token_ids[0] != translator.primer[1]
