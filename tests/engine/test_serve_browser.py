"""The serve web page in a real browser: Debian's chromium + chromium-driver, headless, through
selenium, against `hvinfra serve t2v` on a real engine (serve-standin image). Submit a prompt,
watch the progress bar move (events stream), see the video element fetch the video.
A screenshot is kept in test-artifacts/serve-page.png."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("selenium.webdriver")
pytest.importorskip("fastapi")

import servekit
import test_generate
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from servekit import Serve

serve_image = servekit.serve_image
serve = servekit.serve
generate_image = test_generate.generate_image

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        from dockerd import in_ci

        message = "chromium and chromium-driver (apt) are needed for the browser test"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1100,900", f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_page_submits_shows_progress_moving_and_the_finished_video(
    serve: Serve, browser: webdriver.Chrome
) -> None:
    serve.start()
    browser.get(serve.url + "/")
    assert browser.title == "hvinfra serve t2v"
    browser.find_element(By.ID, "prompt").send_keys("a red fox in the snow STANDIN_SLOW")
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("6")
    browser.find_element(By.ID, "go").click()

    seen: list[float] = []
    deadline = time.monotonic() + 90
    state = ""
    while state != "done":
        assert time.monotonic() < deadline, f"progress seen {seen}, state {state!r}"
        jobs = browser.find_elements(By.CSS_SELECTOR, "#jobs .job")
        if jobs:
            bar = jobs[0].find_element(By.TAG_NAME, "progress")
            value = float(bar.get_attribute("value") or 0)
            if not seen or seen[-1] != value:
                seen.append(value)
            state = jobs[0].find_element(By.CSS_SELECTOR, ".state").text
            assert state not in ("failed", "cancelled"), jobs[0].text
            if 0 < value < 100 and len(seen) == 3:
                ARTIFACTS.mkdir(exist_ok=True)
                browser.save_screenshot(str(ARTIFACTS / "serve-page-running.png"))
        time.sleep(0.1)
    moving = [v for v in seen if 0 < v < 100]
    assert len(moving) >= 2 and moving == sorted(moving), seen

    video = browser.find_element(By.CSS_SELECTOR, "#jobs .job video")
    src = video.get_attribute("src") or ""
    assert "/v1/jobs/" in src and src.endswith("/video")
    # The stand-in's .mp4 is a few bytes of text, so no frame decodes; what the page must do
    # is point the player at the video, which the server serves with Range support.
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {headers: {Range: 'bytes=0-5'}})"
        ".then(async r => done([r.status, await r.text()]));",
        src,
    )
    assert status == [206, "STANDI"]
    deadline = time.monotonic() + 10
    while not any("/video HTTP/1.1" in line for line in serve.lines):
        assert time.monotonic() < deadline, "the video element never requested the video"
        time.sleep(0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "serve-page.png"))
