"""A real browser for the web pages' tests: Debian's chromium, headless, driven by
Playwright (DESIGN.md). ``make test`` installs chromium (tools/test-deps); a machine
without it fails these tests with the reason, never skips them.

``console``: a cloud on loopback (wall clock, auto-registering stations) with one
operator of each role, and :class:`Console` to open its pages as one of them. Every page
opened this way records each request it makes and fails the test on a request to any
other host, on a script error, or on a Content-Security-Policy refusal; ``shot`` saves a
screenshot under ``build/console/`` (not committed) with the page's weight beside it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    async_playwright,
    expect,
)

from tests.cloud.raw_station201 import TOKEN, Hop, hop_cloud
from tests.support import WAIT

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# The cloud and the stations answer within WAIT on a loaded machine, not Playwright's 5 s.
expect.set_options(timeout=WAIT * 1000)

#: the operators of :func:`console`, one per role: user name -> (password, role)
OPERATORS = {
    "ada": ("ada-password-0123", "admin"),
    "otto": ("otto-password-0123", "operator"),
    "rita": ("rita-password-0123", "read-only"),
}


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


@dataclass
class Tab:
    """A page of the console in the browser, with what it requested and what went wrong."""

    page: Page
    origin: str
    hosts: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    bytes_in: int = 0  # response bodies since the last goto

    async def goto(self, path: str) -> None:
        self.bytes_in = 0
        await self.page.goto(self.origin + path, timeout=WAIT * 1000)

    async def shot(self, name: str) -> Path:
        """A full-page screenshot ``build/console/<name>.png``, and its weight (the
        bytes of every response since the last goto) in ``<name>.json``."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        # "load", not "networkidle": a page with live updates keeps its event stream open.
        # The test has waited for what it shows before it takes the picture.
        await self.page.wait_for_load_state("load", timeout=WAIT * 1000)
        path = SHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        viewport = self.page.viewport_size
        size = (
            {} if viewport is None else {"width": viewport["width"], "height": viewport["height"]}
        )
        (SHOTS / f"{name}.json").write_text(
            json.dumps({"page": name, "bytes": self.bytes_in, "viewport": size})
        )
        return path

    def refused(self, status: int) -> None:
        """Chromium logs each 4xx answer as a console error: take off those of ``status``
        the test asked for (at least one must be there; any other stays a problem)."""
        mark = f"status of {status} "
        found = [p for p in self.problems if "Failed to load resource" in p and mark in p]
        assert found, f"no {status} answer was logged: {self.problems}"
        self.problems[:] = [p for p in self.problems if p not in found]

    def check(self) -> None:
        """Fail on a request to another host, a script error or a CSP refusal."""
        own = urlsplit(self.origin).netloc
        assert self.hosts <= {own}, f"requests to other hosts: {sorted(self.hosts - {own})}"
        assert not self.problems, self.problems


@dataclass
class Console:
    """The cloud of :func:`console` and a way to open its pages as an operator."""

    hop: Hop
    browser: Browser
    origin: str
    contexts: list[BrowserContext] = field(default_factory=list)
    tabs: list[Tab] = field(default_factory=list)

    @property
    def api(self) -> httpx.AsyncClient:
        """The REST API with the bearer token (base /api/v1): the test's own hands."""
        return self.hop.api

    async def open(
        self, user: str | None = "ada", path: str = "/", *, viewport: dict[str, int] = DESKTOP
    ) -> Tab:
        """A new browser context (its own cookies), logged in as ``user`` through the login
        page (None: not logged in), at ``path``."""
        context = await self.browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        self.contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(WAIT * 1000)
        tab = Tab(page, self.origin)
        self.tabs.append(tab)

        def requested(request: Request) -> None:
            tab.hosts.add(urlsplit(request.url).netloc)

        async def finished(request: Request) -> None:
            with contextlib.suppress(Exception):
                sizes = await request.sizes()
                tab.bytes_in += int(sizes["responseBodySize"])

        def logged(message: Any) -> None:
            if message.type == "error" and "401" not in message.text:
                tab.problems.append(f"console: {message.text}")

        page.on("request", requested)
        page.on("requestfinished", finished)
        page.on("console", logged)
        page.on("pageerror", lambda error: tab.problems.append(f"script: {error}"))
        if user is not None:
            await tab.goto(f"/login?next={path}")
            await page.get_by_label("User name").fill(user)
            await page.get_by_label("Password").fill(OPERATORS[user][0])
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(self.origin + path)
        else:
            await tab.goto(path)
        return tab

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@contextlib.asynccontextmanager
async def console_with(tmp_path: Path, browser: Browser, **config: Any) -> AsyncIterator[Console]:
    """:func:`console` with CloudConfig fields of the test's own (a PKI dir, say)."""
    async with hop_cloud(tmp_path, wall_clock=True, **config) as hop:
        origin = f"http://127.0.0.1:{hop.cloud.port}"
        # bound to port 0: the URLs the cloud hands out (firmware downloads) name it now
        hop.cloud.config.public_url = hop.cloud.config.public_url or origin
        for name, (password, role) in OPERATORS.items():
            await hop.cloud.store.operators.add(name, password, role)
        made = Console(hop, browser, origin)
        try:
            yield made
            for tab in made.tabs:
                tab.check()
        finally:
            await made.close()


@pytest.fixture
async def console(tmp_path: Path, browser: Browser) -> AsyncIterator[Console]:
    """A cloud on the wall clock with operators ada (admin), otto (operator) and rita
    (read-only); the pages' checks (:meth:`Tab.check`) run when the test ends."""
    async with console_with(tmp_path, browser) as made:
        yield made


__all__ = ["DESKTOP", "OPERATORS", "PHONE", "SHOTS", "TOKEN", "Console", "Tab", "console_with"]
