"""A SignalR client for load generation: a gevent I/O loop around the core's ClientSession.

What a SignalR client *is* — invocation ids and their Completions, keep-alive and server-timeout
deadlines, negotiate redirects, the reconnect schedule, the error types — lives in the sans-I/O
core (:class:`~conduit_core.signalr.client_session.ClientSession`,
:class:`~conduit_core.signalr.negotiate_client.Negotiation`,
:class:`~conduit_core.signalr.retry.RetrySchedule`). This module only moves bytes over
``websocket-client`` and reads the clock. Written for gevent (Locust monkey-patches sockets, so
every blocking call below yields): one greenlet per connection reads the WebSocket, callers
``invoke`` from their own greenlet, and one :class:`DeadlineTimer` greenlet per process acts on
every connection's next deadline (keep-alive Ping, server timeout) — a timer greenlet per
connection would cost a greenlet and a hub timer each, for something that happens every 15 s.
Negotiate uses ``http.client`` (one short request per connection, nothing pooled), so thousands
of idle clients cost little more than their sockets.

Everything it measures goes to one ``report(name, response_time_ms, length, exception)`` callback;
the Locust users turn that into request events with ``request_type="SignalR"``:

===========================  =======================================================================
name                         response time
===========================  =======================================================================
``negotiate``                POST {hub}/negotiate (all redirects included)
``connect``                  the WebSocket upgrade
``handshake json``           handshake request sent → handshake response received (or messagepack)
``invoke <Target>``          Invocation sent → its Completion received
``latency <Target>``         server emit → received, from the ``x-conduit-emit-time`` header
``latency_approx <Target>``  without that header, when the dialect stamps its events (the real
                             server's ``timestamp``/``completedAt``/``failedAt``): that time →
                             received; approximate (clock skew, and the stamp is taken before send)
``gap <Target>``             without that header (a real Conduit): time since the previous event
                             with the same first argument (the task id)
``reconnect``                connection lost → connected again and ``on_reconnected`` callbacks
                             done (resubscribed); a failure when every retry failed
===========================  =======================================================================

Behaviour follows the TS client (signalr-protocol.md §1-§5): negotiate version 1 with the
connection token in ``id=``, the key as ``Authorization: Bearer`` on negotiate and upgrade, a Ping
after ``keepalive`` seconds without sending, the connection dropped after ``server_timeout``
seconds without receiving, automatic reconnect with the given delays after an unexpected loss, no
automatic reconnect after a Close without ``allowReconnect``.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
import websocket
from gevent.event import AsyncResult
from gevent.event import Event as Wakeup

from conduit_core.signalr import Invocation
from conduit_core.signalr.client_session import (
    ClientSession,
    ClientState,
    Closed,
    CompletionReceived,
    Event,
    HandshakeRejected,
    InvocationReceived,
    PingDue,
    ServerTimeout,
)
from conduit_core.signalr.errors import (
    ConnectionLostError,
    HandshakeError,
    HubInvocationError,
    InvocationTimeoutError,
    LocalProtocolError,
    NegotiateError,
    NotConnectedError,
    ProtocolError,
    ReconnectExhaustedError,
    SignalRError,
    TransportError,
)
from conduit_core.signalr.negotiate import NegotiateResult
from conduit_core.signalr.negotiate_client import Negotiation
from conduit_core.signalr.retry import DelayListPolicy, RetrySchedule
from simulator.hubs.lifetime import EMIT_TIME_HEADER  # Unix epoch ms; a real Conduit sends none
from simulator.profiles.documented import CLIENT_HUBS

log = logging.getLogger(__name__)

# Per-task timestamps kept for ``gap`` measurements; beyond this the table is cleared (a client
# that never calls forget() must not grow without bound).
MAX_GAP_KEYS = 10_000

Report = Callable[[str, float, int, BaseException | None], None]
Handler = Callable[[list[Any], "Received"], None]

HUBS = CLIENT_HUBS

# The load users' names for the core's error types (kept so their ``except`` clauses read as
# before; there is one class behind each name).
NegotiateFailed = NegotiateError
ConnectFailed = TransportError
HandshakeFailed = HandshakeError
NotConnected = NotConnectedError
ConnectionLost = ConnectionLostError
InvocationTimeout = InvocationTimeoutError
HubError = HubInvocationError
ReconnectGaveUp = ReconnectExhaustedError


@dataclass(frozen=True, slots=True)
class Received:
    """When and how an event arrived (handlers get it with the arguments)."""

    wall: float  # time.time() at receipt
    emit_ms: float | None  # the server's emit time, when it sent one
    length: int  # bytes of the frame it came in


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def http_post(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """One POST with an empty body; returns (status, body). Raises OSError on network errors."""
    parts = urlsplit(url)
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn.request("POST", target, body=b"", headers={"Content-Length": "0", **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class DeadlineTimer:
    """One greenlet for the keep-alive and server-timeout deadlines of every connection.

    A heap of ``(deadline, seq, client, ws, session, generation)``. A session's deadlines only move
    later (each send or receipt pushes them), so an entry is checked lazily: when it comes due the
    session's ``tick`` says whether anything is really due, and the entry goes back at the
    session's new ``next_deadline``. A connection that was lost or replaced (its generation moved
    on) is dropped when its entry comes up. Nothing here blocks: Pings are written from a spawned
    greenlet and a server timeout's reconnect runs in its own.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, SignalRClient, websocket.WebSocket, ClientSession, int]] = []
        self._seq = itertools.count()
        self._wakeup = Wakeup()
        self._sleeping_until = math.inf
        self._greenlet: gevent.Greenlet | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, client: SignalRClient, ws: websocket.WebSocket, session: ClientSession,
              generation: int) -> None:
        deadline = session.next_deadline()
        if deadline is None:
            return
        heapq.heappush(self._heap, (deadline, next(self._seq), client, ws, session, generation))
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)
        elif deadline < self._sleeping_until:
            self._wakeup.set()

    def _run(self) -> None:
        heap = self._heap
        while heap:
            now = time.monotonic()
            if heap[0][0] > now:
                self._sleeping_until = heap[0][0]
                self._wakeup.clear()
                self._wakeup.wait(heap[0][0] - now)
                self._sleeping_until = math.inf
                continue
            _, _, client, ws, session, generation = heapq.heappop(heap)
            if generation != client._generation:
                continue
            try:
                keep = client._on_deadline(ws, session, generation)
            except Exception:  # one connection's failure must not stop every connection's timer
                log.exception("deadline handling failed")
                keep = False
            if keep:
                self.watch(client, ws, session, generation)
        self._greenlet = None


