"""Speech of the mini corpus and its files in MuST-C layout.

Sentences are spoken with espeak-ng, one voice setting per "talk", and concatenated
with short pauses into talk-level wavs, as MuST-C segments are regions of long
TED-talk recordings. As in a recording, the pauses are not digital silence: a
quiet noise floor runs under the whole talk; and as in MuST-C, whose segments come
from aligned subtitles, a segment does not start and end exactly with its speech:
it takes a random margin of the pause on either side. A model trained on segments
cut exactly at speech onset learns where its input starts, and then translates
audio cut any other way (by a voice-activity segmenter, say) much worse. Each split is written with a completion marker holding a
digest of its plan, so an identical re-run skips it and a changed one redoes it.
"""

import hashlib
import io
import random
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from espnet2_ext.fileio.atomic import atomic_path, write_lines_atomically, write_text_atomically
from espnet2_ext.utils.fbank import resample
from espnet2_ext.utils.progress import progress_bar
from mini_corpus.grammar import SPLITS, SentencePair, make_text_splits

SAMPLE_RATE = 16000
SAMPLES_PER_MS = SAMPLE_RATE // 1000
DONE_MARKER = ".done"
# What besides the plan determines the wavs: a change here regenerates existing corpora.
AUDIO_CHAIN = "espeak-ng -> espnet2_ext.utils.fbank.resample to 16 kHz -> int16, + noise floor"
NOISE_RMS = 8.0  # int16 units: -72 dBFS, a quiet room's floor under the whole talk
MAX_MARGIN_MS = 150  # a segment takes up to this much of the pause on either side
KEPT_GAP_MS = 100  # ... leaving at least this much of the pause to no segment


class SpeechError(RuntimeError):
    """espeak-ng missing or failing."""

VOICE_LANGUAGES = ("en-us", "en-gb", "en")
VOICE_VARIANTS = ("m1", "m2", "m3", "f1", "f2", "f3")


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice setting; a talk is spoken entirely with one voice."""

    name: str
    speed: int
    pitch: int

    def command(self, espeak: str, text: str) -> list[str]:
        return [espeak, "-v", self.name, "-s", str(self.speed), "-p", str(self.pitch), "--stdout", text]


@dataclass(frozen=True)
class Talk:
    """A talk: its sentences, the pauses (ms) before, between and after them, how much of
    the pause before and after each sentence its segment takes (ms), and its noise's seed."""

    number: int
    voice: Voice
    sentences: tuple[SentencePair, ...]
    gaps_ms: tuple[int, ...]
    margins_ms: tuple[tuple[int, int], ...]
    noise_seed: int

    @property
    def wav_name(self) -> str:
        return f"ted_{self.number}.wav"

    @property
    def speaker_id(self) -> str:
        return f"spk.{self.number}"


def random_voice(rng: random.Random) -> Voice:
    name = f"{rng.choice(VOICE_LANGUAGES)}+{rng.choice(VOICE_VARIANTS)}"
    return Voice(name, speed=rng.randint(140, 180), pitch=rng.randint(30, 70))


def plan_talks(
    splits: dict[str, list[SentencePair]], talk_size: int, seed: int
) -> dict[str, list[Talk]]:
    """Group sentences into talks numbered uniquely across splits (train, dev, tst-COMMON)."""
    rng = random.Random(f"talks-{seed}")
    plans: dict[str, list[Talk]] = {}
    number = 1
    for split in SPLITS:
        sentences = splits[split]
        talks = []
        for start in range(0, len(sentences), talk_size):
            chunk = tuple(sentences[start : start + talk_size])
            gaps = tuple(rng.randint(200, 600) for _ in range(len(chunk) + 1))
            margins = tuple(
                (rng.randint(0, margin_limit(gaps[i])), rng.randint(0, margin_limit(gaps[i + 1])))
                for i in range(len(chunk))
            )
            talks.append(Talk(number, random_voice(rng), chunk, gaps, margins, rng.randrange(2**32)))
            number += 1
        plans[split] = talks
    return plans


