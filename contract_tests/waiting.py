"""Waiting for a condition: the one poll loop of the contract suite and of the project's tests.

Both ask the same question — "is it true yet?" — of things that change on other threads or
processes (a simulator's timeline, a client's observations). Every wait is bounded twice: by time
(``timeout``) and by the number of times the predicate is asked (``max_polls``, by default what
the timeout allows at the interval, plus one), so a predicate that is slow to answer cannot stretch
a wait far past its timeout, and a clock that stalls cannot make it endless.

The predicate is always asked at least once, and once more when time runs out, so a condition that
became true during the last sleep is seen. A predicate that raises ends the wait with its error
(use that to stop early, e.g. when the client being watched has exited).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL = 0.02


class WaitTimeout(AssertionError):
    """The condition was not met in time (an ``AssertionError``, so a test fails rather than errors)."""


class _Budget:
    """How many more times, and until when, a predicate may be asked."""

    def __init__(self, timeout: float, interval: float, max_polls: int | None) -> None:
        if not (math.isfinite(timeout) and timeout >= 0) or not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"timeout must be finite and >= 0, interval > 0 (got {timeout!r}, {interval!r})")
        self.deadline = time.monotonic() + timeout
        self.interval = interval
        self.left = max_polls if max_polls is not None else math.ceil(timeout / interval) + 1
        if self.left < 1:
            raise ValueError(f"max_polls must be at least 1, not {max_polls!r}")

    def asked(self) -> float | None:
        """Count one question; the pause before the next, or ``None`` when the budget is spent."""
        self.left -= 1
        remaining = self.deadline - time.monotonic()
        if self.left <= 0 or remaining <= 0:
            return None
        return min(self.interval, remaining)


def poll_until(predicate: Callable[[], T], timeout: float, *, interval: float = DEFAULT_INTERVAL,
               max_polls: int | None = None) -> T:
    """The predicate's first truthy value, or its last (falsy) one when the budget runs out."""
    budget = _Budget(timeout, interval, max_polls)
    while True:
        value = predicate()
        if value:
            return value
        pause = budget.asked()
        if pause is None:
            return value
        time.sleep(pause)


def _timeout_message(timeout: float, what: str, predicate: object, describe: Callable[[], str] | None) -> str:
    detail = f"; {describe()}" if describe is not None else ""
    return f"not within {timeout:g} s: {what or predicate}{detail}"


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "", *,
               interval: float = DEFAULT_INTERVAL, max_polls: int | None = None,
               describe: Callable[[], str] | None = None) -> T:
    """The predicate's first truthy value; :class:`WaitTimeout` naming ``what`` (and ``describe()``,
    the state worth seeing when it fails) when the budget runs out."""
    value = poll_until(predicate, timeout, interval=interval, max_polls=max_polls)
    if not value:
        raise WaitTimeout(_timeout_message(timeout, what, predicate, describe))
    return value


async def async_wait_until(predicate: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "",
                           *, interval: float = DEFAULT_INTERVAL, max_polls: int | None = None,
                           describe: Callable[[], str] | None = None) -> T:
    """:func:`wait_until` for code on an event loop: sleeps with ``asyncio.sleep``, and awaits the
    predicate's answer when it is a coroutine (a predicate that asks over HTTP)."""
    budget = _Budget(timeout, interval, max_polls)
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        pause = budget.asked()
        if pause is None:
            raise WaitTimeout(_timeout_message(timeout, what, predicate, describe))
        await asyncio.sleep(pause)
