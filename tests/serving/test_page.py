"""The page in a real browser (:mod:`espnet2_ext.serving.browser`: Debian's headless Chromium,
driven by Selenium through Debian's chromedriver), its microphone a fake one playing a talk in
real time."""

import re
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from espnet2_ext.serving.browser import chromium, fake_microphone, find_talk, page_state, translate_in_page
from tests.serving.conftest import RATE, reference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCE_END = re.compile(r"[.!?…][)\]\"'»«“”‘’]*$")
KEEP_UP_SECONDS = 0.5  # a word may reach the page this much after its computation-aware delay


def wait_for(page, condition, seconds: float) -> dict:
    WebDriverWait(page, seconds, poll_frequency=0.05).until(lambda p: condition(page_state(p)))
    return page_state(page)


def heard_to_its_end(served, talk: np.ndarray) -> bool:
    """The server has the talk's length and a second of exact zeros at its end (the talk's last
    second, and what the fake microphone plays once the file is over)."""
    streams = served.received()
    return bool(streams) and len(streams[-1]) >= len(talk) and not np.any(streams[-1][-RATE:])


def test_the_page_shows_the_translators_words_as_they_come_and_keeps_up(serve, make_translator, talks, tmp_path):
    talk = sf.read(talks[0], dtype="int16")[0]
    with serve(max_clients=1) as served, chromium(tmp_path, *fake_microphone(talks[0])) as page:
        # the talk, played in real time, then the second of silence it ends with: the browser's
        # audio clock may have delayed it (a stall inserts silence), so wait for that silence
        done, lines, device_rate = translate_in_page(page, served.url + "/", lambda _: heard_to_its_end(served, talk))
        (received,) = served.received()
    share, lags = find_talk(received, talk)
    print(f"microphone at {device_rate} Hz; {share:.0%} of the talk's speech found in what the server "
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


def test_a_talk_is_found_where_a_browser_delayed_or_dropped_some_of_it(talks):
    talk = sf.read(talks[0], dtype="int16")[0]
    cut, gap = 3 * RATE, RATE // 5
    delayed = np.concatenate([talk[160:cut], np.zeros(gap, np.int16), talk[cut + 160 :]])  # 10 ms lost twice
    share, lags = find_talk(delayed, talk)
    assert share > 0.95 and sorted(set(lags)) == [-160, gap - 320]
    assert find_talk(np.random.default_rng(0).integers(-3000, 3000, len(talk)).astype(np.int16), talk)[0] == 0


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
        assert "No microphone found" in wait_for(page, lambda state: state["message"], 30)["message"]
        page.find_element(By.ID, "mic").click()
        time.sleep(0.5)
        assert "No microphone found" in page.find_element(By.ID, "status").text
        assert page_state(page)["state"] == "idle" and served.server.clients == 0