def margin_limit(gap_ms: int) -> int:
    """The most a segment takes of a pause: two segments share it and leave some to neither."""
    return min(MAX_MARGIN_MS, (gap_ms - KEPT_GAP_MS) // 2)


def require_espeak() -> str:
    """Path to espeak-ng, or a clear error telling how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise SpeechError("espeak-ng not found on PATH; install it with `apt-get install espeak-ng`")
    return path


def to_16k_int16(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample int16-scaled samples ``(samples,)`` to 16 kHz with the features' own resampler,
    and pad with zeros to a whole millisecond, so offsets are exact."""
    samples = resample(samples.astype(np.float32), sample_rate, SAMPLE_RATE)
    audio = np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
    padding = -len(audio) % SAMPLES_PER_MS
    return np.concatenate([audio, np.zeros(padding, dtype=np.int16)])


def synthesize(espeak: str, voice: Voice, text: str) -> np.ndarray:
    """Speak one sentence with espeak-ng; returns 16 kHz int16 samples."""
    result = subprocess.run(voice.command(espeak, text), capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout:
        message = result.stderr.decode(errors="replace").strip()
        raise SpeechError(f"espeak-ng failed for voice {voice.name!r} on {text!r}: {message}")
    samples, sample_rate = sf.read(io.BytesIO(result.stdout), dtype="int16")
    if samples.ndim != 1:
        samples = samples[:, 0]
    return to_16k_int16(samples, sample_rate)


@dataclass(frozen=True)
class Segment:
    """A sentence's region inside its talk wav."""

    talk: Talk
    pair: SentencePair
    offset: float
    duration: float

    def yaml_line(self) -> str:
        words = len(self.pair.en.split())
        return (
            f"- {{duration: {self.duration:.6f}, offset: {self.offset:.6f}, rW: {words}, uW: 0, "
            f"speaker_id: {self.talk.speaker_id}, wav: {self.talk.wav_name}}}"
        )


Synthesizer = Callable[[Voice, str], np.ndarray]


def render_talk(
    talk: Talk, synth: Synthesizer, pool: Executor, progress: Callable[[], None]
) -> tuple[np.ndarray, list[Segment]]:
    """Concatenate pause, speech, pause, ... into one wav over a noise floor, and record
    segment times (each with its margins of the pauses around it)."""

    def speak(pair: SentencePair) -> np.ndarray:
        audio = synth(talk.voice, pair.en)
        progress()
        return audio

    pieces: list[np.ndarray] = []
    segments: list[Segment] = []
    position = 0
    speech = pool.map(speak, talk.sentences)
    for gap_ms, (before, after), pair, audio in zip(talk.gaps_ms, talk.margins_ms, talk.sentences, speech):
        pieces.append(np.zeros(gap_ms * SAMPLES_PER_MS, dtype=np.int16))
        position += gap_ms * SAMPLES_PER_MS
        start, end = position - before * SAMPLES_PER_MS, position + len(audio) + after * SAMPLES_PER_MS
        segments.append(Segment(talk, pair, start / SAMPLE_RATE, (end - start) / SAMPLE_RATE))
        pieces.append(audio)
        position += len(audio)
    pieces.append(np.zeros(talk.gaps_ms[-1] * SAMPLES_PER_MS, dtype=np.int16))
    audio = np.concatenate(pieces).astype(np.float64)
    audio += NOISE_RMS * np.random.default_rng(talk.noise_seed).standard_normal(len(audio))
    return np.clip(np.rint(audio), -32768, 32767).astype(np.int16), segments


# --------------------------------------------------------------------------- files


def write_wav_atomically(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def plan_digest(talks: Sequence[Talk], tgt: str) -> str:
    """Fingerprint of everything that determines a split's files (for skipping reruns)."""
    return hashlib.sha256(repr((tgt, AUDIO_CHAIN, list(talks))).encode()).hexdigest()


def split_dir(out: Path, tgt: str, split: str) -> Path:
    return out / f"en-{tgt}" / "data" / split


@dataclass
class SplitWriter:
    """Writes one split's wavs, yaml and parallel text, then a completion marker."""

    directory: Path
    split: str
    tgt: str
    lines: dict[str, list[str]] = field(default_factory=lambda: {"yaml": [], "en": [], "tgt": []})

    def is_done(self, digest: str) -> bool:
        marker = self.directory / DONE_MARKER
        return marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest

    def start(self) -> None:
        (self.directory / DONE_MARKER).unlink(missing_ok=True)
        (self.directory / "wav").mkdir(parents=True, exist_ok=True)
        (self.directory / "txt").mkdir(parents=True, exist_ok=True)

    def add_talk(self, talk: Talk, audio: np.ndarray, segments: Sequence[Segment]) -> None:
        write_wav_atomically(self.directory / "wav" / talk.wav_name, audio)
        for segment in segments:
            self.lines["yaml"].append(segment.yaml_line())
            self.lines["en"].append(segment.pair.en)
            self.lines["tgt"].append(segment.pair.de)

    def finish(self, talks: Sequence[Talk], digest: str) -> None:
        txt = self.directory / "txt"
        write_lines_atomically(txt / f"{self.split}.yaml", self.lines["yaml"])
        write_lines_atomically(txt / f"{self.split}.en", self.lines["en"])
        write_lines_atomically(txt / f"{self.split}.{self.tgt}", self.lines["tgt"])
        wanted = {talk.wav_name for talk in talks}
        for stale in (self.directory / "wav").glob("ted_*.wav"):
            if stale.name not in wanted:
                stale.unlink()
        write_text_atomically(self.directory / DONE_MARKER, digest + "\n")


def generate_split(
    directory: Path, split: str, talks: Sequence[Talk], tgt: str, synth: Synthesizer, pool: Executor
) -> bool:
    """Generate one split unless an identical one is already complete; True if (re)generated."""
    writer = SplitWriter(directory, split, tgt)
    digest = plan_digest(talks, tgt)
    if writer.is_done(digest):
        return False
    writer.start()
    total = sum(len(talk.sentences) for talk in talks)
    with progress_bar(total=total, desc=split, unit="sent", disable=total <= 10) as bar:
        for talk in talks:
            audio, segments = render_talk(talk, synth, pool, lambda: bar.update(1))
            writer.add_talk(talk, audio, segments)
    writer.finish(talks, digest)
    return True


def build_corpus(
    out: Path,
    seed: int = 1,
    n_train: int = 1200,
    n_dev: int = 100,
    n_test: int = 150,
    talk_size: int = 20,
    workers: int = 2,
) -> dict[str, bool]:
    """Generate all splits (German targets: the grammar's only language); returns for each
    split whether it was (re)generated."""
    tgt = "de"
    if min(n_train, n_dev, n_test, talk_size, workers) < 1:
        raise ValueError("sizes, talk size and workers must be positive")
    espeak = require_espeak()
    plans = plan_talks(make_text_splits(seed, n_train, n_dev, n_test), talk_size, seed)

    def synth(voice: Voice, text: str) -> np.ndarray:
        return synthesize(espeak, voice, text)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return {
            split: generate_split(split_dir(out, tgt, split), split, plans[split], tgt, synth, pool)
            for split in SPLITS
        }


def corpus_summary(out: Path, tgt: str = "de") -> dict[str, tuple[int, float]]:
    """(number of segments, hours of speech) per split, read back from the yaml files."""
    summary = {}
    for split in SPLITS:
        yaml_path = split_dir(out, tgt, split) / "txt" / f"{split}.yaml"
        entries = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or []
        summary[split] = (len(entries), sum(e["duration"] for e in entries) / 3600)
    return summary
