"""Headless Chromium driven by Selenium: Debian's ``chromium`` and ``chromium-driver`` (apt), never
a downloaded browser. Each browser gets a fresh profile directory and is stopped by its PIDs.

    with chromium(tmp_path) as driver:
        driver.get(url)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

__all__ = ["CHROMEDRIVER", "CHROMIUM", "chromium", "require_chromium"]


def require_chromium() -> None:
    """Fail (not skip) when the browser is missing: the UI tests are part of the default suite
    and .ci/run installs chromium and chromium-driver."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            pytest.fail(f"{path} is missing: apt-get install chromium chromium-driver")


@contextmanager
def chromium(profile_dir: Path, *, width: int = 1280, height: int = 900) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
    profile_dir.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-extensions", "--disable-default-apps",
                f"--user-data-dir={profile_dir}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile_dir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        driver.quit()  # ends the browser's processes; the driver's own process is stopped by PID below
        proc = getattr(service, "process", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(5)
