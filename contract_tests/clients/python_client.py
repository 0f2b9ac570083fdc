"""The Python reference client: the guide's documented behaviour behind the driver protocol.

Run ``python -m contract_tests.clients.python_client [--mutant NAME]`` with ``CONDUIT_BASE_URL``
and ``CONDUIT_VIRTUAL_KEY`` set; it reads commands (``track``, ``untrack``, ``shutdown``) as JSON
Lines on stdin and writes observations as JSON Lines on stdout (nothing else goes there; logs go
to stderr). See docs/reference-clients.md for the knobs and the mutants, and
../shared/spec/driver-protocol.md for the protocol.

What it does:

- ``via: "signalr"``: one hub connection per hub (:mod:`contract_tests.clients.hub_client`, with
  automatic reconnect), ``SubscribeToTask`` / ``SubscribeToRequest``, reports from the hub's
  events, ``Unsubscribe…`` after the terminal event.
- ``via: "polling"``: ``GET /api/tasks/{id}/status`` at once, then one interval after each answer
  (so the server never sees two polls closer than the interval); at most ``POLL_LIMIT`` polls,
  then ``timeout``; failed polls are logged and polling goes on; ``Retry-After`` on a non-200
  holds back every poll of the client at least that long.
- ``via: "auto"``: SignalR when the hub is connected or can be connected now, polling otherwise
  (the guide's ``RealTimeClient``); tasks of a connection lost for good move to polling.
- After an automatic reconnect or a manual restart, every active task of that hub is subscribed
  again and polled once (no closer than the interval to its previous poll), which reports what
  ended while the client was away.
- A Close without ``allowReconnect``, or an exhausted reconnect schedule, is followed by one
  manual ``start()`` after ``MANUAL_RESTART_MS`` (the guide's ``onclose`` handler); if that fails
  too, the connection is lost for good (a later ``track`` may try again, not sooner than
  ``MANUAL_RESTART_MS`` after the failure).
- Each outcome is reported once; progress only when higher than the last reported, and never
  after the outcome. ``state`` observations carry the hub's path in ``hub``.

The dialect is the simulator profile named by ``CONDUIT_PROFILE`` (default ``documented``): its
hub names, event decoding and status routes, so the same client follows ``conduit-2025.08``'s
``ImageGeneration*`` objects and ``/v1`` status routes. It subscribes again after a reconnect in
either dialect (the real SDK does not).

Knob spellings beyond plain numbers: ``CONDUIT_RECONNECT_DELAYS_MS`` takes ``formula`` (the
guide's ``min(1000·2^n, 30000)``, never giving up), ``formula:N`` (the same for N attempts) or
``none`` (no automatic reconnect); ``CONDUIT_TRANSPORT`` takes a comma-separated list, tried in
the server's order. ``CONDUIT_LOG_LEVEL`` sets the stderr log level (default INFO).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from contract_tests.clients.hub_client import (
    DEFAULT_RECONNECT_DELAYS,
    DelayListPolicy,
    ExponentialBackoffPolicy,
    HubClientError,
    HubConnection,
    HubConnectionState,
    HubInvocationError,
    RetryContext,
    RetryPolicy,
    ServerClosedError,
    TransportType,
)
from simulator.profiles import HubSpec, Profile, load_profile

log = logging.getLogger("python-reference")

NAME = "python-reference"
ROLES = ["signalr", "polling"]

# Each mutant breaks one rule of contract.md (and, as far as possible, nothing else).
MUTANTS: dict[str, str] = {
    "no-backoff": "reconnects at once, again and again, ignoring the delays (C-RECONNECT-SCHEDULE)",
    "short-delays": "uses delays of a tenth of the declared ones (C-RECONNECT-SCHEDULE)",
    "never-gives-up": "keeps reconnecting (last delay repeated) after the schedule ends "
                      "(C-RECONNECT-SCHEDULE)",
    "reconnect-after-close": "reconnects at once after a Close without allowReconnect (C-RECONNECT-CLOSE)",
    "no-resubscribe": "does not subscribe again after a reconnect (C-RESUBSCRIBE)",
    "misses-terminal": "after a reconnect neither polls nor learns what ended while disconnected "
                       "(C-NO-LOST-TERMINAL)",
    "resubscribes-no-catchup": "after an automatic reconnect subscribes again but never polls for what "
                               "ended meanwhile; catches up only after a manual restart "
                               "(C-NO-LOST-TERMINAL)",
    "no-fallback": "auto never falls back to polling when SignalR cannot connect (C-FALLBACK)",
    "polls-too-often": "polls at a fifth of the interval (C-POLL-INTERVAL)",
    "no-poll-limit": "never gives up polling (C-POLL-LIMIT)",
    "polls-after-terminal": "keeps polling a few times after the terminal status (C-POLL-STOP)",
    "stops-on-poll-error": "stops tracking at the first failed poll (C-POLL-ERRORS)",
    "ignores-retry-after": "ignores Retry-After (C-RETRY-AFTER)",
    "progress-backwards": "reports progress events in arrival order even when lower, and reports a "
                          "duplicated completion (C-OUTCOME)",
    "reports-completion-twice": "reports a terminal event each time it arrives, by SignalR or by a "
                                "poll (C-OUTCOME)",
    "slow-handling": "takes 400 ms to handle each event (C-LATENCY)",
    "no-auth-on-connect": "sends the key on negotiate but not on the WebSocket connection (C-AUTH)",
    "connection-per-task": "opens a new hub connection for every tracked task (C-POOL)",
    "no-cleanup": "never unsubscribes a finished task (C-CLEANUP)",
}

SLOW_HANDLING_S = 0.4
EXTRA_POLLS_AFTER_TERMINAL = 3
# Floor for a mutant's repeated zero delay, so an endless schedule is not a busy loop.
ENDLESS_FLOOR_S = 0.01
TERMINAL_FAILURES = ("failed", "cancelled", "timedout")


VIAS = ("signalr", "polling", "auto")


# -- knobs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """The environment knobs of docs/reference-clients.md, in seconds."""

    reconnect_delays: tuple[float, ...] | None = DEFAULT_RECONNECT_DELAYS  # None: the guide's formula
    formula_attempts: int | None = None  # with the formula: attempts before giving up (None: never)
    manual_restart: float = 5.0
    poll_interval: float = 5.0
    poll_limit: int = 60
    server_timeout: float = 30.0
    keep_alive: float = 15.0
    transports: tuple[TransportType, ...] = (TransportType.WEBSOCKETS,)  # tried in the server's order
    max_connections: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Knobs:
        """Read the ``CONDUIT_*`` knobs; ValueError names the bad one."""
        def number(name: str, default: float, minimum: float = 0.0) -> float:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a number") from None
            if value < minimum:
                raise ValueError(f"{name}={text!r} is below {minimum:g}")
            return value

        delays: tuple[float, ...] | None = DEFAULT_RECONNECT_DELAYS
        attempts: int | None = None
        raw = env.get("CONDUIT_RECONNECT_DELAYS_MS", "").strip()
        if raw.lower().startswith("formula"):
            delays = None
            rest = raw[len("formula"):].lstrip(":=")
            if rest:
                try:
                    attempts = int(rest)
                except ValueError:
                    raise ValueError(f"CONDUIT_RECONNECT_DELAYS_MS={raw!r}: formula[:N]") from None
        elif raw.lower() == "none":
            delays = ()
        elif raw:
            try:
                delays = tuple(float(part) / 1000 for part in raw.split(",") if part.strip())
            except ValueError:
                raise ValueError(f"CONDUIT_RECONNECT_DELAYS_MS={raw!r}: not a list of milliseconds") from None
            if any(d < 0 for d in delays):
                raise ValueError(f"CONDUIT_RECONNECT_DELAYS_MS={raw!r} has a negative delay")
        interval = number("CONDUIT_POLL_INTERVAL_MS", 5000) / 1000
        if interval <= 0:
            raise ValueError("CONDUIT_POLL_INTERVAL_MS must be above 0")
        return cls(
            reconnect_delays=delays,
            formula_attempts=attempts,
            manual_restart=number("CONDUIT_MANUAL_RESTART_MS", 5000) / 1000,
            poll_interval=interval,
            poll_limit=int(number("CONDUIT_POLL_LIMIT", 60, 1)),
            server_timeout=number("CONDUIT_SERVER_TIMEOUT_MS", 30000, 1) / 1000,
            keep_alive=number("CONDUIT_KEEPALIVE_MS", 15000, 1) / 1000,
            transports=tuple(TransportType.parse(name) for name in
                             (env.get("CONDUIT_TRANSPORT", "").strip() or "WebSockets").split(",")
                             if name.strip()),
            max_connections=int(number("CONDUIT_MAX_CONNECTIONS", 5, 1)),
        )


# -- reconnect policies, and the mutants' broken ones ------------------------------------------
class _ScaledPolicy:
    """``factor`` × the wrapped policy's delays (same number of attempts)."""

    def __init__(self, inner: RetryPolicy, factor: float, floor: float = 0.0) -> None:
        self.inner, self.factor, self.floor = inner, factor, floor

    def next_retry_delay(self, context: RetryContext) -> float | None:
        delay = self.inner.next_retry_delay(context)
        return None if delay is None else max(self.floor, delay * self.factor)