TIMER = DeadlineTimer()


class SignalRClient:
    """One hub connection, reconnecting on its own; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        hub_path: str,
        key: str | None,
        *,
        protocol: str = "json",
        report: Report | None = None,
        timeout: float = 30.0,
        keepalive: float = 15.0,
        server_timeout: float = 30.0,
        reconnect_delays: Sequence[float] = (0.0, 2.0, 10.0, 30.0),
        event_time: Callable[[str, list[Any]], float | None] | None = None,
    ) -> None:
        if protocol not in ("json", "messagepack"):
            raise ValueError(f"protocol must be json or messagepack, not {protocol!r}")
        self.hub_url = base_url.rstrip("/") + hub_path
        self.key = key
        self.protocol = protocol
        self.report = report or (lambda name, ms, length, exc: None)
        self.timeout = timeout
        self.keepalive = keepalive
        self.server_timeout = server_timeout
        self.reconnect_policy = DelayListPolicy(reconnect_delays)
        # (target, arguments) → the event's own emit stamp in Unix ms, when the dialect has one.
        self.event_time = event_time
        # Text frames for JSON, Binary for MessagePack (the handshake too, as pysignalr does).
        binary = protocol == "messagepack"
        self._opcode = websocket.ABNF.OPCODE_BINARY if binary else websocket.ABNF.OPCODE_TEXT
        self.handlers: dict[str, list[Handler]] = {}
        self.on_reconnected: list[Callable[[], None]] = []
        self.on_closed: list[Callable[[str], None]] = []
        self.state = "disconnected"  # connecting, connected, reconnecting, disconnected
        self.connection_id: str | None = None
        self.reconnects = 0
        self.close_reason: str | None = None
        self._ws: websocket.WebSocket | None = None
        self._session: ClientSession | None = None
        self._pending: dict[str, AsyncResult] = {}
        self._generation = 0
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._last_event: dict[str, float] = {}

    @property
    def reconnect_delays(self) -> tuple[float, ...]:
        return self.reconnect_policy.delays

    # -- public API -----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def reconnecting(self) -> bool:
        return self.state == "reconnecting"

    def on(self, target: str, handler: Handler) -> None:
        """Call ``handler(arguments, received)`` for each ``target`` invocation (case-insensitive, as
        the TS client). Handlers run in the reader greenlet: they must not block or invoke."""
        self.handlers.setdefault(target.lower(), []).append(handler)

    def forget(self, key: str) -> None:
        """Stop tracking ``gap`` times for ``key`` (call after a task's terminal event)."""
        self._last_event.pop(key, None)

    def start(self) -> None:
        """Negotiate, connect and handshake; raises a SignalRError (already reported) on failure."""
        self._stopping = False
        self.state = "connecting"
        try:
            self._connect()
        except SignalRError:
            self.state = "disconnected"
            raise

    def stop(self) -> None:
        """Close the connection; no reconnect follows."""
        self._stopping = True
        self.state = "disconnected"
        self._generation += 1
        ws, session = self._ws, self._session
        self._ws = self._session = None
        if ws is not None:
            try:
                if session is not None and session.state is ClientState.CONNECTED:
                    self._send_raw(ws, session.close(time.monotonic()))
                ws.send_close()
            except Exception:  # the socket may already be gone; stopping anyway
                pass
        current = gevent.getcurrent()
        for greenlet in self._greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)
        self._greenlets.clear()
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.shutdown()
        self._fail_pending(ConnectionLost("the client was stopped"))

    def invoke(self, target: str, *args: Any, timeout: float | None = None) -> Any:
        """Blocking invocation: the Completion's result, or HubError / InvocationTimeout /
        ConnectionLost / NotConnected. Reported as ``invoke <target>``."""
        started = time.perf_counter()
        invocation_id: str | None = None
        session = self._session
        waiter = AsyncResult()
        length = 0
        error: BaseException | None = None
        finished = False  # killed greenlets (GreenletExit) report nothing
        try:
            ws = self._ws
            if not self.connected or session is None or ws is None:
                raise NotConnected(f"invoke {target}: not connected ({self.state})")
            try:
                invocation_id, data = session.invoke(target, list(args), time.monotonic())
            except LocalProtocolError as exc:
                raise NotConnected(f"invoke {target}: {exc}") from exc
            self._pending[invocation_id] = waiter
            length = len(data)
            try:
                self._send_raw(ws, data)
            except (websocket.WebSocketException, OSError) as exc:
                raise ConnectionLost(f"invoke {target}: send failed: {exc}") from exc
            wait = self.timeout if timeout is None else timeout
            try:
                result = waiter.get(timeout=wait)
            except gevent.Timeout:
                raise InvocationTimeout(f"invoke {target}: no completion within {wait:g} s") from None
            finished = True
            return result
        except SignalRError as exc:
            error = exc
            finished = True
            raise
        finally:
            if invocation_id is not None:
                self._pending.pop(invocation_id, None)
                if session is not None:
                    session.forget(invocation_id)
            if finished:
                self.report(f"invoke {target}", _ms(time.perf_counter() - started), length, error)

    def send(self, target: str, *args: Any) -> None:
        """Non-blocking invocation (no id, no Completion)."""
        session, ws = self._session, self._ws
        if not self.connected or session is None or ws is None:
            raise NotConnected(f"send {target}: not connected ({self.state})")
        try:
            data = session.send_invocation(target, list(args), time.monotonic())
        except LocalProtocolError as exc:
            raise NotConnected(f"send {target}: {exc}") from exc
        self._send_raw(ws, data)

    # -- connecting -----------------------------------------------------------------------------
    @staticmethod
    def _base_headers() -> dict[str, str]:
        return {"User-Agent": "conduit-harness-load/0.1", "X-Requested-With": "XMLHttpRequest"}

    def _negotiate(self) -> tuple[Negotiation, NegotiateResult]:
        negotiation = Negotiation(self.hub_url, self.key)
        started = time.perf_counter()
        length = 0
        try:
            while True:
                request = negotiation.request()
                try:
                    status, body = http_post(request.url, {**self._base_headers(), **request.headers},
                                             self.timeout)
                except OSError as exc:
                    raise NegotiateError(f"negotiate: {type(exc).__name__}: {exc}") from exc
                length += len(body)
                result = negotiation.receive_response(status, body)
                if result is None:
                    continue  # redirected
                if not any(t.get("transport") == "WebSockets" for t in result.transports):
                    raise NegotiateError("negotiate: the server offers no WebSockets transport")
                self.report("negotiate", _ms(time.perf_counter() - started), length, None)
                return negotiation, result
        except NegotiateError as exc:
            self.report("negotiate", _ms(time.perf_counter() - started), length, exc)
            raise

    def _connect(self) -> None:
        negotiation, result = self._negotiate()
        url = negotiation.connection_url(websocket=True)
        headers = {**self._base_headers(), **negotiation.headers}
        header_lines = [f"{k}: {v}" for k, v in headers.items() if k != "X-Requested-With"]
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(url, header=header_lines, timeout=self.timeout,
                                             skip_utf8_validation=True, enable_multithread=True)
        except (websocket.WebSocketException, OSError) as exc:
            error = ConnectFailed(f"connect: {type(exc).__name__}: {exc}")
            self.report("connect", _ms(time.perf_counter() - started), 0, error)
            raise error from exc
        self.report("connect", _ms(time.perf_counter() - started), 0, None)
        # The socket timeout bounds the handshake; the session owns the deadlines after it.
        session = ClientSession(self.protocol, 1, keep_alive_interval=self.keepalive,
                                server_timeout=self.server_timeout, handshake_timeout=None)
        leftover = self._handshake(ws, session)
        if self._stopping:  # stop() was called while this (re)connect was under way
            with contextlib.suppress(Exception):
                ws.shutdown()
            raise ConnectionLost("the client was stopped while connecting")
        self._generation += 1
        generation = self._generation
        self._ws, self._session = ws, session
        self.connection_id = result.connection_id
        self.state = "connected"
        ws.settimeout(None)  # the timer greenlet ends a silent connection (server timeout)
        self._greenlets = [g for g in self._greenlets if not g.dead]
        self._greenlets.append(gevent.spawn(self._read_loop, ws, session, generation))
        TIMER.watch(self, ws, session, generation)
        for event, received in leftover:
            self._handle(event, received)

    def _handshake(self, ws: websocket.WebSocket, session: ClientSession
                   ) -> list[tuple[Event, Received]]:
        name = f"handshake {self.protocol}"
        started = time.perf_counter()
        length = 0
        try:
            ws.send(session.initiate_handshake(time.monotonic()), self._opcode)
            while True:
                frame_opcode, data = ws.recv_data()
                if frame_opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise HandshakeFailed("handshake: the server closed the WebSocket")
                length += len(data)
                received = Received(time.time(), None, len(data))
                events = session.receive_data(data, time.monotonic())
                if events:
                    first = events[0]
                    if isinstance(first, HandshakeRejected):
                        raise HandshakeFailed(f"handshake: {first.error}")
                    self.report(name, _ms(time.perf_counter() - started), length, None)
                    return [(e, received) for e in events[1:]]
        except HandshakeFailed as exc:
            error: SignalRError = exc
        except ProtocolError as exc:
            error = HandshakeFailed(f"handshake: {exc.message}")
        except (websocket.WebSocketException, OSError) as exc:
            error = HandshakeFailed(f"handshake: {type(exc).__name__}: {exc}")
        self.report(name, _ms(time.perf_counter() - started), length, error)
        with contextlib.suppress(Exception):
            ws.shutdown()
        raise error

    # -- running --------------------------------------------------------------------------------
    def _send_raw(self, ws: websocket.WebSocket, data: bytes) -> None:
        ws.send(data, self._opcode)

    def _on_deadline(self, ws: websocket.WebSocket, session: ClientSession, generation: int) -> bool:
        """Called by the shared :class:`DeadlineTimer` when the session's deadline has come; acts on
        what ``tick`` says and returns whether the timer should keep watching this connection."""
        for event in session.tick(time.monotonic()):
            if isinstance(event, PingDue):
                try:
                    data = session.ping(time.monotonic())
                except LocalProtocolError:
                    return False
                gevent.spawn(self._send_quietly, ws, data)
            elif isinstance(event, ServerTimeout):
                reason = f"server timeout: nothing received for {self.server_timeout:g} s"
                self._greenlets.append(gevent.spawn(self._lost, ws, generation, reason, True))
                return False
        return True

    def _send_quietly(self, ws: websocket.WebSocket, data: bytes) -> None:
        """A Ping's write; a failure is the reader's to notice."""
        with contextlib.suppress(websocket.WebSocketException, OSError):
            self._send_raw(ws, data)

    def _read_loop(self, ws: websocket.WebSocket, session: ClientSession, generation: int) -> None:
        reason = "connection lost"
        allow_reconnect = True
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    reason = "the server closed the WebSocket"
                    break
                received = Received(time.time(), None, len(data))
                for event in session.receive_data(data, time.monotonic()):
                    if isinstance(event, Closed):
                        reason = f"Close from server: {event.error or 'no error'}"
                        allow_reconnect = event.allow_reconnect
                    self._handle(event, received)
                if session.state is ClientState.CLOSED:
                    break
        except (websocket.WebSocketException, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except ProtocolError as exc:
            reason = f"protocol error: {exc.message}"
        except gevent.GreenletExit:
            return
        session.receive_data(None, time.monotonic())  # the transport is gone, for the record
        self._lost(ws, generation, reason, allow_reconnect)

    def _handle(self, event: Event, received: Received) -> None:
        if isinstance(event, InvocationReceived):
            self._on_invocation(event.invocation, received)
        elif isinstance(event, CompletionReceived):
            waiter = self._pending.pop(event.invocation_id, None)
            if waiter is not None:
                if event.error is not None:
                    waiter.set_exception(HubError(event.target, event.error))
                else:
                    waiter.set(event.result)
        # HandshakeCompleted was handled by _handshake; Closed by the reader; the rest (stream
        # items, unmatched completions) is nothing this client asked for.

    def _on_invocation(self, message: Invocation, received: Received) -> None:
        target = message.target
        emitted = (message.headers or {}).get(EMIT_TIME_HEADER)
        emit_ms: float | None = None
        if emitted is not None:
            try:
                emit_ms = float(emitted)
            except ValueError:
                emit_ms = None
        if emit_ms is None and self.event_time is not None:
            stamped = self.event_time(target, list(message.arguments))
            if stamped is not None:
                self.report(f"latency_approx {target}", received.wall * 1000.0 - stamped, received.length,
                            None)
        if emit_ms is not None:
            self.report(f"latency {target}", received.wall * 1000.0 - emit_ms, received.length, None)
            received = Received(received.wall, emit_ms, received.length)
        elif message.arguments and isinstance(message.arguments[0], str):
            key = message.arguments[0]
            previous = self._last_event.get(key)
            if previous is not None:
                self.report(f"gap {target}", _ms(received.wall - previous), received.length, None)
            if len(self._last_event) >= MAX_GAP_KEYS:
                self._last_event.clear()
            self._last_event[key] = received.wall
        for handler in self.handlers.get(target.lower(), ()):
            try:
                handler(list(message.arguments), received)
            except Exception:
                log.exception("handler for %s failed", target)
        session, ws = self._session, self._ws
        if message.invocation_id is not None and session is not None and ws is not None:
            # A client result was asked for; like the TS client without a handler result.
            with contextlib.suppress(websocket.WebSocketException, OSError, LocalProtocolError):
                self._send_raw(ws, session.complete(message.invocation_id, time.monotonic(),
                                                    error="Client didn't provide a result."))

    def _fail_pending(self, error: SignalRError) -> None:
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.ready():
                waiter.set_exception(error)

    def _lost(self, ws: websocket.WebSocket, generation: int, reason: str, allow_reconnect: bool) -> None:
        if generation != self._generation or self._stopping:
            return  # an old connection, or stop() already took it down
        self._generation += 1  # the other greenlet of this connection stands down
        self.state = "disconnected"
        self.close_reason = reason
        self._ws = self._session = None
        with contextlib.suppress(Exception):
            ws.shutdown()
        self._fail_pending(ConnectionLost(reason))
        if allow_reconnect:
            self._reconnect(reason)
        else:
            self._closed(reason)

    def _closed(self, reason: str) -> None:
        for callback in self.on_closed:
            try:
                callback(reason)
            except Exception:
                log.exception("on_closed callback failed")

    def _reconnect(self, reason: str) -> None:
        """The TS client's automatic reconnect: wait each delay in turn and try again."""
        schedule = RetrySchedule(self.reconnect_policy, time.monotonic(), reason)
        delay = schedule.next_delay(time.monotonic())
        if delay is None:  # no delays at all: no automatic reconnect
            self._closed(reason)
            return
        self.state = "reconnecting"
        started = time.perf_counter()
        while delay is not None:
            if delay > 0:
                gevent.sleep(delay)
            if self._stopping:
                return
            try:
                self._connect()
            except SignalRError as exc:
                self.state = "reconnecting"
                delay = schedule.next_delay(time.monotonic(), exc)
                continue
            for callback in self.on_reconnected:
                try:
                    callback()
                except Exception:
                    log.exception("on_reconnected callback failed")
            self.reconnects += 1
            self.report("reconnect", _ms(time.perf_counter() - started), 0, None)
            return
        self.state = "disconnected"
        error = ReconnectGaveUp(schedule.attempts, reason)
        self.report("reconnect", _ms(time.perf_counter() - started), 0, error)
        self._closed(str(error))


__all__ = [
    "EMIT_TIME_HEADER",
    "HUBS",
    "ConnectFailed",
    "ConnectionLost",
    "HandshakeFailed",
    "HubError",
    "InvocationTimeout",
    "NegotiateFailed",
    "NotConnected",
    "ReconnectGaveUp",
    "Received",
    "SignalRClient",
    "SignalRError",
    "http_post",
]
