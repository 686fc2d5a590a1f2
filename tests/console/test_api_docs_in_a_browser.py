"""The API docs page in a real browser, on a network without internet access (issue 16):
it draws every operation, asks no other host for anything, and breaks no rule of its
Content-Security-Policy. The HTML checks of tests/cloud/test_api_docs_offline.py passed
while the page itself said "Unable to render this definition" (Swagger UI 4 and
OpenAPI 3.1): only a browser shows what an operator sees."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Request

from tests.support import WAIT, running_cloud

pytestmark = pytest.mark.socket


async def test_the_docs_page_draws_every_operation_from_the_cloud_alone(
    tmp_path: Path, browser: Browser
) -> None:
    async with running_cloud(tmp_path, api_token="docs-token-0123456789") as cloud:
        origin = f"http://127.0.0.1:{cloud.port}"
        page = await browser.new_page()
        hosts: set[str] = set()
        problems: list[str] = []

        def requested(request: Request) -> None:
            hosts.add(urlsplit(request.url).netloc)

        def logged(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                problems.append(message.text)

        page.on("request", requested)
        page.on("console", logged)
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{origin}/api/v1/docs", timeout=WAIT * 1000)
        operations = page.locator(".opblock")
        await operations.first.wait_for(timeout=WAIT * 1000)
        drawn = await operations.count()
        paths = cloud.server.config.app.openapi()["paths"]  # type: ignore[union-attr]
        assert drawn == sum(len(methods) for methods in paths.values())
        assert await page.locator("text=Unable to render this definition").count() == 0
        assert hosts == {f"127.0.0.1:{cloud.port}"}  # nothing from a CDN or anywhere else
        assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p]
        assert not problems, problems
        await page.close()
