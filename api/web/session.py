"""Who is looking at the web pages: the same users, roles and trust scopes as the API.

Local mode: a person pastes a token minted with `regime token ...` into the sign-in page and it is kept
in an HttpOnly cookie. Behind an OIDC proxy in production the proxy sends the user's access token as a
bearer header, which is read first (see docs/web.md).
"""

from __future__ import annotations

from fastapi import Request

from api import ratelimit, requestlog
from api.auth import NATIONAL_ROLES, SCOPED_ROLES, User, authenticate
from api.errors import Problem

COOKIE = "sm_session"
VIEW_ROLES = ("operations", *NATIONAL_ROLES, *SCOPED_ROLES)


class SignInRequired(Exception):
    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


class Forbidden(Exception):
    def __init__(self, user: User | None, detail: str) -> None:
        super().__init__(detail)
        self.user = user
        self.detail = detail


def token_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(COOKIE) or None


async def optional_user(request: Request) -> User | None:
    token = token_from(request)
    if not token:
        return None
    try:
        return await authenticate(request.app.state.settings, token)
    except Problem:
        return None


async def viewer(request: Request) -> User:
    """The signed-in user who may use the operations view, or an exception the router turns into a page."""
    token = token_from(request)
    if not token:
        raise SignInRequired()
    try:
        user = await authenticate(request.app.state.settings, token)
    except Problem as e:
        if e.status != 401:  # the identity provider is unreachable: signing in again would not help
            raise
        raise SignInRequired("Your session has expired. Sign in again." if e.kind == "token-expired"
                             else "Your sign-in was not valid. Sign in again.") from None
    ratelimit.count_user(request, user.sub)
    request.state.user = user
    requestlog.bind_user(user)
    if not user.has(*VIEW_ROLES):
        raise Forbidden(user, "The operations view is for operations staff, the regulator, CQC, and the "
                              "improvement directors, trusts and commissioners of the regimes they are assigned to.")
    return user


def sees_all(user: User) -> bool:
    return user.has("operations", *NATIONAL_ROLES)
