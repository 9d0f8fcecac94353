"""The operations web view (issue 6): server-rendered pages under /web, styled with NHS.UK frontend.

`install(app)` adds the pages, their error pages and the vendored static files to the FastAPI app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def install(app: FastAPI) -> None:
    from api.web.routes import PREFIX, forbidden_page, router, signin_redirect
    from api.web.session import Forbidden, SignInRequired

    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="web-static")
    app.add_exception_handler(SignInRequired, signin_redirect)  # type: ignore[arg-type]
    app.add_exception_handler(Forbidden, forbidden_page)  # type: ignore[arg-type]
