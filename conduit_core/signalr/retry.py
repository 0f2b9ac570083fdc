"""The reconnect policy: after a lost connection, how long to wait before each attempt.

The shape is the TS client's ``IRetryPolicy``: before every attempt the policy is told how many
attempts came before, how long reconnecting has taken, and why; it answers a delay in seconds or
``None`` to give up. :class:`RetrySchedule` holds that bookkeeping for one reconnect episode, so
an I/O loop only sleeps the delay it is given and reports each failure back. No clock is read
here: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# ``withAutomaticReconnect()`` without arguments: 0, 2, 10 and 30 seconds, then give up.
DEFAULT_RECONNECT_DELAYS: tuple[float, ...] = (0.0, 2.0, 10.0, 30.0)


@dataclass(frozen=True)
class RetryContext:
    """What a reconnect policy is told before each attempt (the TS ``RetryContext``)."""

    previous_retry_count: int
    elapsed: float  # seconds since reconnecting began
    retry_reason: BaseException | str | None


@runtime_checkable
class RetryPolicy(Protocol):
    def next_retry_delay(self, context: RetryContext) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop reconnecting."""
        ...


class DelayListPolicy:
    """A fixed schedule: attempt *n* waits ``delays[n]``; after the last one, give up
    (``withAutomaticReconnect([...])``; the default is 0, 2, 10, 30 s)."""

    def __init__(self, delays: Iterable[float] = DEFAULT_RECONNECT_DELAYS) -> None:
        self.delays = tuple(float(d) for d in delays)
        if any(d < 0 for d in self.delays):
            raise ValueError("reconnect delays must not be negative")

    def next_retry_delay(self, context: RetryContext) -> float | None:
        n = context.previous_retry_count
        return self.delays[n] if n < len(self.delays) else None

    def __repr__(self) -> str:
        return f"DelayListPolicy({list(self.delays)})"


class ExponentialBackoffPolicy:
    """The guide's custom policy: ``min(base · 2^n, cap)`` (1 s, 2 s, 4 s … 30 s). The guide's
    version never gives up; ``max_attempts`` bounds it."""

    def __init__(self, base: float = 1.0, cap: float = 30.0, max_attempts: int | None = None) -> None:
        self.base, self.cap, self.max_attempts = base, cap, max_attempts

    def next_retry_delay(self, context: RetryContext) -> float | None:
        n = context.previous_retry_count
        if self.max_attempts is not None and n >= self.max_attempts:
            return None
        return min(self.base * 2.0 ** min(n, 64), self.cap)

    def __repr__(self) -> str:
        return f"ExponentialBackoffPolicy(base={self.base}, cap={self.cap}, max_attempts={self.max_attempts})"


class CallablePolicy:
    """Adapts ``fn(context) -> float | None`` to :class:`RetryPolicy`."""

    def __init__(self, fn: Callable[[RetryContext], float | None]) -> None:
        self.fn = fn

    def next_retry_delay(self, context: RetryContext) -> float | None:
        return self.fn(context)


PolicyLike = RetryPolicy | Sequence[float] | Callable[[RetryContext], float | None] | bool | None


def as_retry_policy(value: PolicyLike) -> RetryPolicy | None:
    """``None``/``False``: no automatic reconnect; ``True``: the default delays; a list of delays;
    a callable; or a policy object."""
    if value is None or value is False:
        return None
    if value is True:
        return DelayListPolicy()
    if isinstance(value, RetryPolicy):
        return value
    if callable(value):
        return CallablePolicy(value)
    return DelayListPolicy(value)


class RetrySchedule:
    """One reconnect episode: started at ``started`` because of ``reason``.

    Call :meth:`next_delay` before the first attempt and after each failed one; it counts the
    attempts and asks the policy. A policy that raises, or answers a negative delay, is read as
    "give up" and "no wait" respectively, as the TS client does.
    """

    def __init__(self, policy: RetryPolicy | None, started: float,
                 reason: BaseException | str | None) -> None:
        self.policy = policy
        self.started = started
        self.attempts = 0
        self.last_error = reason
        self.exhausted = False

    def next_delay(self, now: float, error: BaseException | str | None = None) -> float | None:
        """The wait before the next attempt, or ``None`` (and ``exhausted``) to give up.

        ``error`` is why the previous attempt failed (omit it before the first attempt).
        """
        if self.exhausted:
            return None
        if error is not None:
            self.last_error = error
        if self.policy is None:
            delay = None
        else:
            try:
                delay = self.policy.next_retry_delay(
                    RetryContext(self.attempts, now - self.started, self.last_error))
            except Exception:  # a broken policy stops reconnecting rather than the client
                delay = None
        if delay is None:
            self.exhausted = True
            return None
        self.attempts += 1
        return max(0.0, float(delay))
