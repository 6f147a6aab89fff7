"""Headless Chromium through Selenium, with Debian's chromedriver named explicitly."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def browser() -> Iterator:
    """A fresh headless Chromium; `make test` installs it (apt) when missing."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is not installed: run `make test` (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="emcoins-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1200,1400", f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # The driver's path is given, so Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def secured_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A second whole stack whose API and event streams need a bearer token."""
    from localstack.stack import Stack, StackConfig

    config = StackConfig(
        api_port=0,
        drawsource_port=0,
        api_workers=1,
        env={"EMCOINS_API_TOKENS": "page-token-3f9a1c7e5b", "EMCOINS_FETCH_BATCH_SIZE": "10"},
        log_dir=tmp_path_factory.mktemp("secured-stack-logs"),
    )
    with Stack(config) as running:
        yield running
