"""Waiting for something that happens asynchronously: poll until it holds, or fail saying what never happened.

The stack is eventually consistent in places (effects reach PostgreSQL after the workflow task, visibility lags
the workflow, a child starts after the update that asked for it answers), so tests, tools and benchmarks wait for
a condition rather than for a fixed time. Not for workflow code: it must not sleep on the wall clock.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(fn: Callable[[], Awaitable[T] | T], *, what: str, timeout: float, interval: float = 0.1,
                     until: Callable[[T], object] = bool,
                     ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
                     error: Callable[[str], BaseException] = AssertionError) -> T:
    """Call `fn` (sync or async) every `interval` s until `until(value)` holds (by default: the value is truthy),
    and return that value. Exceptions of the `ignore` types count as a value that does not hold (a server still
    starting, a run with no workflow task yet). After `timeout` s raises `error` (AssertionError by default) with
    a message naming `what` (what was awaited) and the last value or exception."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            value: Any = fn()
            if inspect.isawaitable(value):
                value = await value
        except ignore as e:
            last: object = e
        else:
            if until(value):
                return value
            last = value
        if loop.time() >= end:
            raise error(f"timed out after {timeout:g} s waiting for {what}; last: {_short(last)}")
        await asyncio.sleep(interval)


def _short(value: object, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
