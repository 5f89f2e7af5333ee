"""A real browser for the report pages' tests: Debian's headless Chromium (``apt-get install chromium
chromium-driver``; ``scripts/bootstrap.sh`` installs them as root) driven by Selenium (the dev extra) through
``/usr/bin/chromedriver``, never a driver or browser downloaded by Selenium Manager (vendor CDNs are not
reachable). Without a browser the tests that need one are skipped, unless ``SPIDRKIT_REQUIRE_BROWSER=1``
(CI sets it), which turns a missing browser into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRED = os.environ.get("SPIDRKIT_REQUIRE_BROWSER") == "1"
BROWSERS = ("chromium", "chromium-browser")
DRIVER = "chromedriver"


def _missing() -> str | None:
    """Why no browser can run here (``None`` when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not any(shutil.which(b) for b in BROWSERS):
        return "no chromium (sudo apt-get install chromium chromium-driver)"
    if shutil.which(DRIVER) is None:
        return "no chromedriver (sudo apt-get install chromium-driver)"
    return None


def available() -> bool:
    """Whether a headless browser can run here."""
    return _missing() is None


def need_browser() -> None:
    """Skip the test (or fail it, when required) without a browser."""
    why = _missing()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"SPIDRKIT_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1600) -> Iterator:
    """A headless Chromium WebDriver (skips or fails without one, see :func:`need_browser`)."""
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(shutil.which(b) for b in BROWSERS if shutil.which(b))
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def load(driver, page: Path) -> dict:
    """Open ``page`` (file://), wait for its load event; its images ``[(alt, complete, naturalWidth)]``, its
    title, and the count of resources fetched from anywhere but the page itself (data: URIs excluded)."""
    driver.get(page.resolve().as_uri())
    driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        if (document.readyState === "complete") { done(); } else { window.addEventListener("load", done); }""")
    return driver.execute_script("""
        return {images: Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]),
                title: document.title,
                fetched: performance.getEntriesByType("resource").filter(e => !e.name.startsWith("data:")).length};
    """)


def column(driver, table: int, col: int = 0) -> list[str]:
    """The text of column ``col`` of the ``table``-th table's body, in its displayed order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table')[arguments[0]].tBodies[0].rows)"
        ".map(r => r.cells[arguments[1]].textContent.trim());", table, col)


def click_header(driver, table: int, col: int) -> None:
    driver.find_elements("css selector", "table")[table].find_elements("css selector", "th")[col].click()
