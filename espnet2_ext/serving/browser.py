"""The page driven in a real browser, its microphone a recording played in real time: what the
tests and the live benchmark (``bench/live_page.py``) run.

Debian's headless Chromium (``chromium``) through Debian's ``chromedriver``
(``chromium-driver``), named by path so that Selenium never runs selenium-manager (which
would download a driver); Chromium's fake audio device plays the wav once. The flags are
those this project's machines need as root with no network beyond loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

__all__ = [
    "CHROMEDRIVER", "CHROMIUM", "PageRun", "chromium", "fake_microphone", "find_talk", "page_state", "translate_in_page",
]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream",  # the microphone is allowed without asking
)


@contextmanager
def chromium(
    profile: Path, *flags: str, env: dict | None = None, size: tuple[int, int] = (1000, 700)
) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a new profile in ``profile`` and ``flags`` besides :data:`FLAGS`."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def fake_microphone(wav: Path) -> tuple[str, ...]:
    """Flags: Chromium's fake audio device plays ``wav`` once, in real time."""
    return ("--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required")


def page_state(page: webdriver.Chrome) -> dict[str, Any]:
    """What the page shows, with timings (``window.liveTranslation``, see ``static/app.js``)."""
    return page.execute_script("return window.liveTranslation")


class PageRun(NamedTuple):
    """A stream translated in the page: the page's state at its end (``words``: text, time,
    arrival), its lines as shown, and its microphone's rate."""

    state: dict[str, Any]
    lines: list[str]
    device_rate: int


def translate_in_page(
    page: webdriver.Chrome, url: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120.0,
    screenshot: tuple[float, Path] | None = None,
) -> PageRun:
    """Open the page at ``url``, press the button, let the audio go ``until`` the page's state
    says (e.g. ``lambda state: state["audioSeconds"] >= 60``), press it again and wait for the
    last words; ``screenshot``: (seconds of audio, PNG) taken while it translates."""
    page.get(url)
    page.find_element(By.ID, "mic").click()
    started = _wait(page, lambda state: state["state"] == "recording", timeout)
    if screenshot is not None:
        _wait(page, lambda state: state["audioSeconds"] >= screenshot[0], screenshot[0] + timeout)
        page.save_screenshot(str(screenshot[1]))
    _wait(page, until, timeout)
    page.find_element(By.ID, "mic").click()
    done = _wait(page, lambda state: state["state"] == "idle", timeout)
    lines = [line.get_attribute("textContent") for line in page.find_elements(By.CSS_SELECTOR, "#translation p")]
    return PageRun(done, lines, started["deviceRate"])


def _wait(page: webdriver.Chrome, condition, seconds: float) -> dict[str, Any]:
    WebDriverWait(page, seconds, poll_frequency=0.05).until(lambda p: condition(page_state(p)))
    return page_state(page)


def find_talk(received: np.ndarray, talk: np.ndarray, rate: int = 16000) -> tuple[float, list[int]]:
    """Where ``talk`` is in ``received`` (both 16-bit; the page resampled it there and back): the
    share of the talk's 100 ms windows of speech found whole (normalised correlation above 0.95:
    the two resamplings lose a little near 8 kHz) from 1 s before their place to 3 s after it, and
    where each was found (samples late). Under load a browser's audio clock misses its turn: it
    inserts silence, or drops some milliseconds."""
    window, early, late = rate // 10, rate, 3 * rate
    heard = received.astype(np.float64)
    starts = [s for s in range(0, len(talk) - window, window) if np.std(talk[s : s + window].astype(float)) > 300]
    lags = []
    for start in starts:
        piece = talk[start : start + window].astype(np.float64)
        low = max(0, start - early)
        span = heard[low : start + window + late]
        if len(span) < window:
            continue
        size = 1 << int(np.ceil(np.log2(len(span) + window)))  # correlation by FFT
        scores = np.fft.irfft(np.fft.rfft(span, size) * np.conj(np.fft.rfft(piece, size)), size)
        energy = np.concatenate([[0.0], np.cumsum(span**2)])
        scores = scores[: len(span) - window + 1] / np.sqrt(
            np.maximum(energy[window:] - energy[:-window], 1e-9) * np.sum(piece**2)
        )
        best = int(np.argmax(scores))
        if scores[best] > 0.95:
            lags.append(low + best - start)
    return len(lags) / max(1, len(starts)), lags
