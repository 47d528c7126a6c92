"""SimultaneousTranslator on the tiny trained model (ESPnet's decoder, a language tag, CTC compression)."""

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_ext.bin import pack_model
from espnet2_ext.inference.speech2translation import Speech2Translation, pad_features
from espnet2_ext.simultaneous.evaluation import simulate_instance
from espnet2_ext.simultaneous.live import LiveTranslator
from espnet2_ext.simultaneous.options import SimulOptions, SimulOptionsError
from espnet2_ext.simultaneous.translator import SimultaneousTranslator
from espnet2_ext.utils.fbank import compute_fbank
from espnet2_ext.utils.resampling import StreamResampler

LAYER = 1  # of the tiny decoder's 2
SEARCH = dict(beam_size=3, maxlen_b=40)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def offline(packed_trained, cache) -> Speech2Translation:
    return Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, no_repeat_ngram_size=0, **SEARCH)


def simultaneous(offline: Speech2Translation, **options) -> SimultaneousTranslator:
    values = dict(attention_layer=LAYER, cmvn="prefix", segment_ms=300, **SEARCH)
    return SimultaneousTranslator(offline, SimulOptions.checked(**{**values, **options}))


@pytest.fixture(scope="module")
def audio(clips) -> list[np.ndarray]:
    return [sf.read(path, dtype="float32")[0] for path in sorted(clips.values())[:4]]


def run(translator: SimultaneousTranslator, samples: np.ndarray, piece: int) -> list[tuple[str, float]]:
    """Push ``samples`` in pieces of ``piece`` samples, finish; (word, time) of every word."""
    translator.reset()
    for start in range(0, len(samples), piece):
        translator.push(samples[start : start + piece])
    translator.finish()
    return [(word.text, word.time) for word in translator.words]


@pytest.mark.parametrize("policy", ["alignatt", "edatt", "la", "waitk"])
def test_how_audio_is_cut_into_pushes_changes_nothing(offline, audio, policy):
    """The policy runs once per segment_ms of audio however it arrives: 10 ms pieces,
    segment-sized ones, or odd sizes give the same words at the same times."""
    translator = simultaneous(offline, policy=policy, frame_num=1, waitk=1, segment_factor=2)
    samples = audio[0]
    expected = run(translator, samples, 4800)  # one segment (300 ms) per push
    assert run(translator, samples, 160) == expected
    assert run(translator, samples, 7777) == expected
    assert all(round(time / 0.3, 6).is_integer() or time == len(samples) / 16000 for _, time in expected)


def test_a_policy_that_never_commits_gives_the_offline_translation_at_the_end(offline, audio):
    """AlignAtt with every position banned reads to the end; the last search then forces only
    the tag, so the words are the offline translation (same beam, no n-gram rule), all at |X|."""
    translator = simultaneous(offline, frame_num=10_000)
    for samples in audio:
        record = simulate_instance(translator, samples, 0, "clip", "")
        (nbest,) = offline.translate_features(*pad_features([compute_fbank(samples, 16000)]))
        assert record.prediction == nbest[0].text
        assert set(record.delays) <= {1000 * len(samples) / 16000}


def test_words_come_before_the_end_and_times_only_grow(offline, audio):
    """(The tiny model's CTC merges a clip into one or two positions, too few for AlignAtt
    to write early: test_fbk_agent.py checks that on uncompressed encoders.)"""
    translator = simultaneous(offline, policy="waitk", waitk=1, segment_factor=2)
    early = 0
    for samples in audio:
        record = simulate_instance(translator, samples, 0, "clip", "")
        assert list(record.delays) == sorted(record.delays)
        assert all(e >= d for d, e in zip(record.delays, record.elapsed))
        early += sum(d < record.source_length for d in record.delays)
    assert early > 0


