"""Shared test helpers: small models and padded batches."""

import signal
from pathlib import Path

import torch

from espnet2_ext.asr.encoder.ctc_compress_conformer_encoder import CTCCompressConformerEncoder

RECIPE_LOCAL = Path(__file__).resolve().parents[1] / "egs" / "mustc_conformer_ctc" / "local"

SMALL_ENCODER = dict(
    output_size=64,
    attention_heads=4,
    linear_units=128,
    num_blocks=4,
    cnn_module_kernel=7,
    subsampling_channels=64,
    ctc_block=2,
)


def small_encoder(**overrides) -> CTCCompressConformerEncoder:
    torch.manual_seed(0)
    return CTCCompressConformerEncoder(input_size=20, ctc_vocab_size=12, **{**SMALL_ENCODER, **overrides})


def pad_batch(utterances: list[torch.Tensor]) -> tuple:
    """Right-pad (T_i, F) utterances with large noise: padding must never matter."""
    lengths = torch.tensor([len(u) for u in utterances])
    batch = torch.randn(len(utterances), int(lengths.max()), utterances[0].size(1)) * 50
    for i, u in enumerate(utterances):
        batch[i, : len(u)] = u
    return batch, lengths


def small_model(ctc_weight: float = 0.5, vocab_size: int = 15, **encoder_overrides):
    """A tiny ST model: the small encoder plus a 2-block Transformer decoder."""
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

    from espnet2_ext.st.espnet_model import ESPnetSTCTCCompressModel

    encoder = small_encoder(**encoder_overrides)
    decoder = TransformerDecoder(vocab_size, 64, attention_heads=4, linear_units=128, num_blocks=2)
    tokens = ["<blank>", "<unk>", "<lang:de>"] + [f"t{i}" for i in range(vocab_size - 4)] + ["<sos/eos>"]
    return ESPnetSTCTCCompressModel(
        vocab_size=vocab_size,
        token_list=tokens,
        frontend=None,
        specaug=None,
        normalize=None,
        encoder=encoder,
        decoder=decoder,
        src_token_list=[f"s{i}" for i in range(12)],
        ctc_weight=ctc_weight,
    )


def pad_tokens(sequences: list[list[int]]) -> tuple:
    lengths = torch.tensor([len(s) for s in sequences])
    batch = torch.full((len(sequences), int(lengths.max())), -1, dtype=torch.long)
    for i, s in enumerate(sequences):
        batch[i, : len(s)] = torch.tensor(s)
    return batch, lengths


