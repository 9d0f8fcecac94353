"""Security headers on every response (issue 17, finding 11), and /docs served from vendored files.

The pages load only their own scripts and styles: no inline script but NHS.UK frontend's one fixed line
(allowed by its hash), no style attribute, no framing, no other origin; `/docs` (Swagger UI, where people
paste tokens) loads the Swagger UI bundle vendored under api/web/static/vendor/swagger-ui, never a CDN.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _inline_script_hashes() -> list[str]:
    """CSP hashes of the inline scripts the pages carry: NHS.UK frontend's page template opens <body> with
    one fixed line that marks the page as having JavaScript."""
    from api.web.routes import env

    source = env.loader.get_source(env, "nhsuk/template.jinja")[0]  # type: ignore[union-attr]
    return ["'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
            for m in re.findall(r">(document\.body\.className[^<]*)</script>", source)]


def _policy(script: str, style: str) -> str:
    return "; ".join([
        "default-src 'self'", f"script-src {script}", f"style-src {style}", "img-src 'self' data:",
        "font-src 'self'", "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
        "frame-ancestors 'none'",
    ])


DOCS_PATHS = ("/docs",)


class SecurityHeaders:
    """Pure ASGI middleware: adds the headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        common = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                  # same-origin, not no-referrer: a same-origin form POST must keep its Origin header, which
                  # the sign-in and sign-out forms are checked by.
                  "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}
        self.pages = {**common, "Content-Security-Policy": _policy(" ".join(["'self'", *_inline_script_hashes()]),
                                                                   "'self'")}
        # Swagger UI sets style attributes as it renders (React); scripts stay 'self' only.
        self.docs = {**common, "Content-Security-Policy": _policy("'self'", "'self' 'unsafe-inline'")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.docs if scope["path"] in DOCS_PATHS else self.pages

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in extra.items():
                    if k not in headers:
                        headers[k] = v
            await send(message)

        await self.app(scope, receive, send_with_headers)


docs_router = APIRouter(include_in_schema=False)

_DOCS = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} – API documentation</title>
<link rel="stylesheet" href="/web/static/vendor/swagger-ui/swagger-ui.css">
<link rel="icon" href="/web/static/nhsuk/assets/images/favicon.ico">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/web/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/web/static/docs.js"></script>
</body>
</html>
"""


@docs_router.get("/docs")
async def docs() -> HTMLResponse:
    return HTMLResponse(_DOCS.format(title="Special measures regime orchestrator"))
