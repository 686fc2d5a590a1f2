"""A real browser for the web pages' tests: Debian's chromium, headless, driven by
Playwright (DESIGN.md). ``make test`` installs chromium (tools/test-deps); a machine
without it fails these tests with the reason, never skips them."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium") or CHROMIUM
    if shutil.which(executable) is None:
        pytest.fail(f"no chromium at {CHROMIUM}: run tools/test-deps as root (apt chromium)")
    async with async_playwright() as playwright:
        # --no-sandbox: the suite runs as root in CI, where chromium's sandbox refuses to start
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()