def test_push_returns_what_it_commits_and_finish_the_rest(offline, audio):
    translator = simultaneous(offline, policy="waitk", waitk=1, segment_factor=2)
    samples = audio[0]
    pushed = translator.push(samples[: len(samples) // 2])
    rest = translator.finish(samples[len(samples) // 2 :])
    assert [w.text for w in pushed + rest] == translator.text.split()
    assert all(w.time <= len(samples) / 32000 + 1e-9 for w in pushed)
    assert all(w.time == len(samples) / 16000 for w in rest)
    with pytest.raises(RuntimeError, match="reset"):
        translator.push(samples)


def test_short_audio_and_silence_give_no_words_and_no_error(offline, audio):
    translator = simultaneous(offline)
    for samples in (np.zeros(16000, dtype=np.float32), audio[0][:400], np.full(8000, 1e-5, dtype=np.float32)):
        record = simulate_instance(translator, samples, 0, "x", "ref")
        assert record.prediction == "" and record.delays == ()


def test_audio_shorter_than_a_chunk_is_translated_at_its_end(offline, audio):
    translator = simultaneous(offline, segment_ms=10_000)
    record = simulate_instance(translator, audio[0], 0, "clip", "")
    assert record.prediction and set(record.delays) == {record.source_length}


def test_other_sample_rates_are_resampled_and_timed_in_their_own_samples(offline, audio):
    translator = simultaneous(offline, policy="waitk", waitk=1, segment_factor=2, segment_ms=400)
    samples = audio[1]
    resampler = StreamResampler(16000, 8000)
    at_8k = np.concatenate([resampler.feed(samples), resampler.finish()])
    translator.reset()
    for start in range(0, len(at_8k), 800):
        for word in translator.push(at_8k[start : start + 800], 8000):
            assert round(word.time / 0.4, 6).is_integer()
    translator.finish()
    assert translator.text
    with pytest.raises(ValueError, match="started at 8000 Hz"):
        translator.reset()
        translator.push(at_8k[:800], 8000)
        translator.push(samples[:1600], 16000)


def test_a_decoder_layer_the_model_lacks_is_named_with_its_count(offline):
    with pytest.raises(SimulOptionsError, match="attention_layer 2: the decoder of the model has 2 layers"):
        simultaneous(offline, attention_layer=2)
    simultaneous(offline, policy="la", attention_layer=7)  # local agreement reads no attention


def test_global_cmvn_needs_statistics(packed_trained, cache):
    with pytest.raises(SimulOptionsError, match="cmvn: global needs global statistics"):
        SimultaneousTranslator.from_pretrained(packed_trained, cache, cmvn="global", attention_layer=LAYER)


@pytest.mark.parametrize("values, message", [
    (dict(policy="greedy"), "policy: unknown 'greedy'"),
    (dict(frame_num=-1), "frame_num must be an integer >= 0"),
    (dict(segment_ms=39), "segment_ms must be an integer >= 40 ms"),
    (dict(cmvn="utterance"), "cmvn: unknown 'utterance'"),
    (dict(beam=5), "unknown option"),
    (dict(policy="edatt", frame_num=2, attn_threshold=2), r"attn_threshold 2 is never reached with frame_num 2: "
     r"EDAtt sums 2 values of an L2-normalised attention row, at most sqrt\(2\) = 1.414 .*<= 1.414$"),
    (dict(policy="edatt", attn_threshold=2.01), r"attn_threshold 2.01 is never reached with frame_num 4"),
])
def test_options_out_of_range_are_named(values, message):
    with pytest.raises(SimulOptionsError, match=message):
        SimulOptions.checked(**values)


def test_edatt_thresholds_up_to_sqrt_lambda_are_taken():
    assert SimulOptions.checked(policy="edatt", frame_num=4, attn_threshold=2).attn_threshold == 2
    assert SimulOptions.checked(policy="edatt", frame_num=0, attn_threshold=5).attn_threshold == 5  # all positions
    assert SimulOptions.checked(policy="alignatt", attn_threshold=5).attn_threshold == 5  # not read


def test_setting_names_tell_settings_apart():
    names = {
        SimulOptions(policy="alignatt", frame_num=2).describe(),
        SimulOptions(policy="alignatt", frame_num=2, frame_unit="time").describe(),
        SimulOptions(policy="edatt", frame_num=2, attn_threshold=0.2).describe(),
        SimulOptions(policy="waitk", waitk=3).describe(),
        SimulOptions(policy="la").describe(),
    }
    assert len(names) == 5


# --------------------------------------------------------------------------- settings packed with the model

PACKED_SETTINGS = dict(policy="waitk", waitk=2, segment_factor=3, segment_ms=600, attention_layer=LAYER,
                       cmvn="prefix", beam_size=2, maxlen_b=30)


@pytest.fixture(scope="module")
def packed_with_settings(trained, tmp_path_factory):
    """The trained model packed as stage 8 packs it, with a stage-9 conf of its own."""
    _, exp, _ = trained
    work = tmp_path_factory.mktemp("packed_settings")
    conf = work / "simulate.yaml"
    conf.write_text(yaml.safe_dump({**PACKED_SETTINGS, "settings": [{"waitk": 1}, {"waitk": 3}]}))
    zip_path = work / "model.zip"
    assert pack_model.main(["--exp_dir", str(exp), "--model_file", str(exp / "valid.loss.best.pth"),
                            "--outpath", str(zip_path), "--simulate_conf", str(conf)]) == 0
    return zip_path


def test_the_settings_packed_with_the_model_are_the_defaults_and_given_ones_win(packed_with_settings, cache):
    translator = SimultaneousTranslator.from_pretrained(packed_with_settings, cache)
    assert translator.options == SimulOptions.checked(**PACKED_SETTINGS)
    given = SimultaneousTranslator.from_pretrained(packed_with_settings, cache, segment_ms=400, policy="la")
    assert given.options == SimulOptions.checked(**{**PACKED_SETTINGS, "segment_ms": 400, "policy": "la"})
    live = LiveTranslator.from_pretrained(packed_with_settings, cache, waitk=4)
    assert live.translator.options == SimulOptions.checked(**{**PACKED_SETTINGS, "waitk": 4})


def test_a_model_packed_without_settings_gets_fbk_s_and_fbk_s_layer_only_where_it_exists(packed_trained, cache):
    """The tiny decoder has 2 layers: FBK's layer 3 is refused naming them; a policy that reads no
    attention runs with FBK's other defaults."""
    with pytest.raises(SimulOptionsError, match=r"attention_layer 3: the decoder of .* has 2 layers \(0 to 1\)"):
        SimultaneousTranslator.from_pretrained(packed_trained, cache, cmvn="prefix")
    translator = SimultaneousTranslator.from_pretrained(packed_trained, cache, cmvn="prefix", policy="la")
    assert translator.options == SimulOptions(cmvn="prefix", policy="la")
    assert SimulOptions().attention_layer == 3 and SimulOptions().segment_ms == 1000  # FBK's


def test_audio_without_speech_gets_no_words_as_translate_leaves_it(offline, audio):
    """The first 100 ms of a clip (before its speech) and a second of noise: translate finds no
    speech there and writes nothing; neither may the simultaneous translator."""
    noise = (0.01 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    for samples in (audio[0][:1600], noise):
        assert offline(samples, 16000).text == ""
        for policy in ("waitk", "alignatt"):
            translator = simultaneous(offline, policy=policy, waitk=1, segment_factor=2, segment_ms=40)
            record = simulate_instance(translator, samples, 0, "x", "")
            assert record.prediction == "" and record.delays == ()
    assert simulate_instance(translator, audio[0], 0, "clip", "").prediction  # speech still gets words


def test_the_simuleval_agent_takes_the_packed_settings_and_simuleval_s_chunk(packed_with_settings, cache):
    from argparse import Namespace
    from dataclasses import fields

    from espnet2_ext.simultaneous.agent import ESPnetSimulSTAgent

    unset = {f.name: None for f in fields(SimulOptions)}
    args = Namespace(model=str(packed_with_settings), cache_dir=str(cache), device="cpu", source_segment_size=400,
                     **{**unset, "waitk": 4})
    agent = ESPnetSimulSTAgent(args)
    assert agent.translator.options == SimulOptions.checked(**{**PACKED_SETTINGS, "waitk": 4, "segment_ms": 400})
