"""Debian's Chromium driven by Selenium through the system chromedriver: nothing here
downloads a browser or a driver. `browser()` gives a fresh headless Chromium (its own
empty profile, no background networking: this machine has no network to reach), and
`console_errors()` what the page logged at error level."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not any(Path(p).exists() for p in CHROMIUM):
        return "Debian's chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)"
    if not Path(CHROMEDRIVER).exists():
        return "Debian's chromium-driver is not installed (apt-get install chromium-driver; .ci/run does)"
    return None


@contextmanager
def browser(width: int = 1280, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ingestd-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = next(p for p in CHROMIUM if Path(p).exists())
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console(driver) -> list[dict]:
    """Everything the page logged since the last call (the driver hands each entry out once)."""
    return driver.get_log("browser")


def errors(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e.get("level") == "SEVERE"]


def wait_ready(driver, page: str, timeout: float = 30.0) -> None:
    """Until the dashboard says `page` has drawn its data (its `data-ready` mark)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: d.execute_script("return document.body.dataset.ready") == page, f"the {page} page to be ready")