def load_recipe_script(name: str):
    """Import ``egs/mustc_conformer_ctc/local/<name>.py`` by path: recipe 'local/' dirs are not packages.

    ``local/`` goes on ``sys.path`` first, as when Python runs the script, so the
    script's own imports of its helpers there (``mini_corpus``) resolve.
    """
    import importlib.util
    import sys

    local = str(RECIPE_LOCAL)
    if local not in sys.path:
        sys.path.insert(0, local)
    spec = importlib.util.spec_from_file_location(name, RECIPE_LOCAL / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cut_segment_clips(data_dir, out_dir) -> dict:
    """Write each utterance of a Kaldi data dir (``wav.scp`` + ``segments``) to ``<out_dir>/<utt>.wav``.

    Samples are cut as the feature stage cuts them and copied as integers, so a
    clip's features equal the dump dir's. Returns utt id -> clip path.
    """
    from pathlib import Path

    import soundfile as sf

    from espnet2_ext.fileio.data_dir import read_recordings, sample_range

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = {}
    for recording in read_recordings(Path(data_dir)):
        info = sf.info(recording.wav)
        assert info.subtype == "PCM_16", "integer copies keep the samples exact"
        for utt in recording.utterances:
            start, stop = sample_range(utt, info.samplerate, info.frames, recording.wav)
            samples, rate = sf.read(recording.wav, start=start, stop=stop, dtype="int16")
            clips[utt.utt_id] = out_dir / f"{utt.utt_id}.wav"
            sf.write(clips[utt.utt_id], samples, rate, subtype="PCM_16")
    return clips


def read_hypotheses(path) -> dict:
    """utt id -> text of an ESPnet ``text`` file (``<utt> <text>``, text possibly empty)."""
    from pathlib import Path

    from espnet2_ext.fileio.kaldi_table import read_text

    return read_text(Path(path))


# Search settings of the tests that decode the trained tiny model (``trained`` fixture).
DECODE_SEARCH = dict(beam_size=3, no_repeat_ngram_size=3, maxlen_b=40)


def decode_dump(exp, dump, out, batch_size: int) -> dict:
    """Translate a dump dir with the recipe's decode program (stage 7); utt id -> text."""
    from pathlib import Path

    from espnet2_ext.bin import st_inference

    exp, out = Path(exp), Path(out)
    search = [arg for key, value in DECODE_SEARCH.items() for arg in (f"--{key}", str(value))]
    st_inference.main([
        "--output_dir", str(out), "--batch_size", str(batch_size),
        "--data_path_and_name_and_type", f"{dump}/feats.scp,speech,kaldi_ark",
        "--st_train_config", str(exp / "config.yaml"), "--st_model_file", str(exp / "valid.loss.best.pth"),
        *search,
    ])
    return read_hypotheses(out / "1best_recog/text")


# Two talks for talk-level scoring: recording -> its (start, end, reference sentence), in time order.
TALK_REFERENCES = {
    "talk_a": [
        (0.4, 2.8, "Der Vater schreibt heute unsere billigen Bücher."),
        (3.1, 4.5, "Ich schreibe die Geschichten."),
        (4.9, 7.5, "Ein Mann trinkt um fünf Uhr die frische Milch."),
    ],
    "talk_b": [
        (1.0, 3.0, "Wir übersetzen Sprache direkt in Text."),
        (3.2, 5.0, "Die Katze sitzt auf der Matte."),
        (5.5, 6.5, "Heute regnet es nicht."),
        (7.0, 9.0, "Das ist ein kleiner Test."),
    ],
}


def talk_utt_id(recording: str, start: float, end: float) -> str:
    """MuST-C's utterance ids: recording, then start and end in centiseconds."""
    return f"{recording}-{round(start * 100):07d}-{round(end * 100):07d}"


def write_talk_data_dir(data_dir, talks: dict = TALK_REFERENCES):
    """``wav.scp``, ``segments`` (listed latest first: talk scoring must sort by time) and
    ``text.tgt`` of ``talks``, as stage 1 writes a test set; the wavs need not exist."""
    from pathlib import Path

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    utts = [(talk_utt_id(rec, start, end), rec, start, end, text)
            for rec, sentences in talks.items() for start, end, text in sentences]
    (data_dir / "wav.scp").write_text("".join(f"{rec} /corpus/wav/{rec}.wav\n" for rec in talks), encoding="utf-8")
    (data_dir / "segments").write_text(
        "".join(f"{utt} {rec} {start:.3f} {end:.3f}\n" for utt, rec, start, end, _ in reversed(utts)), encoding="utf-8"
    )
    (data_dir / "text.tgt").write_text("".join(f"{u[0]} {u[4]}\n" for u in utts), encoding="utf-8")
    return data_dir


def talk_record(recording: str, segments: list, error: str | None = None) -> dict:
    """One record of ``translate --format jsonl`` for a talk translated in ``segments``
    (their translations), or failed with ``error``."""
    if error is not None:
        return {"id": recording, "translation": "", "source": "", "nbest": None, "segments": [], "warnings": [],
                "error": error}
    spans = [{"start": 2.0 * i, "end": 2.0 * i + 1.5, "translation": text, "source": ""}
             for i, text in enumerate(segments)]
    return {"id": recording, "translation": " ".join(t for t in segments if t), "source": "", "nbest": None,
            "segments": spans, "warnings": [], "error": None}


def write_jsonl(path, records: list):
    """One JSON object per line, as translate writes them."""
    import json
    from pathlib import Path

    path = Path(path)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def with_default_ctrl_c() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT: Ctrl-C's default action, which Python
    turns into ``KeyboardInterrupt``. A background job of a non-interactive shell (``make test &``)
    inherits SIGINT ignored, and a Python started so ignores it, as ``nohup`` means it to."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def check_subtitles(blocks, segments, limits) -> int:
    """What every subtitle file must hold (issue 22): each block within ``limits`` (a line
    may be longer only as a single word; the reading speed and shortest time wherever the
    segment's time can hold its blocks' reading times), its times within its segment
    and after the block before, and the blocks' words exactly the translation's.

    ``segments``: :class:`~espnet2_ext.subtitles.TimedSegment` in time order. Returns how
    many blocks had their segment's time for the reading speed and shortest time.
    """
    from espnet2_ext.subtitles.blocks import to_ms

    spans = [(to_ms(s.start), to_ms(s.end), s.text.split()) for s in segments if s.text.split()]
    assert " ".join(b.text for b in blocks) == " ".join(w for s in segments for w in s.text.split())
    position, previous_end, timed = 0, None, 0
    for start, end, words in spans:  # the blocks of each segment, in order
        mine, count = [], 0
        while count < len(words):
            mine.append(blocks[position])
            count += len(blocks[position].text.split())
            position += 1
        assert count == len(words), "a block spans two segments"
        needed = sum(limits.reading_ms(b.chars) for b in mine)
        for b in mine:
            assert start <= b.start_ms <= b.end_ms <= end, (b, start, end)
            assert previous_end is None or b.start_ms >= previous_end, (b, previous_end)
            previous_end = b.end_ms
            assert 1 <= len(b.lines) <= limits.max_lines, b
            assert all(len(line) <= limits.max_chars or " " not in line for line in b.lines), b
            assert all(line and line == line.strip() and "  " not in line for line in b.lines), b
            assert b.end_ms - b.start_ms <= limits.max_ms, b
            if needed <= end - start:
                timed += 1
                assert b.end_ms - b.start_ms >= limits.min_ms, (b, needed, end - start)
                assert b.chars * 1000 <= limits.max_cps * (b.end_ms - b.start_ms), b
    assert position == len(blocks)
    return timed
