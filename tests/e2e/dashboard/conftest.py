"""Headless Chromium (Debian's ``chromium`` package, driven by Playwright; no browser is ever downloaded)
against real ``keyledger serve`` processes. One browser for these tests, a fresh context per test.

Without chromium the tests here are skipped with one line saying how to get it; under ``CI=true`` such a
skip is a failure (CI must run them: ``make test`` installs chromium when it runs as root with apt-get).
Screenshots of each page go to ``test-artifacts/dashboard/`` (not committed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import sign_in
from tests.support.paths import REPO_ROOT
from tests.support.server import ApiServer

ARTIFACTS = REPO_ROOT / "test-artifacts" / "dashboard"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOW = "run `make install` as root (it apt-get installs chromium), or `apt-get install chromium`"


def chromium_path() -> str | None:
    """Debian's chromium, if installed."""
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests, closed after the last of them: Playwright's sync API runs
    an event loop of its own, which must be gone before other tests run theirs."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"browser tests need Debian's chromium, which is not installed: {HOW}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package: `make install` installs the dev dependencies")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; waits fail after 15 s instead of Playwright's 30 s."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Any:
    """``shot(page, "name")`` saves a full-page screenshot as test-artifacts/dashboard/<test>-<n>-<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    count = [0]

    def take(page: Any, name: str) -> Path:
        count[0] += 1
        path = ARTIFACTS / f"{request.node.name}-{count[0]:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Under CI=true a skipped browser test fails: CI must have run it."""
    outcome = yield
    report = outcome.get_result()
    here = item.path.is_relative_to(Path(__file__).parent)
    if report.skipped and here and os.environ.get("CI") == "true":
        report.outcome = "failed"
        report.longrepr = f"browser test skipped on CI (CI=true): {call.excinfo.value if call.excinfo else ''}"


@pytest.fixture
def dashboard(api: ApiServer, admin: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in to the dashboard with the bootstrap admin key."""
    with httpx.Client(base_url=api.url, timeout=10) as browser:
        signed = sign_in(browser, admin)
        assert signed.status_code == 303, signed.text
        yield browser
