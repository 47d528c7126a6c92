"""The page in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver (no driver download: selenium-manager is never run), its microphone a fake one
playing a talk in real time."""

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.serving.conftest import RATE, reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's chromium, chromium-driver
# as root on a machine with no network beyond loopback (see the Makefile's sysdeps)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream")  # the microphone is allowed without asking
SENTENCE_END = re.compile(r"[.!?…][)\]\"'»«“”‘’]*$")
KEEP_UP_SECONDS = 0.5  # a word may reach the page this much after its computation-aware delay


@contextmanager
def chromium(profile: Path, *flags: str, env: dict | None = None) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def fake_microphone(wav: Path) -> tuple[str, ...]:
    """Chromium's fake audio device, playing ``wav`` once in real time."""
    return ("--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required")


def view(page: webdriver.Chrome) -> dict:
    return page.execute_script("return window.liveTranslation")


def wait_for(page: webdriver.Chrome, condition, seconds: float) -> dict:
    WebDriverWait(page, seconds, poll_frequency=0.05).until(lambda p: condition(view(p)))
    return view(page)


def talk_in(received: np.ndarray, talk: np.ndarray) -> tuple[float, list[int]]:
    """Where ``talk`` is in ``received`` (both 16-bit, 16 kHz; the browser resampled it there and
    back): the share of the talk's 100 ms windows of speech found whole (normalised correlation
    above 0.99) within 3 s of their place, and where each window was found
    (samples late). Under load the browser's audio clock inserts silence, or drops a little."""
    window, reach = RATE // 10, 3 * RATE
    heard = received.astype(np.float64)
    found, lags = 0, []
    speech = [s for s in range(0, len(talk) - window, window) if np.std(talk[s : s + window].astype(float)) > 300]
    for start in speech:
        piece = talk[start : start + window].astype(np.float64)
        low = max(0, start - window)
        span = heard[low : start + window + reach]
        if len(span) < window:
            continue
        size = 1 << int(np.ceil(np.log2(len(span) + window)))  # correlation by FFT
        scores = np.fft.irfft(np.fft.rfft(span, size) * np.conj(np.fft.rfft(piece, size)), size)
        scores = scores[: len(span) - window + 1]
        energy = np.concatenate([[0.0], np.cumsum(span**2)])
        scores /= np.sqrt(np.maximum(energy[window:] - energy[:-window], 1e-9) * np.sum(piece**2))
        best = int(np.argmax(scores))
        if scores[best] > 0.99:
            found += 1
            lags.append(low + best - start)
    return found / len(speech), lags


def test_the_page_shows_the_translators_words_as_they_come_and_keeps_up(serve, make_translator, talks, tmp_path):
    talk = sf.read(talks[0], dtype="int16")[0]
    with serve(max_clients=1) as served, chromium(tmp_path, *fake_microphone(talks[0])) as page:
        page.get(served.url + "/")
        page.find_element(By.ID, "mic").click()
        started = wait_for(page, lambda v: v["state"] == "recording", 30)
        # the talk, played in real time, and the silence after it for what the browser delays
        wait_for(page, lambda v: v["audioSeconds"] >= len(talk) / RATE + 1.5, 60)
        page.find_element(By.ID, "mic").click()
        done = wait_for(page, lambda v: v["state"] == "idle", 60)
        lines = [line.text for line in page.find_elements(By.CSS_SELECTOR, "#translation p")]
        (received,) = served.received()
    share, lags = talk_in(received, talk)
    print(f"microphone at {started['deviceRate']} Hz; {share:.0%} of the talk's speech found in what the server "
          f"received, {min(lags) / RATE:+.3f} to {max(lags) / RATE:+.3f} s from its place")
    assert share >= 0.75  # the same talk, but where the browser's clock missed a beat (other audio: ~0)
    assert done["message"].startswith("Done:") and not done["message"].startswith("Done: 0 words")

    expected = reference(make_translator, received)  # the same translator on the same audio, in Python
    assert " ".join(lines).split() == [word.text for word in expected]
    assert [(w["text"], w["time"]) for w in done["words"]] == [(w.text, round(w.time, 3)) for w in expected]
    assert all(SENTENCE_END.search(line.split()[-1]) for line in lines[:-1])

    lateness = [shown["arrival"] - word.elapsed for shown, word in zip(done["words"], expected)]
    lags = [shown["arrival"] - shown["time"] for shown in done["words"]]
    print(f"{len(lags)} words; after the audio they needed: mean {np.mean(lags):.3f} s, max {max(lags):.3f} s; "
          f"after the computation-aware delay: max {max(lateness):.3f} s")
    assert max(lateness) <= KEEP_UP_SECONDS


def test_the_page_resamples_as_torchaudio_does(serve, tmp_path):
    signal = (0.3 * np.random.default_rng(0).standard_normal(9000)).astype(np.float32)
    with serve(max_clients=1) as served, chromium(tmp_path) as page:
        page.get(served.url + "/")
        for rate in (8000, 16000, 22050, 44100, 48000):
            out = page.execute_async_script("""
                const [samples, rate, done] = arguments;
                import('/resampler.js').then(({ Resampler }) => {
                  const resampler = new Resampler(rate, 16000), out = [];
                  for (let i = 0; i < samples.length; i += 128) {  // as an AudioWorklet gets them
                    out.push(...resampler.push(Float32Array.from(samples.slice(i, i + 128))));
                  }
                  done(out.concat(...resampler.finish()));
                });""", signal.tolist(), rate)
            expected = torchaudio.functional.resample(torch.from_numpy(signal), rate, RATE).numpy()
            assert len(out) == len(expected) and np.abs(np.array(out) - expected).max() < 1e-4, rate  # float32 kernels


def test_the_page_starts_a_line_at_each_sentence(serve, tmp_path):
    words = ["Der", "Vater", "schreibt.", "Ich", "schreibe", "„Geschichten!“", "Wirklich?", "Ja…", "Gut"]
    with serve(max_clients=1) as served, chromium(tmp_path) as page:
        page.get(served.url + "/")
        starts = page.execute_async_script("""
            const [words, done] = arguments;
            import('/transcript.js').then(({ SentenceLines }) => {
              const lines = new SentenceLines();
              done(words.map((word) => lines.next(word)));
            });""", words)
    assert [w for w, start in zip(words, starts) if start] == ["Der", "Ich", "Wirklich?", "Ja…", "Gut"]


def test_a_browser_without_a_microphone_says_so(serve, tmp_path):
    silent = tmp_path / "asound.conf"
    silent.write_text("")  # no ALSA device, no PulseAudio server: a machine without audio input
    env = {"ALSA_CONFIG_PATH": str(silent), "PULSE_SERVER": f"unix:{tmp_path}/no-pulse"}
    with serve(max_clients=1) as served, chromium(tmp_path / "profile", env=env) as page:
        page.get(served.url + "/")
        assert "No microphone found" in wait_for(page, lambda v: v["message"], 30)["message"]
        page.find_element(By.ID, "mic").click()
        time.sleep(0.5)
        assert "No microphone found" in page.find_element(By.ID, "status").text
        assert view(page)["state"] == "idle" and served.server.clients == 0
