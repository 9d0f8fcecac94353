"""Requests per user: over RATE_LIMIT a user gets 429 (problem+json) with Retry-After.

Counted after the token is verified, per `sub`, so nobody can spend another person's allowance; requests
without a valid token are counted per client address. Moving windows from the `limits` library, kept in
process memory: each API process counts on its own (docs/limits.md).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from api.errors import Problem


class RateLimiter:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.items: list[RateLimitItem] = parse_many(spec)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, key: str) -> None:
        for item in self.items:
            if not self.limiter.hit(item, key):
                reset = self.limiter.get_window_stats(item, key).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                raise Problem(429, "rate-limited", f"too many requests: at most {item.amount} per "
                              f"{item.get_expiry()} s for each user", headers={"Retry-After": str(retry)},
                              retry_after=retry)


def limiter(request: Request) -> RateLimiter:
    state = request.app.state
    settings = state.settings
    current = getattr(state, "rate_limiter", None)
    if current is None or current.spec != settings.rate_limit:
        current = state.rate_limiter = RateLimiter(settings.rate_limit)
    return current


def count_user(request: Request, sub: str) -> None:
    limiter(request).check(f"user:{sub}")


def count_anonymous(request: Request) -> None:
    limiter(request).check(f"addr:{request.client.host if request.client else 'unknown'}")
