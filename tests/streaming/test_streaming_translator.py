"""StreamingTranslator beyond FBK: how pushes are cut changes nothing, the audio history is
capped, and a history without speech writes nothing and is cut (the text history with it)."""

import numpy as np
import pytest

from espnet2_ext.main_funcs.fbk_import import import_fbk
from espnet2_ext.simultaneous.options import SimulOptionsError
from espnet2_ext.streaming.options import StreamOptions
from espnet2_ext.streaming.translator import StreamingTranslator
from tests.fbk_reference import make_fbk_checkpoint

RATE = 16000
SETTING = dict(
    policy="alignatt", frame_num=2, attention_layer=1, segment_ms=400, cmvn="global", beam_size=3, maxlen_b=24,
    history="words", history_words=3,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_zip(tmp_path_factory):
    """The random FBK-format model that writes early and cuts audio on these talks (seed 11)."""
    folder = tmp_path_factory.mktemp("fbk_model")
    files = make_fbk_checkpoint(folder / "fbk", strategy="none", seed=11, eos_scale=0.5, input_size=80)
    np.savez(folder / "gcmvn.npz", mean=np.linspace(8, 12, 80, dtype=np.float32),
             std=np.linspace(2, 4, 80, dtype=np.float32))
    return import_fbk(*files[:6], folder / "model.zip", gcmvn=folder / "gcmvn.npz")


def run(translator: StreamingTranslator, samples: np.ndarray, piece: int) -> tuple[list, list[float]]:
    """(word, time) of every word, and the audio history after each push."""
    translator.reset()
    history = []
    for start in range(0, len(samples), piece):
        translator.push(samples[start : start + piece])
        history.append(translator.history_seconds)
    translator.finish()
    return [(w.text, w.time) for w in translator.words], history


def test_how_a_talk_is_cut_into_pushes_changes_nothing(model_zip, talks, tmp_path):
    translator = StreamingTranslator.from_pretrained(model_zip, tmp_path, **SETTING)
    expected, _ = run(translator, talks[0], 6400)
    assert len(expected) > 5
    assert run(translator, talks[0], 160)[0] == expected
    assert run(translator, talks[0], 9999)[0] == expected


def test_the_audio_history_never_exceeds_its_cap(model_zip, talks, tmp_path):
    """With 20 words of history this model keeps more than 2 s; the cap holds it at 2 s,
    and the stream goes on writing."""
    talk = np.concatenate(talks)
    free = StreamingTranslator.from_pretrained(model_zip, tmp_path, **{**SETTING, "history_words": 20})
    assert max(run(free, talk, 6400)[1]) > 3.0
    capped = StreamingTranslator.from_pretrained(
        model_zip, tmp_path, **{**SETTING, "history_words": 20, "max_history_seconds": 2.0}
    )
    words, history = run(capped, talk, 6400)
    assert max(history) <= 2.0 + 0.4  # the cap, and one chunk received since the last step
    assert sum(time < len(talk) / RATE for _, time in words) > 5


def test_silence_and_noise_write_nothing_and_the_next_speech_starts_afresh(model_zip, talks, tmp_path):
    """Two minutes without speech (digital silence, then noise) between two talks: once the
    pause is long enough (2 s and the voice-activity check's lag), what was pending is written
    and then nothing more; the audio history shrinks to a lead of under a second and stays
    there, and the text history is emptied."""
    rng = np.random.default_rng(0)
    silence = np.zeros(60 * RATE, dtype=np.float32)
    noise = (0.02 * rng.standard_normal(60 * RATE)).astype(np.float32)
    stream = np.concatenate([talks[0], silence, noise, talks[1]])
    translator = StreamingTranslator.from_pretrained(model_zip, tmp_path, **SETTING)
    translator.reset()
    gap = (len(talks[0]) / RATE + 2.0 + 1.0, (len(talks[0]) + 2 * 60 * RATE) / RATE)
    in_gap = []
    for start in range(0, len(stream), 6400):
        words = translator.push(stream[start : start + 6400])
        if gap[0] <= translator.seconds_received <= gap[1]:
            in_gap.append((translator.history_seconds, len(translator.text_history), words))
    translator.finish()
    assert all(not words for _, _, words in in_gap)
    assert max(seconds for seconds, _, _ in in_gap) < 1.0
    assert all(kept == 0 for _, kept, _ in in_gap)
    assert any(w.time > gap[1] for w in translator.words)  # the second talk is translated


def test_a_stream_needs_a_policy_that_reads_attention_and_a_history():
    with pytest.raises(SimulOptionsError, match="needs a policy that reads the cross-attention"):
        StreamOptions.checked(policy="waitk", history="words")
    with pytest.raises(SimulOptionsError, match="history_words must be an integer >= 1"):
        StreamOptions.checked(history="words", history_words=0)
    with pytest.raises(SimulOptionsError, match="max_history_seconds must be a number of seconds > 0"):
        StreamOptions.checked(history="words", max_history_seconds=0)
    assert StreamOptions.checked(history="punctuation", frame_num=4).describe() == "alignatt_f4_punct"
    assert StreamOptions.checked(history="words", history_words=20).describe() == "alignatt_f4_words20"
