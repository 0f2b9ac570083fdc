"""A SignalR client for load generation: our sans-I/O protocol core over ``websocket-client``.

Written for gevent (Locust monkey-patches sockets, so every blocking call below yields): one
greenlet reads the WebSocket, one sends keep-alive Pings, and callers ``invoke`` from their own
greenlet. Negotiate uses ``http.client`` (one short request per connection, nothing pooled), so a
thousand idle clients cost little more than their sockets.

Everything it measures goes to one ``report(name, response_time_ms, length, exception)`` callback;
the Locust users turn that into request events with ``request_type="SignalR"``:

===========================  =======================================================================
name                         response time
===========================  =======================================================================
``negotiate``                POST {hub}/negotiate
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
import http.client
import itertools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import gevent
import websocket
from gevent.event import AsyncResult

from conduit_core.signalr import (
    Close,
    Completion,
    HandshakeResponse,
    HubProtocolConnection,
    Invocation,
    Ping,
    ProtocolError,
    Role,
    State,
)
from conduit_core.signalr import negotiate as negotiation
from simulator.hubs.lifetime import EMIT_TIME_HEADER  # Unix epoch ms; a real Conduit sends none
from simulator.profiles.documented import CLIENT_HUBS

log = logging.getLogger(__name__)

# The TS client follows negotiate redirects up to 100 times; a load client needs far fewer.
MAX_REDIRECTS = 10
# Per-task timestamps kept for ``gap`` measurements; beyond this the table is cleared (a client
# that never calls forget() must not grow without bound).
MAX_GAP_KEYS = 10_000

Report = Callable[[str, float, int, BaseException | None], None]
Handler = Callable[[list[Any], "Received"], None]


HUBS = CLIENT_HUBS


@dataclass(frozen=True, slots=True)
class Received:
    """When and how an event arrived (handlers get it with the arguments)."""

    wall: float  # time.time() at receipt
    emit_ms: float | None  # the server's emit time, when it sent one
    length: int  # bytes of the frame it came in


class SignalRError(Exception):
    """Any failure of the client; the message says which step failed and why."""


class NegotiateFailed(SignalRError):
    pass


class ConnectFailed(SignalRError):
    pass


class HandshakeFailed(SignalRError):
    pass


class NotConnected(SignalRError):
    pass


class ConnectionLost(SignalRError):
    pass


class InvocationTimeout(SignalRError):
    pass


class HubError(SignalRError):
    """The server answered an invocation with an error Completion."""


class ReconnectGaveUp(SignalRError):
    pass


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
        self.reconnect_delays = tuple(reconnect_delays)
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
        self._conn: HubProtocolConnection | None = None
        self._pending: dict[str, AsyncResult] = {}
        self._ids = itertools.count()
        self._generation = 0
        self._greenlets: list[gevent.Greenlet] = []
        self._stopping = False
        self._last_send = 0.0
        self._last_event: dict[str, float] = {}

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
        ws, conn = self._ws, self._conn
        self._ws = self._conn = None
        if ws is not None:
            try:
                if conn is not None and conn.state is State.OPEN:
                    self._send_raw(ws, conn.send(Close()))
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
        invocation_id = str(next(self._ids))
        waiter = AsyncResult()
        length = 0
        error: BaseException | None = None
        finished = False  # killed greenlets (GreenletExit) report nothing
        try:
            conn, ws = self._conn, self._ws
            if not self.connected or conn is None or ws is None:
                raise NotConnected(f"invoke {target}: not connected ({self.state})")
            self._pending[invocation_id] = waiter
            data = conn.send(Invocation(target, list(args), invocation_id=invocation_id))
            length = len(data)
            try:
                self._send_raw(ws, data)
            except (websocket.WebSocketException, OSError) as exc:
                raise ConnectionLost(f"invoke {target}: send failed: {exc}") from exc
            try:
                result = waiter.get(timeout=self.timeout if timeout is None else timeout)
            except gevent.Timeout:
                raise InvocationTimeout(f"invoke {target}: no completion within "
                                        f"{self.timeout if timeout is None else timeout:g} s") from None
            finished = True
            return result
        except SignalRError as exc:
            error = exc
            finished = True
            raise
        finally:
            self._pending.pop(invocation_id, None)
            if finished:
                self.report(f"invoke {target}", _ms(time.perf_counter() - started), length, error)

    def send(self, target: str, *args: Any) -> None:
        """Non-blocking invocation (no id, no Completion)."""
        conn, ws = self._conn, self._ws
        if not self.connected or conn is None or ws is None:
            raise NotConnected(f"send {target}: not connected ({self.state})")
        self._send_raw(ws, conn.send(Invocation(target, list(args))))

    # -- connecting -----------------------------------------------------------------------------
    def _headers(self, token: str | None = None) -> dict[str, str]:
        credential = token or self.key
        headers = {"User-Agent": "conduit-harness-load/0.1", "X-Requested-With": "XMLHttpRequest"}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        return headers

    def _negotiate(self) -> tuple[str, negotiation.NegotiateResult, str | None]:
        hub_url, token = self.hub_url, None
        started = time.perf_counter()
        length = 0
        try:
            for _ in range(MAX_REDIRECTS + 1):
                sep = "&" if "?" in hub_url else "?"
                url = hub_url.rstrip("/") + "/negotiate" + sep + "negotiateVersion=1"
                try:
                    status, body = http_post(url, self._headers(token), self.timeout)
                except OSError as exc:
                    raise NegotiateFailed(f"negotiate: {type(exc).__name__}: {exc}") from exc
                length += len(body)
                if status != 200:
                    text = body[:200].decode("utf-8", "replace").strip()
                    raise NegotiateFailed(f"negotiate: HTTP {status}" + (f": {text}" if text else ""))
                try:
                    document = json.loads(body)
                except ValueError as exc:
                    raise NegotiateFailed(f"negotiate: body is not JSON: {exc}") from exc
                try:
                    result = negotiation.parse_response(document)
                except negotiation.NegotiateError as exc:
                    raise NegotiateFailed(f"negotiate: {exc}") from exc
                if not result.is_redirect:
                    if not any(t.get("transport") == "WebSockets" for t in result.transports):
                        raise NegotiateFailed("negotiate: the server offers no WebSockets transport")
                    self.report("negotiate", _ms(time.perf_counter() - started), length, None)
                    return hub_url, result, token
                hub_url = urljoin(hub_url, result.url or "")
                token = result.access_token or token
            raise NegotiateFailed(f"negotiate: more than {MAX_REDIRECTS} redirects")
        except NegotiateFailed as exc:
            self.report("negotiate", _ms(time.perf_counter() - started), length, exc)
            raise

    def _connect(self) -> None:
        hub_url, result, token = self._negotiate()
        parts = urlsplit(hub_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = parts._replace(scheme=scheme).geturl()
        url += ("&" if "?" in url else "?") + "id=" + negotiation.connection_url_id(result)
        headers = [f"{k}: {v}" for k, v in self._headers(token).items() if k != "X-Requested-With"]
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(url, header=headers, timeout=self.timeout,
                                             skip_utf8_validation=True, enable_multithread=True)
        except (websocket.WebSocketException, OSError) as exc:
            error = ConnectFailed(f"connect: {type(exc).__name__}: {exc}")
            self.report("connect", _ms(time.perf_counter() - started), 0, error)
            raise error from exc
        self.report("connect", _ms(time.perf_counter() - started), 0, None)
        conn = HubProtocolConnection(Role.CLIENT)
        leftover = self._handshake(ws, conn)
        if self._stopping:  # stop() was called while this (re)connect was under way
            with contextlib.suppress(Exception):
                ws.shutdown()
            raise ConnectionLost("the client was stopped while connecting")
        self._generation += 1
        generation = self._generation
        self._ws, self._conn = ws, conn
        self.connection_id = result.connection_id
        self.state = "connected"
        ws.settimeout(self.server_timeout if self.server_timeout > 0 else None)
        self._greenlets = [g for g in self._greenlets if not g.dead]
        self._greenlets.append(gevent.spawn(self._read_loop, ws, conn, generation))
        if self.keepalive > 0:
            self._greenlets.append(gevent.spawn(self._ping_loop, ws, conn, generation))
        for message, received in leftover:
            self._dispatch(message, received)

    def _handshake(self, ws: websocket.WebSocket, conn: HubProtocolConnection) -> list[tuple[Any, Received]]:
        name = f"handshake {self.protocol}"
        started = time.perf_counter()
        length = 0
        try:
            request = conn.initiate_handshake(self.protocol, 1)
            ws.send(request, self._opcode)
            self._last_send = time.monotonic()
            while True:
                frame_opcode, data = ws.recv_data()
                if frame_opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise HandshakeFailed("handshake: the server closed the WebSocket")
                length += len(data)
                received = Received(time.time(), None, len(data))
                messages = conn.receive_data(data)
                if messages:
                    first = messages[0]
                    if isinstance(first, HandshakeResponse) and first.error is not None:
                        raise HandshakeFailed(f"handshake: {first.error}")
                    self.report(name, _ms(time.perf_counter() - started), length, None)
                    return [(m, received) for m in messages[1:]]
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
        self._last_send = time.monotonic()

    def _ping_loop(self, ws: websocket.WebSocket, conn: HubProtocolConnection, generation: int) -> None:
        ping = conn.send(Ping())
        while generation == self._generation and self.state == "connected":
            wait = self.keepalive - (time.monotonic() - self._last_send)
            if wait > 0:
                gevent.sleep(wait)
                continue
            try:
                self._send_raw(ws, ping)
            except (websocket.WebSocketException, OSError):
                return  # the reader notices the loss

    def _read_loop(self, ws: websocket.WebSocket, conn: HubProtocolConnection, generation: int) -> None:
        reason = "connection lost"
        allow_reconnect = True
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    reason = "the server closed the WebSocket"
                    break
                received_at = time.time()
                for message in conn.receive_data(data):
                    if isinstance(message, Close):
                        reason = f"Close from server: {message.error or 'no error'}"
                        allow_reconnect = bool(message.allow_reconnect)
                    self._dispatch(message, Received(received_at, None, len(data)))
                if conn.state is State.CLOSED:
                    break
        except websocket.WebSocketTimeoutException:
            reason = f"server timeout: nothing received for {self.server_timeout:g} s"
        except (websocket.WebSocketException, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except ProtocolError as exc:
            reason = f"protocol error: {exc.message}"
        except gevent.GreenletExit:
            return
        if generation != self._generation or self._stopping:
            return
        self._lost(ws, reason, allow_reconnect)

    def _dispatch(self, message: Any, received: Received) -> None:
        if isinstance(message, Invocation):
            self._on_invocation(message, received)
        elif isinstance(message, Completion):
            waiter = self._pending.pop(message.invocation_id, None)
            if waiter is not None:
                if message.error is not None:
                    waiter.set_exception(HubError(message.error))
                else:
                    waiter.set(message.result if message.has_result else None)

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
        if message.invocation_id is not None and self._conn is not None and self._ws is not None:
            # A client result was asked for; like the TS client without a handler result.
            with contextlib.suppress(websocket.WebSocketException, OSError):
                self._send_raw(self._ws, self._conn.send(
                    Completion(message.invocation_id, error="Client didn't provide a result.")))

    def _fail_pending(self, error: SignalRError) -> None:
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.ready():
                waiter.set_exception(error)

    def _lost(self, ws: websocket.WebSocket, reason: str, allow_reconnect: bool) -> None:
        self.state = "disconnected"
        self.close_reason = reason
        self._ws = self._conn = None
        with contextlib.suppress(Exception):
            ws.shutdown()
        self._fail_pending(ConnectionLost(reason))
        if allow_reconnect and self.reconnect_delays:
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
        self.state = "reconnecting"
        started = time.perf_counter()
        attempts = 0
        for delay in self.reconnect_delays:
            if delay > 0:
                gevent.sleep(delay)
            if self._stopping:
                return
            attempts += 1
            try:
                self._connect()
            except SignalRError:
                self.state = "reconnecting"
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
        error = ReconnectGaveUp(f"reconnect: gave up after {attempts} attempts (lost: {reason})")
        self.report("reconnect", _ms(time.perf_counter() - started), 0, error)
        self._closed(str(error))
