"""The web page in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

A small model trained for a few seconds on FSDD takes 10-15 is exported to ONNX and served by
``spkid serve`` in a subprocess on a free loopback port; the six speakers are enrolled through the API
with takes 1-2 of every digit. The browser then uploads unseen real clips (take 0) and must show the
right speaker at the top of the bar chart, and enrols a new voice through the page.

Skips when chromium, chromedriver or selenium are missing -- except under CI=true, where it fails.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.export_support import FSDD_SPEAKERS, fsdd_files, fsdd_onnx_model, start_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUERIES = {"theo": "7_theo_0.wav", "nicolas": "3_nicolas_0.wav"}  # unseen clips


def _require_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python package selenium")
    for mod in ("flask", "torch", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(f"python package {mod}")
    if missing:
        msg = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def service(fsdd_dir, tmp_path_factory):
    _require_browser()
    from spkid.app.serve.client import Client

    tmp = tmp_path_factory.mktemp("serve")
    model = fsdd_onnx_model(fsdd_dir, tmp)
    proc, url = start_server(model, tmp / "gallery.npz", tmp / "server.log")
    try:
        client = Client(url)
        for s in FSDD_SPEAKERS:
            r = client.enroll(s, fsdd_files(fsdd_dir, s, (1, 2)))
            assert r["http_status"] == 200, r
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser(service):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="spkid-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1000,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _identify(driver, clip: Path) -> tuple[str, list[str]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.getElementById('result-speaker').textContent = '-';")
    driver.find_element(By.ID, "file").send_keys(str(clip))
    driver.find_element(By.ID, "identify").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "result-speaker").text not in ("-", ""))
    rows = driver.find_elements(By.CSS_SELECTOR, "#bars .bar-row")
    return driver.find_element(By.ID, "result-speaker").text, [r.get_attribute("data-speaker") for r in rows]


@pytest.mark.parametrize("speaker", sorted(QUERIES))
def test_page_shows_the_right_speaker(browser, service, fsdd_dir, speaker, tmp_path):
    browser.get(service + "/")
    best, bars = _identify(browser, fsdd_dir / QUERIES[speaker])
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert best == speaker
    assert bars[0] == speaker and len(bars) == 5 and set(bars) <= set(FSDD_SPEAKERS)


def test_enrol_a_new_voice_through_the_page(browser, service, fsdd_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(service + "/")
    clip = fsdd_dir / "5_jackson_9.wav"
    browser.find_element(By.ID, "file").send_keys(str(clip))
    browser.find_element(By.ID, "name").send_keys("newcomer")
    browser.find_element(By.ID, "enroll").click()
    WebDriverWait(browser, 30).until(lambda d: "newcomer" in d.find_element(By.ID, "speakers").text)
    best, bars = _identify(browser, clip)  # the very clip just enrolled: cosine 1 to its only utterance
    assert best == "newcomer" and bars[0] == "newcomer"


def test_timeline_view(browser, service, fsdd_dir, tmp_path):
    """A recording of three speakers with pauses: the page draws its waveform and one coloured block per
    segment of ``POST /identify?timeline=1``, in order, named as the service names them."""
    import json
    import urllib.request
    import uuid

    import numpy as np
    import soundfile as sf
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from spkid.audio.io import load_audio

    pause = np.zeros(8000, np.float32)
    clips = [fsdd_dir / name for name in ("7_theo_0.wav", "3_nicolas_0.wav", "4_george_0.wav")]
    y = np.concatenate([pause] + [p for c in clips for p in (load_audio(c, sr=8000), pause)])
    path = tmp_path / "meeting.wav"
    sf.write(path, y, 8000, subtype="PCM_16")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"meeting.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(service + "/identify?timeline=1", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    want = json.loads(urllib.request.urlopen(req, timeout=60).read())["segments"]
    assert want

    browser.get(service + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "timeline").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#track .seg"))
    blocks = browser.find_elements(By.CSS_SELECTOR, "#track .seg")
    assert [b.text for b in blocks] == [s["speaker"] or "unknown" for s in want]
    lefts = [float(b.value_of_css_property("left").rstrip("px")) for b in blocks]
    assert lefts == sorted(lefts) and lefts[0] > 0  # the first second is silence
    inked = browser.execute_script(
        "const c = document.getElementById('wave'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;")
    assert inked > 1000  # the waveform was drawn
