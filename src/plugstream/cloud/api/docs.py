"""The API docs page, Swagger UI, served by the cloud itself (issue 16).

FastAPI's own docs page loads Swagger UI from a public CDN, so on an operator network
without internet access it stays blank. Here the script, the stylesheet and the icon come
from the installed ``swagger-ui-py`` package (Swagger UI 5, which reads FastAPI's OpenAPI
3.1; nothing copied into the repository),
and a Content-Security-Policy tells the browser to load nothing from another host: only
the cloud's own files, and the page's one inline script by its hash.

ReDoc stays off (``redoc_url=None``): it would need a bundle of its own.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import swagger_ui  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["ASSETS", "PackageAssets", "content_security_policy", "serve_docs"]

SWAGGER_UI_DIR = Path(swagger_ui.__file__).parent / "static"
"""The installed package's Swagger UI files."""

ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
"""The files the docs page loads; the package's other files are not served."""

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _sha256_source(script: str) -> str:
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def content_security_policy(html: str) -> str:
    """The policy of a docs page: everything from the cloud itself, and of inline scripts
    only those of ``html`` (by hash), so an injected or foreign script never runs."""
    hashes = "".join(f" {_sha256_source(s)}" for s in _INLINE_SCRIPT.findall(html))
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self'{hashes}",
            "style-src 'self'",
            "img-src 'self' data:",  # swagger-ui.css draws its icons as data: URIs
            "connect-src 'self'",  # the OpenAPI document and "Try it out"
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": content_security_policy(html)})


class PackageAssets(StaticFiles):
    """Swagger UI's files from the package, only :data:`ASSETS`: not its ``index.html``
    (a page with its own inline script), source maps or other builds."""

    def __init__(self) -> None:
        super().__init__(directory=SWAGGER_UI_DIR)

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ASSETS:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def serve_docs(app: FastAPI, prefix: str) -> None:
    """Swagger UI at ``{prefix}/docs`` for ``app``'s OpenAPI document, its files under
    ``{prefix}/docs/static/``; ``app`` is made with ``docs_url=None`` (no CDN page).

    The page, its files and the OpenAPI document need no token, as a browser's page load
    brings none; the operator gives the bearer token to the Authorize button."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the docs need the app's OpenAPI document (openapi_url)")
    docs_url = f"{prefix}/docs"
    static = f"{docs_url}/static"
    redirect_url = f"{docs_url}/oauth2-redirect"
    app.mount(static, PackageAssets(), name=f"swagger-ui:{prefix}")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{static}/swagger-ui.css",
            swagger_favicon_url=f"{root}{static}/favicon-32x32.png",
            oauth2_redirect_url=root + redirect_url,
            swagger_ui_parameters={"validatorUrl": None},  # no badge from swagger.io
        )
        return _with_policy(page)

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _with_policy(get_swagger_ui_oauth2_redirect_html())
