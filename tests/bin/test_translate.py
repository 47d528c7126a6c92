"""Translating audio with a packed model: the command line and the Python API.

The model is the trained tiny one (``trained`` fixture), packed by recipe stage 8's
program (``packed_trained``); the audio is its held-out test set cut into clips.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from espnet2_ext.bin import translate
from espnet2_ext.inference.speech2translation import Speech2Translation, greedy_ctc_ids
from espnet2_ext.inference.audio import peak_dbfs
from tests.helpers import DECODE_SEARCH, cut_segment_clips, decode_dump

CLI_SEARCH = [arg for key, value in DECODE_SEARCH.items() for arg in (f"--{key}", str(value))]


@pytest.fixture(scope="module")
def clips(trained, tmp_path_factory) -> dict:
    work, _, _ = trained
    return cut_segment_clips(work / "data/tst-COMMON", tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def translator(packed_trained, cache) -> Speech2Translation:
    return Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, **DECODE_SEARCH)


def cli(capsys, model: Path, cache: Path, *argv: str) -> tuple:
    code = translate.main(["--model", str(model), "--cache_dir", str(cache), *CLI_SEARCH, *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_translating_the_zip_gives_the_recipe_decode(trained, packed_trained, clips, cache, tmp_path, capsys):
    work, exp, dump = trained
    reference = decode_dump(exp, dump / "tst-COMMON", tmp_path / "decode", batch_size=4)
    code, lines, err = cli(capsys, packed_trained, cache, next(iter(clips.values())).parent, "--batch_size", 10)
    assert code == 0, err
    translated = {Path(key).stem: text for key, text in (line.split("\t") for line in lines)}
    assert len(translated) == 12 and translated == reference
    assert sum(bool(text) for text in translated.values()) >= 6
    assert "12/12" in err, "a progress bar for more than a handful of inputs"


def test_api_and_cli_agree_and_batch_size_changes_nothing(translator, packed_trained, clips, cache, capsys):
    files = sorted(clips.values())
    one_by_one = translator.translate_batch(files, batch_size=1)
    batched = translator.translate_batch(files, batch_size=10)
    assert [[h.token_ids for h in r.nbest] for r in one_by_one] == [[h.token_ids for h in r.nbest] for r in batched]
    assert [r.nbest[0].score for r in one_by_one] == pytest.approx([r.nbest[0].score for r in batched], abs=1e-4)
    assert [r.source for r in one_by_one] == [r.source for r in batched]
    assert [translator(path).text for path in files[:2]] == [r.text for r in batched[:2]]

    code, lines, err = cli(capsys, packed_trained, cache, *files, "--format", "jsonl", "--nbest", 2)
    assert code == 0, err
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [str(f) for f in files]
    assert [r["translation"] for r in records] == [r.text for r in batched]
    assert [r["source"] for r in records] == [r.source for r in batched]
    assert all(len(r["nbest"]) == 2 and r["nbest"][0]["score"] >= r["nbest"][1]["score"] for r in records)
    assert [r["nbest"][0]["score"] for r in records] == pytest.approx([r.nbest[0].score for r in batched], abs=1e-4)

    code, lines, _ = cli(capsys, packed_trained, cache, *files[:3], "--format", "text", "--batch_size", 1)
    assert code == 0 and lines == [r.text for r in batched[:3]]


def test_wav_scp_gives_its_ids_and_output_file_is_written(packed_trained, clips, cache, tmp_path, capsys, translator):
    utts = sorted(clips)[:3]
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{utt} {clips[utt]}\n" for utt in reversed(utts)), encoding="utf-8")
    out = tmp_path / "out/hyps.tsv"
    code, lines, err = cli(capsys, packed_trained, cache, scp, "--output", out)
    assert code == 0 and lines == [], err
    expected = [f"{utt}\t{translator(clips[utt]).text}" for utt in reversed(utts)]
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert [p.name for p in out.parent.iterdir()] == ["hyps.tsv"], "no temporary left behind"


def test_stereo_and_other_sample_rates_translate_like_the_original(translator, clips):
    for path in sorted(clips.values())[:4]:
        samples, rate = sf.read(path, dtype="float32")
        original = translator(samples, rate)
        assert translator(np.stack([samples, samples], axis=1), rate).segments == original.segments
        assert translator(np.stack([samples, samples]), rate).segments == original.segments  # (channels, samples)
        assert translator((samples * 32768).astype(np.int16), rate).segments == original.segments
        for new_rate in (8000, 44100):
            resampled = torchaudio.functional.resample(torch.from_numpy(samples), rate, new_rate).numpy()
            prepared = translator.prepare(resampled, new_rate)
            reference = translator.prepare(samples, rate)
            assert prepared.features[0].shape == reference.features[0].shape
            if new_rate > rate:  # nothing lost: the features are the original's, except where the
                # resampling filters roll off near 8 kHz (the top mel bins) and in digital silence
                close = np.abs(prepared.features[0][:, :70] - reference.features[0][:, :70]) < 0.05
                assert close.mean() > 0.99, close.mean()
                assert translator(resampled, new_rate).text == original.text


def test_bad_inputs_are_named_and_the_others_still_translate(
    packed_trained, clips, cache, tmp_path, capsys, caplog, translator
):
    good = sorted(clips.values())[0]
    empty, short, junk, silent = (tmp_path / f"{name}.wav" for name in ("empty", "short", "junk", "silent"))
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    sf.write(short, np.full(480, 0.3, dtype=np.float32), 16000)
    junk.write_bytes(b"definitely not audio")
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    missing = tmp_path / "missing.wav"
    inputs = [empty, good, short, junk, silent, missing]
    code, lines, err = cli(capsys, packed_trained, cache, *inputs)
    assert code == 2
    assert lines == [f"{path}\t{translator(good).text if path == good else ''}" for path in inputs]
    needed = translator.model.encoder.min_input_length
    for message in (
        f"ERROR: {empty}: empty audio (0 samples)",
        f"ERROR: {short}: 30 ms of audio gives 1 feature frames; the model needs at least {needed}",
        f"ERROR: {junk}: not readable as audio",
        f"ERROR: {missing}: no such file",
        "ERROR: 4 of 6 inputs could not be translated",
    ):
        assert message in err
    assert f"{silent}: silent (peak -inf dBFS < -60 dBFS): not translated" in caplog.text  # logged as a warning


def test_long_audio_is_translated_in_segments_cut_at_pauses(packed_trained, cache, clips, translator):
    pieces = [sf.read(path, dtype="float32")[0] for path in sorted(clips.values())[:4]]
    gap = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([part for piece in pieces for part in (piece, gap)])
    limit = 1.5 * max(len(p) for p in pieces) / 16000 + 0.5
    short_limit = Speech2Translation.from_pretrained(
        packed_trained, cache_dir=cache, max_segment_seconds=limit, **DECODE_SEARCH
    )
    result = short_limit(audio, 16000)
    assert len(result.segments) >= 2
    assert f"longer than {limit:g} s: translated in {len(result.segments)} segments cut at pauses" in result.warnings[0]
    for segment in result.segments[:-1]:  # in a pause: one of the gaps, or one inside a clip
        cut = round(segment.end * 16000)
        assert peak_dbfs(audio[cut : cut + 160]) < -60, f"cut at {segment.end:.2f} s is inside speech"
    assert result.text == " ".join(s.nbest[0].text for s in result.segments if s.nbest[0].text)
    with pytest.raises(ValueError, match="segments; read each one's n-best from .segments"):
        result.nbest
    assert len(translator(audio, 16000).segments) == 1, "within the default 30 s: one piece"


def test_greedy_ctc_merges_repeats_then_drops_blanks():
    frames = [0, 3, 3, 0, 3, 5, 5, 5, 0, 0, 2]
    logits = torch.nn.functional.one_hot(torch.tensor(frames), 6).float()
    assert greedy_ctc_ids(logits) == [3, 3, 5, 2]
    assert greedy_ctc_ids(torch.zeros(0, 6)) == []


def test_source_transcript_comes_from_the_intermediate_ctc(packed_trained, cache, clips):
    """With the CTC head forced to one piece, the transcript is that piece, detokenised."""
    translator = Speech2Translation.from_pretrained(packed_trained, cache_dir=cache, **DECODE_SEARCH)
    piece = next(t for t in translator.model.src_token_list if t.startswith("\u2581") and len(t) > 2)
    head = translator.model.encoder.ctc_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[translator.model.src_token_list.index(piece)] = 10.0
    result = translator(sorted(clips.values())[0])
    assert result.source == piece.lstrip("\u2581") and result.segments[0].source == result.source