class _EndlessPolicy:
    """The wrapped schedule, then its last delay for ever."""

    def __init__(self, inner: RetryPolicy) -> None:
        self.inner = inner
        self.last: float | None = None

    def next_retry_delay(self, context: RetryContext) -> float | None:
        delay = self.inner.next_retry_delay(context)
        if delay is None:
            return None if self.last is None else max(self.last, ENDLESS_FLOOR_S)
        self.last = delay
        return delay


def make_policy(knobs: Knobs, mutant: str | None) -> RetryPolicy:
    base: RetryPolicy
    endless = False
    if knobs.reconnect_delays is None:
        base = ExponentialBackoffPolicy(max_attempts=knobs.formula_attempts)
        endless = knobs.formula_attempts is None
    else:
        base = DelayListPolicy(knobs.reconnect_delays)
    if mutant == "no-backoff":
        return _ScaledPolicy(base, 0.0, ENDLESS_FLOOR_S if endless else 0.0)
    if mutant == "short-delays":
        return _ScaledPolicy(base, 0.1)
    if mutant == "never-gives-up":
        return _EndlessPolicy(base)
    return base


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- observations ---------------------------------------------------------------------------------
class Output:
    """Observation lines on stdout, one JSON object a line, flushed at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, obs: str, **fields: Any) -> None:
        line = json.dumps({"obs": obs, **fields}, default=str, ensure_ascii=False)
        log.debug("obs %s", line)
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.stream.write(line + "\n")
            self.stream.flush()


# -- tracked tasks and hub links ------------------------------------------------------------------
@dataclass(eq=False)
class Tracked:
    task_id: str
    kind: str
    via: str
    channel: str = "signalr"  # "signalr" or "polling"
    link: HubLink | None = None
    subscribed_on: str | None = None  # connection id of the live subscription
    progress: Any = None  # highest progress reported
    done: bool = False
    untracked: bool = False
    polled_terminal: bool = False  # a poll answered with a terminal status
    stranded: bool = False  # its SignalR connection was lost for good; resync when one is back
    polls: int = 0
    next_poll_at: float = 0.0
    poller: asyncio.Task[None] | None = None
    poll_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def active(self) -> bool:
        return not self.done and not self.untracked


class HubLink:
    """One hub connection of the pool and the tasks it carries."""

    def __init__(self, client: ReferenceClient, spec: HubSpec, pool_key: str) -> None:
        self.client = client
        self.spec = spec
        self.pool_key = pool_key
        self.tasks: dict[str, Tracked] = {}
        knobs = client.knobs
        self.connection = HubConnection(
            client.base_url.rstrip("/") + spec.path,
            access_token_factory=lambda: client.key,
            transport=knobs.transports,
            reconnect_policy=client.policy,
            keep_alive_interval=knobs.keep_alive,
            server_timeout=knobs.server_timeout,
            session=client.http,
            send_token_on_connect=client.mutant != "no-auth-on-connect",
            name=pool_key,
        )
        self.connection.on(spec.progress, self._on_progress)
        self.connection.on(spec.completed, self._on_completed)
        self.connection.on(spec.failed, self._on_failed)
        self.connection.on_reconnecting(self._on_reconnecting)
        self.connection.on_reconnected(self._on_reconnected)
        self.connection.on_close(self._on_close)
        self.starting: asyncio.Task[bool] | None = None
        self.restart: asyncio.Task[None] | None = None
        self.not_before = 0.0  # no start before this (monotonic): after a failure or a Close
        self.retired = False

    @property
    def state(self) -> HubConnectionState:
        return self.connection.state

    @property
    def restart_pending(self) -> bool:
        return self.restart is not None and not self.restart.done()

    @property
    def live(self) -> bool:
        return self.state is not HubConnectionState.DISCONNECTED or self.restart_pending or (
            self.starting is not None and not self.starting.done())

    # -- connecting ---------------------------------------------------------------------------
    async def start(self) -> bool:
        """Start the connection (or join a start in progress); True once connected."""
        if self.starting is None or self.starting.done():
            if self.state is HubConnectionState.CONNECTED:
                return True
            if self.state is not HubConnectionState.DISCONNECTED:
                return False
            self.starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self.starting)

    async def _start(self) -> bool:
        self.client.state(self, "connecting")
        try:
            await self.connection.start()
        except Exception as exc:
            log.warning("%s: cannot connect: %s", self.pool_key, exc)
            self.not_before = time.monotonic() + self.client.knobs.manual_restart
            self.client.state(self, "disconnected")
            self.client.output.emit("error", message=f"{self.spec.path}: cannot connect: {exc}")
            return False
        self.client.state(self, "connected")
        return True

    def schedule_restart(self, delay: float) -> None:
        """One manual ``start()`` after ``delay`` (unless one is pending already)."""
        self.not_before = time.monotonic() + delay
        if self.restart_pending:
            return
        self.restart = self.client.spawn(self._manual_restart(delay), f"{self.pool_key}: manual restart")

    async def _manual_restart(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.retired or self.client.closing or self.state is not HubConnectionState.DISCONNECTED:
            return
        log.info("%s: manual restart", self.pool_key)
        if await self.start():
            self.client.spawn(self.client.resync(self, automatic=False), f"{self.pool_key}: resync")
        else:
            self.client.lost_for_good(self)

    # -- connection callbacks -----------------------------------------------------------------
    def _on_reconnecting(self, error: BaseException | None) -> None:
        log.info("%s: reconnecting after %s", self.pool_key, error)
        self.client.state(self, "reconnecting")

    def _on_reconnected(self, connection_id: str | None) -> None:
        log.info("%s: reconnected as %s", self.pool_key, connection_id)
        self.client.state(self, "reconnected")
        self.client.spawn(self.client.resync(self, automatic=True), f"{self.pool_key}: resync")

    def _on_close(self, error: BaseException | None) -> None:
        self.client.state(self, "disconnected")
        if error is None or self.retired or self.client.closing:
            return  # stopped on purpose
        delay = self.client.knobs.manual_restart
        if (self.client.mutant == "reconnect-after-close" and isinstance(error, ServerClosedError)
                and not error.allow_reconnect):
            delay = 0.0
        log.info("%s: closed (%s); manual restart in %.3f s", self.pool_key, error, delay)
        self.schedule_restart(delay)

    # -- hub events ---------------------------------------------------------------------------
    async def _on_progress(self, *args: Any) -> None:
        await self.client.on_event(self, self.spec.progress, args)

    async def _on_completed(self, *args: Any) -> None:
        await self.client.on_event(self, self.spec.completed, args)

    async def _on_failed(self, *args: Any) -> None:
        await self.client.on_event(self, self.spec.failed, args)


# -- the client -----------------------------------------------------------------------------------
class ReferenceClient:
    def __init__(self, base_url: str, key: str, knobs: Knobs, mutant: str | None = None,
                 output: Output | None = None, dialect: Profile | None = None) -> None:
        self.dialect = dialect or load_profile("documented")
        self.hubs: dict[str, HubSpec] = dict(self.dialect.client_hubs)
        self.base_url = base_url
        self.key = key
        self.knobs = knobs
        self.mutant = mutant
        self.output = output or Output()
        self.policy = make_policy(knobs, mutant)
        self.tasks: dict[str, Tracked] = {}
        self.links: dict[str, HubLink] = {}
        self.closing = False
        self.rest_not_before = 0.0  # a Retry-After holds back every poll until then
        self._background: set[asyncio.Task[Any]] = set()
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    @property
    def name(self) -> str:
        return f"{NAME}/{self.mutant}" if self.mutant else NAME

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    def state(self, link: HubLink, state: str) -> None:
        self.output.emit("state", state=state, hub=link.spec.path)

    # -- the command loop ---------------------------------------------------------------------
    async def run(self, commands: asyncio.Queue[str | None]) -> int:
        self.output.emit("ready", name=self.name, roles=ROLES)
        log.info("%s ready: %s, knobs %s, policy %r", self.name, self.base_url, self.knobs, self.policy)
        while True:
            line = await commands.get()
            if line is None:
                log.info("stdin closed: shutting down")
                break
            if not self.handle_line(line):
                break
        await self.shutdown()
        return 0

    def handle_line(self, line: str) -> bool:
        """Act on one command line; False for shutdown."""
        line = line.strip()
        if not line:
            return True
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.output.emit("error", message=f"bad command line {line[:200]!r}: {exc}")
            return True
        name = command.get("cmd")
        if name == "shutdown":
            return False
        if name == "track":
            task_id = command.get("task_id")
            kind, via = command.get("kind", "image"), command.get("via", "auto")
            if not isinstance(task_id, str) or not task_id or kind not in self.hubs or via not in VIAS:
                self.output.emit("error", message=f"bad track command {command!r}: needs task_id, "
                                                  f"kind in {list(self.hubs)}, via in {list(VIAS)}")
                return True
            self.spawn(self.track(task_id, kind, via), f"track {task_id}")
            return True
        if name == "untrack":
            task_id = command.get("task_id")
            if not isinstance(task_id, str):
                self.output.emit("error", message=f"bad untrack command {command!r}")
                return True
            self.untrack(task_id)
            return True
        self.output.emit("error", message=f"unknown command {name!r}")
        return True

    async def shutdown(self) -> None:
        self.closing = True
        current = asyncio.current_task()
        for task in list(self._background):
            if task is not current:
                task.cancel()
        links = list(self.links.values())
        for link in links:
            link.retired = True
        if links:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(link.connection.stop() for link in links),
                                                      return_exceptions=True), 5)
        if self._background:
            await asyncio.wait(list(self._background), timeout=2)
        if self._http is not None:
            await self._http.close()

    # -- track / untrack ----------------------------------------------------------------------
    async def track(self, task_id: str, kind: str, via: str) -> None:
        existing = self.tasks.get(task_id)
        if existing is not None and (existing.active or existing.done):
            what = "tracked" if existing.active else "finished"
            self.output.emit("error", message=f"task {task_id} is {what} already")
            return
        t = Tracked(task_id, kind, via)
        self.tasks[task_id] = t
        log.info("track %s (%s) via %s", task_id, kind, via)
        if via == "polling":
            self.start_polling(t)
        else:
            await self.track_hub(t, fallback=via == "auto" and self.mutant != "no-fallback")

    def untrack(self, task_id: str) -> None:
        t = self.tasks.get(task_id)
        if t is None or not t.active:
            self.output.emit("error", message=f"task {task_id} is not tracked")
            return
        t.untracked = True
        if t.poller is not None:
            t.poller.cancel()
        self._detach(t, unsubscribe=True)

    def _fallback_allowed(self, t: Tracked) -> bool:
        return t.via == "auto" and self.mutant != "no-fallback"

    async def track_hub(self, t: Tracked, fallback: bool) -> None:
        link = self.link_for(t)
        t.link = link
        state = link.state
        now = time.monotonic()
        if state is HubConnectionState.CONNECTED:
            link.tasks[t.task_id] = t
            await self.subscribe(link, t)
            return
        waiting = state in (HubConnectionState.RECONNECTING, HubConnectionState.DISCONNECTING) or (
            state is HubConnectionState.DISCONNECTED and (link.restart_pending or now < link.not_before))
        if waiting:
            # Not connected and not to be started now: the guide's RealTimeClient polls.
            if fallback:
                t.link = None
                self.start_polling(t)
                return
            link.tasks[t.task_id] = t  # subscribed when the connection is back
            if state is HubConnectionState.DISCONNECTED and not link.restart_pending:
                link.schedule_restart(max(0.0, link.not_before - now))
            return
        link.tasks[t.task_id] = t
        connected = await link.start()
        if not t.active or link.tasks.get(t.task_id) is not t:
            return
        if connected:
            for other in [o for o in link.tasks.values() if o.stranded and o.active and o is not t]:
                other.stranded = False
                self.spawn(self._resync_task(link, other), f"resync {other.task_id}")
            await self.subscribe(link, t)
        elif fallback:
            self._detach(t, unsubscribe=False)
            self.start_polling(t)
        elif not link.restart_pending and not link.retired:
            link.schedule_restart(self.knobs.manual_restart)

    def link_for(self, t: Tracked) -> HubLink:
        spec = self.hubs[t.kind]
        key = f"{spec.path}#{t.task_id}" if self.mutant == "connection-per-task" else spec.path
        link = self.links.get(key)
        if link is not None:
            return link
        if self.mutant != "connection-per-task":
            while sum(1 for other in self.links.values() if other.live) >= self.knobs.max_connections:
                self._evict(next(other for other in self.links.values() if other.live))
        link = HubLink(self, spec, key)
        self.links[key] = link
        return link

    def _evict(self, link: HubLink) -> None:
        """The pool is full: stop the oldest connection (the guide's SignalRConnectionPool)."""
        log.info("pool full (%d): stopping %s", self.knobs.max_connections, link.pool_key)
        link.retired = True
        self.links.pop(link.pool_key, None)
        if link.restart is not None:
            link.restart.cancel()
        self.spawn(link.connection.stop(), f"{link.pool_key}: evict")
        for t in list(link.tasks.values()):
            self._connection_gone(link, t)

    def _connection_gone(self, link: HubLink, t: Tracked) -> None:
        if not t.active:
            return
        if self._fallback_allowed(t):
            self._detach(t, unsubscribe=False)
            self.start_polling(t)
        else:
            t.stranded = True
            self.output.emit("error", message=f"task {t.task_id}: SignalR connection to {link.spec.path} "
                                              "lost for good")

    def lost_for_good(self, link: HubLink) -> None:
        log.warning("%s: lost for good", link.pool_key)
        for t in list(link.tasks.values()):
            self._connection_gone(link, t)

    def _detach(self, t: Tracked, *, unsubscribe: bool) -> None:
        link, t.link = t.link, None
        if link is None:
            return
        link.tasks.pop(t.task_id, None)
        if unsubscribe and link.state is HubConnectionState.CONNECTED and t.subscribed_on is not None:
            self.spawn(self._unsubscribe(link, t.task_id), f"unsubscribe {t.task_id}")
        t.subscribed_on = None

    # -- SignalR ------------------------------------------------------------------------------
    async def subscribe(self, link: HubLink, t: Tracked) -> None:
        connection_id = link.connection.connection_id
        if not t.active or connection_id is None or t.subscribed_on == connection_id:
            return
        t.subscribed_on = connection_id
        try:
            await link.connection.invoke(link.spec.subscribe, t.task_id, timeout=30)
        except HubInvocationError as exc:
            t.subscribed_on = None
            self.output.emit("error", message=f"{link.spec.subscribe}({t.task_id}) failed: {exc.error}")
            link.tasks.pop(t.task_id, None)
            t.link = None
            if self._fallback_allowed(t):
                self.start_polling(t)
            else:
                t.untracked = True
            return
        except (HubClientError, TimeoutError) as exc:
            log.info("%s(%s) interrupted: %s; the reconnect subscribes again", link.spec.subscribe,
                     t.task_id, exc)
            if t.subscribed_on == connection_id:
                t.subscribed_on = None
            return
        log.info("subscribed %s on %s", t.task_id, connection_id)
        if not t.active and (t.untracked or self.mutant != "no-cleanup"):
            self.spawn(self._unsubscribe(link, t.task_id), f"unsubscribe {t.task_id}")

    async def _unsubscribe(self, link: HubLink, task_id: str) -> None:
        if link.state is not HubConnectionState.CONNECTED:
            return
        try:
            await link.connection.invoke(link.spec.unsubscribe, task_id, timeout=30)
        except (HubClientError, TimeoutError) as exc:
            log.info("%s(%s) failed: %s", link.spec.unsubscribe, task_id, exc)

    async def resync(self, link: HubLink, *, automatic: bool) -> None:
        """After an automatic reconnect or a manual restart: subscribe every active task again,
        poll each once."""
        tasks = [t for t in link.tasks.values() if t.active]
        log.info("%s: resync %d task(s)", link.pool_key, len(tasks))
        await asyncio.gather(*(self._resync_task(link, t, automatic) for t in tasks), return_exceptions=True)

    async def _resync_task(self, link: HubLink, t: Tracked, automatic: bool = False) -> None:
        t.stranded = False
        if self.mutant != "no-resubscribe":
            await self.subscribe(link, t)
        catch_up = self.mutant != "misses-terminal" and not (
            automatic and self.mutant == "resubscribes-no-catchup")
        if catch_up and t.active and t.link is link:
            await self.poll_once(t)

    async def on_event(self, link: HubLink, target: str, args: tuple[Any, ...]) -> None:
        if self.mutant == "slow-handling":
            await asyncio.sleep(SLOW_HANDLING_S)
        decode = self.dialect.decode_event
        event = decode(target, list(args)) if decode is not None else None
        if event is None:
            log.warning("%s: event %s with unexpected arguments %r", link.pool_key, target, args)
            return
        t = link.tasks.get(event.task_id)
        twice = self.mutant == "reports-completion-twice"
        if t is None and twice:
            t = self.tasks.get(event.task_id)  # the bug: a finished task's events are still handled
        if t is None or not (t.active or (twice and t.done)):
            return
        if event.kind == "progress":
            self.report_progress(t, event.progress)
        elif event.kind == "completed":
            self.report_terminal(t, "completed", result=event.result)
        else:  # failed, or cancelled (the driver protocol reports both as failed)
            self.report_terminal(t, "failed", error=event.error or event.kind)

    # -- reporting ----------------------------------------------------------------------------
    def report_progress(self, t: Tracked, value: Any) -> None:
        if not t.active or not isinstance(value, int | float) or isinstance(value, bool):
            return
        if self.mutant != "progress-backwards" and t.progress is not None and value <= t.progress:
            return
        t.progress = value
        self.output.emit("progress", task_id=t.task_id, progress=value)

    def report_terminal(self, t: Tracked, obs: str, **fields: Any) -> None:
        if not t.active:
            if t.done and self.mutant == "reports-completion-twice":
                self.output.emit(obs, task_id=t.task_id, **fields)  # the bug: each arrival reported
            return
        t.done = True
        self.output.emit(obs, task_id=t.task_id, **fields)
        if obs == "completed" and self.mutant == "progress-backwards":
            self.output.emit(obs, task_id=t.task_id, **fields)
        log.info("%s %s", t.task_id, obs)
        self._detach(t, unsubscribe=self.mutant != "no-cleanup")

    # -- polling ------------------------------------------------------------------------------
    def start_polling(self, t: Tracked) -> None:
        if not t.active or (t.poller is not None and not t.poller.done()):
            return
        log.info("polling %s", t.task_id)
        t.channel = "polling"
        t.poller = self.spawn(self._poll_loop(t), f"poll {t.task_id}")

    async def _poll_loop(self, t: Tracked) -> None:
        limit = None if self.mutant == "no-poll-limit" else self.knobs.poll_limit
        while t.active:
            if limit is not None and t.polls >= limit:
                self.report_terminal(t, "timeout")
                return
            outcome = await self.poll_once(t)
            # (A throttled poll, one with Retry-After, is C-RETRY-AFTER's business, not a failure.)
            if outcome == "error" and self.mutant == "stops-on-poll-error" and t.active:
                t.untracked = True
                self.output.emit("error", message=f"task {t.task_id}: poll failed; stopped tracking")
                return
        if self.mutant == "polls-after-terminal" and t.polled_terminal:
            for _ in range(EXTRA_POLLS_AFTER_TERMINAL):
                await self.poll_once(t, after_terminal=True)

    async def poll_once(self, t: Tracked, *, after_terminal: bool = False) -> str:
        """One poll, no sooner than the interval after the previous one (and any Retry-After):
        ``"terminal"``, ``"ok"``, ``"throttled"`` (an error with Retry-After), ``"error"`` or
        ``"skipped"``."""
        async with t.poll_lock:
            while True:
                delay = max(t.next_poll_at, self.rest_not_before) - time.monotonic()
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
            if self.closing or (not t.active and not after_terminal):
                return "skipped"
            t.polls += 1
            status, body, retry_after = await self._get_status(t.task_id, t.kind)
            now = time.monotonic()
            interval = self.knobs.poll_interval / (5 if self.mutant == "polls-too-often" else 1)
            t.next_poll_at = now + interval
            if retry_after is not None and self.mutant != "ignores-retry-after":
                t.next_poll_at = max(t.next_poll_at, now + retry_after)
                self.rest_not_before = max(self.rest_not_before, now + retry_after)
            if status != 200 or not isinstance(body, dict):
                log.warning("poll %d of %s failed: %s%s", t.polls, t.task_id, status or "network error",
                            f", Retry-After {retry_after:g} s" if retry_after is not None else "")
                return "error" if retry_after is None else "throttled"
            if after_terminal:
                return "ok"
            return "terminal" if self._apply_status(t, body) else "ok"

    async def _get_status(self, task_id: str, kind: str) -> tuple[int | None, Any, float | None]:
        path = self.dialect.status_paths[kind].format(task_id=quote(task_id, safe=""))
        url = f"{self.base_url.rstrip('/')}{path}"
        timeout = aiohttp.ClientTimeout(total=max(10.0, self.knobs.poll_interval))
        try:
            async with self.http.get(url, headers=self.auth, timeout=timeout) as response:
                retry_after = None
                if response.status != 200:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    await response.read()
                    return response.status, None, retry_after
                return response.status, await response.json(content_type=None), None
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("poll of %s failed: %s", task_id, exc)
            return None, None, None

    def _apply_status(self, t: Tracked, body: dict[str, Any]) -> bool:
        status = body.get("status")
        if status == "completed":
            t.polled_terminal = True
            self.report_terminal(t, "completed", result=body.get("result"))
            return True
        if status in TERMINAL_FAILURES:
            t.polled_terminal = True
            self.report_terminal(t, "failed", error=body.get("error") or status)
            return True
        progress = body.get("progress")
        if isinstance(progress, int | float) and (status == "processing" or progress > 0):
            self.report_progress(t, progress)
        return False


# -- entry point ----------------------------------------------------------------------------------
def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    def put(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    try:
        for line in sys.stdin:
            put(line)
    finally:
        put(None)


async def _amain(client: ReferenceClient) -> int:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(asyncio.get_running_loop(), queue), name="stdin",
                     daemon=True).start()
    return await client.run(queue)


def mutant_list() -> str:
    return "\n".join(f"  {name:22} {what}" for name, what in MUTANTS.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contract_tests.clients.python_client",
        description="The Python reference client of the contract suite (driver protocol on stdio).",
        epilog="mutants:\n" + mutant_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutant", metavar="NAME", help="break one rule on purpose (see below)")
    args = parser.parse_args(argv)
    if args.mutant is not None and args.mutant not in MUTANTS:
        print(f"unknown mutant {args.mutant!r}; the mutants are:\n{mutant_list()}", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("CONDUIT_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    base_url = os.environ.get("CONDUIT_BASE_URL", "").strip()
    key = os.environ.get("CONDUIT_VIRTUAL_KEY", "").strip()
    if not base_url or not key:
        print("CONDUIT_BASE_URL and CONDUIT_VIRTUAL_KEY must be set", file=sys.stderr)
        return 2
    try:
        knobs = Knobs.from_env(os.environ)
    except ValueError as exc:
        print(f"bad knob: {exc}", file=sys.stderr)
        return 2
    try:
        dialect = load_profile(os.environ.get("CONDUIT_PROFILE", "").strip() or "documented")
    except ValueError as exc:
        print(f"CONDUIT_PROFILE: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_amain(ReferenceClient(base_url, key, knobs, args.mutant, dialect=dialect)))


if __name__ == "__main__":
    sys.exit(main())
