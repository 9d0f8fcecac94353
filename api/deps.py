"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api import ratelimit, requestlog
from api.auth import User, authenticate
from api.errors import Problem
from settings import Settings

_bearer = HTTPBearer(auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_pool(request: Request) -> asyncpg.Pool:
    return request.app.state.pool


def get_client(request: Request) -> Client:
    client = request.app.state.temporal
    if client is None:
        raise Problem(503, "temporal-unavailable", "the workflow engine is not connected yet",
                      headers={"Retry-After": "5"})
    return client


async def current_user(request: Request,
                       creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    if creds is None or creds.scheme.lower() != "bearer":
        ratelimit.count_anonymous(request)
        raise Problem(401, "unauthenticated", "a bearer token is required",
                      headers={"WWW-Authenticate": "Bearer"})
    try:
        user = await authenticate(request.app.state.settings, creds.credentials)
    except Problem as e:
        if e.status == 401:
            ratelimit.count_anonymous(request)
        raise
    ratelimit.count_user(request, user.sub)
    request.state.user = user
    requestlog.bind_user(user)
    return user


def request_id(request: Request) -> str:
    """The request's id: the one requestlog.RequestContext gave it (the one in its logs and its X-Request-ID
    response header), else the client's X-Request-ID or a new one."""
    rid = getattr(request.state, "request_id", None) or requestlog.request_id_from(request.headers)
    request.state.request_id = rid
    return rid


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DbPool = Annotated[asyncpg.Pool, Depends(get_pool)]
TemporalClientDep = Annotated[Client, Depends(get_client)]
CurrentUser = Annotated[User, Depends(current_user)]
RequestId = Annotated[str, Depends(request_id)]
