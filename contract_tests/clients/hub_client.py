"""An asyncio SignalR hub client on aiohttp and our sans-I/O protocol core (:mod:`conduit_core.signalr`).

It behaves like ``@microsoft/signalr``'s ``HubConnection`` built with ``withAutomaticReconnect``,
so the Python reference client shows what the guide's JavaScript does, without pysignalr's or
signalrcore's quirks (signalr-protocol.md §5):

- ``start()`` negotiates (``POST {hub}/negotiate?negotiateVersion=1`` with
  ``Authorization: Bearer``, redirects followed), opens the transport (WebSockets, Server-Sent
  Events or Long Polling; the bearer header goes on every request, the WebSocket upgrade
  included), performs the JSON handshake and sends a first Ping. A failed ``start()`` raises and
  never reconnects by itself.
- While connected it sends a Ping whenever it has sent nothing for ``keep_alive_interval`` and
  treats ``server_timeout`` without any received message as a lost connection (neither on Long
  Polling, whose polls are the keep-alive).
- ``invoke()`` waits for the Completion (error → :class:`HubInvocationError`); ``send()`` does not.
  ``on(target, handler)`` registers handlers for server invocations; targets match
  case-insensitively and handlers run one at a time in arrival order, off the receive loop, so a
  handler may itself ``await invoke(...)``.
- A lost connection (transport closed or failed, server timeout, a Close message with
  ``allowReconnect: true``) goes to ``Reconnecting`` when the reconnect policy gives a delay:
  each attempt waits its delay, then renegotiates from scratch (new connection id). The policy is
  asked before the state changes; ``None`` ends the schedule. A Close message without
  ``allowReconnect`` is a full stop: ``Disconnected`` and ``on_close`` with
  :class:`ServerClosedError`, never an automatic reconnect.
- ``on_close`` receives ``None`` after ``stop()``, :class:`ServerClosedError` after a Close
  without ``allowReconnect``, :class:`ReconnectExhaustedError` when the policy gave up, or the
  error that ended the connection when no reconnect was tried (no policy, or ``None`` at once).

Times are in seconds throughout. Every callback may be a plain function or a coroutine function.

The protocol itself — invocation ids and their Completions, the keep-alive and server-timeout
deadlines, negotiate redirects, the retry schedule and the error types — is the sans-I/O core's
(:class:`~conduit_core.signalr.client_session.ClientSession`,
:class:`~conduit_core.signalr.negotiate_client.Negotiation`, :mod:`conduit_core.signalr.retry`,
:mod:`conduit_core.signalr.errors`), shared with the gevent load client. This module is the asyncio
I/O around it: transports, tasks, futures and callbacks.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from yarl import URL

from conduit_core.signalr import Close, Completion, Invocation, Ping, ProtocolError
from conduit_core.signalr.client_session import (
    SERVER_TIMEOUT_TEXT,
    ClientSession,
    ClientState,
    Closed,
    CompletionReceived,
    Event,
    HandshakeCompleted,
    HandshakeRejected,
    HandshakeTimeout,
    InvocationReceived,
    PingDue,
    ServerTimeout,
    UnmatchedCompletion,
)
from conduit_core.signalr.errors import (
    ConnectionLostError,
    HandshakeError,
    HubInvocationError,
    LocalProtocolError,
    NegotiateError,
    ReconnectExhaustedError,
    ServerClosedError,
    ServerTimeoutError,
    SignalRError,
    TransportError,
)
from conduit_core.signalr.messages import HubMessage
from conduit_core.signalr.negotiate import NegotiateResult
from conduit_core.signalr.negotiate_client import MAX_REDIRECTS, Negotiation, connection_url
from conduit_core.signalr.retry import (
    DEFAULT_RECONNECT_DELAYS,
    CallablePolicy,
    DelayListPolicy,
    ExponentialBackoffPolicy,
    RetryContext,
    RetryPolicy,
    RetrySchedule,
    as_retry_policy,
)

log = logging.getLogger(__name__)

# -- errors ---------------------------------------------------------------------------------------
# One hierarchy, the core's; these two names are what this client's callers have always caught.
HubClientError = SignalRError
NegotiationError = NegotiateError


# -- states ---------------------------------------------------------------------------------------
class HubConnectionState(enum.Enum):
    DISCONNECTED = "Disconnected"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTING = "Disconnecting"
    RECONNECTING = "Reconnecting"




# -- transports -----------------------------------------------------------------------------------
class TransportType(enum.Enum):
    WEBSOCKETS = "WebSockets"
    SERVER_SENT_EVENTS = "ServerSentEvents"
    LONG_POLLING = "LongPolling"

    @classmethod
    def parse(cls, text: str) -> TransportType:
        for member in cls:
            if text.strip().lower() in (member.value.lower(), member.name.lower()):
                return member
        raise ValueError(f"unknown transport {text!r}; one of: {', '.join(m.value for m in cls)}")


class Transport(abc.ABC):
    """Moves bytes for one connection. ``receive()`` yields what arrives and ends when the
    server ends the transport; it raises :class:`TransportError` on failure."""

    inherent_keep_alive = False

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @abc.abstractmethod
    async def connect(self, url: URL, headers: dict[str, str]) -> None: ...

    @abc.abstractmethod
    async def send(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def receive(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class WebSocketTransport(Transport):
    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__(session)
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, url: URL, headers: dict[str, str]) -> None:
        ws_url = url.with_scheme("wss" if url.scheme == "https" else "ws")
        try:
            # heartbeat=None: SignalR Pings are the keep-alive; autoping answers server pings.
            self._ws = await self.session.ws_connect(ws_url, headers=headers, autoping=True,
                                                     heartbeat=None, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            raise TransportError(f"WebSocket upgrade refused: HTTP {exc.status}", exc.status) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"WebSocket connect failed: {exc}") from exc

    async def send(self, data: bytes) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise ConnectionLostError("the WebSocket is closed")
        try:
            await ws.send_str(data.decode("utf-8"))
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            raise ConnectionLostError(f"WebSocket send failed: {exc}") from exc

    async def receive(self) -> AsyncIterator[bytes]:
        ws = self._ws
        assert ws is not None
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                yield msg.data.encode("utf-8")
            elif msg.type is aiohttp.WSMsgType.BINARY:
                yield msg.data
            elif msg.type is aiohttp.WSMsgType.ERROR:
                raise TransportError(f"WebSocket error: {ws.exception()}")
        if ws.close_code not in (None, 1000):
            raise TransportError(f"WebSocket closed with status code: {ws.close_code}")

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)


class _HttpSendMixin:
    """POST sends (SSE and Long Polling)."""

    session: aiohttp.ClientSession
    _url: URL | None
    _headers: dict[str, str]

    async def send(self, data: bytes) -> None:
        assert self._url is not None
        try:
            async with self.session.post(self._url, data=data, headers={
                    **self._headers, "Content-Type": "text/plain;charset=UTF-8"}) as response:
                if response.status != 200:
                    raise ConnectionLostError(f"send failed: HTTP {response.status}")
                await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLostError(f"send failed: {exc}") from exc


class ServerSentEventsTransport(_HttpSendMixin, Transport):
    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__(session)
        self._url: URL | None = None
        self._headers: dict[str, str] = {}
        self._response: aiohttp.ClientResponse | None = None

    async def connect(self, url: URL, headers: dict[str, str]) -> None:
        self._url, self._headers = url, dict(headers)
        try:
            response = await self.session.get(
                url, headers={**headers, "Accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None))
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"EventSource failed to connect: {exc}") from exc
        if response.status != 200:
            response.release()
            raise TransportError(f"EventSource failed to connect: HTTP {response.status}", response.status)
        self._response = response

    async def receive(self) -> AsyncIterator[bytes]:
        response = self._response
        assert response is not None
        data: list[bytes] = []
        try:
            while True:
                line = await response.content.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n")
                if not line:
                    if data:
                        yield b"\n".join(data)
                        data = []
                    continue
                if line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                if name == b"data":
                    data.append(value[1:] if value.startswith(b" ") else value)
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"EventSource error: {exc}") from exc

    async def close(self) -> None:
        if self._response is not None:
            self._response.close()


class LongPollingTransport(_HttpSendMixin, Transport):
    inherent_keep_alive = True
    POLL_TIMEOUT = 120.0  # above the server's 90 s long-poll timeout, as the TS client's 100 s

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__(session)
        self._url: URL | None = None
        self._headers: dict[str, str] = {}
        self._closed = False

    def _poll_url(self) -> URL:
        assert self._url is not None
        return self._url.update_query(_=str(int(time.time() * 1000)))

    async def connect(self, url: URL, headers: dict[str, str]) -> None:
        self._url, self._headers = url, dict(headers)
        try:
            async with self.session.get(self._poll_url(), headers=headers) as response:
                if response.status != 200:
                    raise TransportError(f"long polling failed to start: HTTP {response.status}",
                                         response.status)
                await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"long polling failed to start: {exc}") from exc

    async def receive(self) -> AsyncIterator[bytes]:
        timeout = aiohttp.ClientTimeout(total=self.POLL_TIMEOUT)
        while not self._closed:
            try:
                async with self.session.get(self._poll_url(), headers=self._headers,
                                            timeout=timeout) as response:
                    if response.status == 204:
                        return  # the server ended the connection
                    if response.status != 200:
                        raise TransportError(f"long poll failed: HTTP {response.status}", response.status)
                    body = await response.read()
            except TimeoutError:
                continue
            except (aiohttp.ClientError, OSError) as exc:
                raise TransportError(f"long poll failed: {exc}") from exc
            if body:
                yield body

    async def close(self) -> None:
        if self._closed or self._url is None:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            async with self.session.delete(self._url, headers=self._headers,
                                           timeout=aiohttp.ClientTimeout(total=5)) as response:
                await response.read()


TRANSPORTS: dict[TransportType, type[Transport]] = {
    TransportType.WEBSOCKETS: WebSocketTransport,
    TransportType.SERVER_SENT_EVENTS: ServerSentEventsTransport,
    TransportType.LONG_POLLING: LongPollingTransport,
}


# -- one physical connection ----------------------------------------------------------------------
class _Session:
    """Everything that belongs to one negotiate-to-close connection; a reconnect makes a new one."""

    def __init__(self, transport: Transport, connection_id: str | None,
                 transport_type: TransportType, protocol: ClientSession) -> None:
        self.transport = transport
        self.transport_type = transport_type
        self.connection_id = connection_id
        self.protocol = protocol  # ids, completions, deadlines and state live here
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.futures: dict[str, asyncio.Future[Any]] = {}  # invocation id -> its caller's future
        self.tasks: list[asyncio.Task[Any]] = []
        self.send_lock = asyncio.Lock()
        self.ended = False
        self.end_reason: BaseException | None = None


Callback = Callable[..., Any]


async def _call(callback: Callback, *args: Any) -> Any:
    result = callback(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


# -- the hub connection ---------------------------------------------------------------------------
class HubConnection:
    """A SignalR hub connection with ``withAutomaticReconnect`` semantics (see the module doc).

    :param url: the hub's URL, e.g. ``http://127.0.0.1:8080/hubs/image-generation``.
    :param access_token_factory: returns (or resolves to) the bearer token; called on each start.
    :param reconnect_policy: a :class:`RetryPolicy`, a list of delays, a callable, ``True`` for the
        default 0, 2, 10, 30 s, or ``None`` for no automatic reconnect.
    :param transport: one transport, or several to try in the server's order.
    :param send_token_on_connect: ``False`` leaves the bearer header off the transport requests
        (negotiate still carries it): a deliberate bug for the suite's mutants.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        access_token_factory: Callable[[], str | Awaitable[str]] | None = None,
        headers: dict[str, str] | None = None,
        transport: TransportType | Sequence[TransportType] = TransportType.WEBSOCKETS,
        reconnect_policy: RetryPolicy | Sequence[float] | Callable[[RetryContext], float | None] | bool | None
        = None,
        keep_alive_interval: float = 15.0,
        server_timeout: float = 30.0,
        handshake_timeout: float = 15.0,
        negotiate_timeout: float = 100.0,
        session: aiohttp.ClientSession | None = None,
        send_token_on_connect: bool = True,
        name: str | None = None,
    ) -> None:
        self.url = URL(str(url))
        self.name = name or self.url.path
        self._token_factory = access_token_factory
        self._headers = dict(headers or {})
        self._transports = [transport] if isinstance(transport, TransportType) else list(transport)
        self.reconnect_policy = as_retry_policy(reconnect_policy)
        self.keep_alive_interval = keep_alive_interval
        self.server_timeout = server_timeout
        self.handshake_timeout = handshake_timeout
        self.negotiate_timeout = negotiate_timeout
        self.send_token_on_connect = send_token_on_connect
        self._http = session
        self._own_http = session is None
        self._state = HubConnectionState.DISCONNECTED
        self._session: _Session | None = None
        self._handlers: dict[str, list[Callback]] = {}
        self._on_reconnecting: list[Callback] = []
        self._on_reconnected: list[Callback] = []
        self._on_close: list[Callback] = []
        self._on_state: list[Callback] = []
        self._events: asyncio.Queue[tuple[_Session, Invocation] | None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._lifecycle: asyncio.Task[None] | None = None  # reconnect loop or close notification
        self._starting: asyncio.Task[_Session] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- public surface ---------------------------------------------------------------------------
    @property
    def state(self) -> HubConnectionState:
        return self._state

    @property
    def connection_id(self) -> str | None:
        """The public id from the current negotiate (new after every reconnect)."""
        return self._session.connection_id if self._session is not None else None

    @property
    def transport_type(self) -> TransportType | None:
        return self._session.transport_type if self._session is not None else None

    def on(self, target: str, handler: Callback) -> None:
        """Call ``handler(*arguments)`` for every server invocation of ``target`` (any case)."""
        self._handlers.setdefault(target.lower(), []).append(handler)

    def off(self, target: str, handler: Callback | None = None) -> None:
        handlers = self._handlers.get(target.lower(), [])
        if handler is None:
            handlers.clear()
        elif handler in handlers:
            handlers.remove(handler)

    def on_reconnecting(self, callback: Callback) -> None:
        """``callback(error)`` when a lost connection starts reconnecting."""
        self._on_reconnecting.append(callback)

    def on_reconnected(self, callback: Callback) -> None:
        """``callback(connection_id)`` once a reconnect attempt succeeded."""
        self._on_reconnected.append(callback)

    def on_close(self, callback: Callback) -> None:
        """``callback(error)`` when the connection ends for good (see the module doc for ``error``)."""
        self._on_close.append(callback)

    def on_state_change(self, callback: Callback) -> None:
        """``callback(old, new)`` on every :class:`HubConnectionState` change (synchronous)."""
        self._on_state.append(callback)

    async def start(self) -> None:
        """Connect (negotiate, transport, handshake); raises on failure, state back to Disconnected."""
        if self._state is not HubConnectionState.DISCONNECTED:
            raise RuntimeError(f"cannot start a connection that is {self._state.value}")
        self._set_state(HubConnectionState.CONNECTING)
        self._starting = asyncio.ensure_future(self._open_session())
        try:
            session = await self._starting
        except asyncio.CancelledError:
            self._set_state_if(HubConnectionState.CONNECTING, HubConnectionState.DISCONNECTED)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise ConnectionLostError("stop() was called while starting") from None
        except BaseException:
            self._set_state_if(HubConnectionState.CONNECTING, HubConnectionState.DISCONNECTED)
            raise
        finally:
            self._starting = None
        if self._state is not HubConnectionState.CONNECTING or session.ended:  # stopped or lost meanwhile
            self._set_state_if(HubConnectionState.CONNECTING, HubConnectionState.DISCONNECTED)
            await self._teardown(session, session.end_reason)
            raise ConnectionLostError(f"the connection ended while starting: {session.end_reason}")
        self._session = session
        self._set_state(HubConnectionState.CONNECTED)

    async def stop(self) -> None:
        """Send a Close, end the transport, stop reconnecting; ``on_close(None)`` fires."""
        if self._state in (HubConnectionState.DISCONNECTED, HubConnectionState.DISCONNECTING):
            return
        self._set_state(HubConnectionState.DISCONNECTING)
        current = asyncio.current_task()
        for task in (self._starting, self._lifecycle):
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        session, self._session = self._session, None
        if session is not None:
            if not session.ended:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._send_message(session, Close()), 2)
                session.ended = True
                session.end_reason = ConnectionLostError("the connection was stopped")
            await self._teardown(session, session.end_reason)
        self._set_state(HubConnectionState.DISCONNECTED)
        await self._notify(self._on_close, None)
        await self._stop_dispatcher()
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def invoke(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call a hub method and wait for its Completion: its result, or HubInvocationError."""
        session = self._connected_session()
        try:
            invocation_id, data = session.protocol.invoke(method, list(args), time.monotonic())
        except LocalProtocolError as exc:
            raise ConnectionLostError(f"the connection is {session.protocol.state.value}") from exc
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        session.futures[invocation_id] = future
        try:
            await self._send_raw(session, data)
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        finally:
            session.futures.pop(invocation_id, None)
            session.protocol.forget(invocation_id)

    async def send(self, method: str, *args: Any) -> None:
        """A non-blocking invocation: no invocation id, no Completion."""
        await self._send_message(self._connected_session(), Invocation(method, list(args)))

    # -- state --------------------------------------------------------------------------------
    def _set_state(self, new: HubConnectionState) -> None:
        old, self._state = self._state, new
        if old is new:
            return
        log.debug("%s: %s -> %s", self.name, old.value, new.value)
        for callback in list(self._on_state):
            try:
                callback(old, new)
            except Exception:
                log.exception("%s: state callback failed", self.name)

    def _set_state_if(self, expected: HubConnectionState, new: HubConnectionState) -> None:
        if self._state is expected:
            self._set_state(new)

    def _connected_session(self) -> _Session:
        session = self._session
        if self._state is not HubConnectionState.CONNECTED or session is None or session.ended:
            raise ConnectionLostError(f"the connection is {self._state.value}, not Connected")
        return session

    async def _notify(self, callbacks: list[Callback], *args: Any) -> None:
        for callback in list(callbacks):
            try:
                await _call(callback, *args)
            except Exception:
                log.exception("%s: callback %r failed", self.name, callback)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{self.name}: {name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- connecting -----------------------------------------------------------------------------
    async def _token(self) -> str | None:
        if self._token_factory is None:
            return None
        return await _call(self._token_factory)

    def _ensure_http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
            self._own_http = True
        return self._http

    async def _negotiate(self, url: URL, headers: dict[str, str]
                         ) -> tuple[URL, NegotiateResult, dict[str, str]]:
        """POSTs for the core's :class:`Negotiation` until it has a result (redirects included)."""
        http = self._ensure_http()
        authorization = headers.get("Authorization", "")
        token = authorization[len("Bearer "):] if authorization.startswith("Bearer ") else None
        negotiation = Negotiation(str(url), token)
        while True:
            request = negotiation.request()
            try:
                async with http.post(URL(request.url, encoded=True), headers={**headers, **request.headers},
                                     timeout=aiohttp.ClientTimeout(total=self.negotiate_timeout)) as response:
                    status = response.status
                    body = await response.read() if status == 200 else b""
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise NegotiationError(f"negotiate failed: {exc}") from exc
            result = negotiation.receive_response(status, body)
            if result is not None:
                return URL(negotiation.hub_url), result, {**headers, **negotiation.headers}

    async def _open_session(self) -> _Session:
        self._ensure_dispatcher()
        token = await self._token()
        headers = dict(self._headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        offered_error: BaseException | None = None
        url, result, headers = await self._negotiate(self.url, headers)
        tried: set[TransportType] = set()
        while True:
            known = {m.value for m in TransportType}
            offered = [TransportType.parse(t["transport"]) for t in result.transports
                       if t["transport"] in known and "Text" in t["transferFormats"]]
            choice = next((t for t in offered if t in self._transports and t not in tried), None)
            if choice is None:
                raise offered_error or TransportError(
                    f"none of the transports {[t.value for t in self._transports]} is offered "
                    f"(server offers {[t.value for t in offered]})")
            tried.add(choice)
            transport = TRANSPORTS[choice](self._ensure_http())
            connect_headers = dict(headers)
            if not self.send_token_on_connect:
                connect_headers.pop("Authorization", None)
            conn_url = URL(connection_url(str(url), result), encoded=True)
            try:
                await transport.connect(conn_url, connect_headers)
            except TransportError as exc:
                log.info("%s: %s failed to start: %s", self.name, choice.value, exc)
                offered_error = exc
                if not any(t in self._transports and t not in tried for t in offered):
                    raise
                url, result, headers = await self._negotiate(self.url, headers)  # a fresh connection
                continue
            break
        protocol = ClientSession("json", 1, keep_alive_interval=self.keep_alive_interval,
                                 server_timeout=self.server_timeout,
                                 handshake_timeout=self.handshake_timeout,
                                 inherent_keep_alive=transport.inherent_keep_alive)
        session = _Session(transport, result.connection_id, choice, protocol)
        try:
            session.tasks.append(asyncio.ensure_future(self._receive_loop(session)))
            await self._send_raw(session, protocol.initiate_handshake(time.monotonic()))
            # The session's deadlines from here on: handshake timeout, then Ping and server timeout.
            session.tasks.append(asyncio.ensure_future(self._timers(session)))
            await asyncio.shield(session.handshake)
            if session.ended:
                raise session.end_reason or ConnectionLostError("the connection ended during the handshake")
            if not transport.inherent_keep_alive:
                await self._send_message(session, Ping())  # as the TS client does after the handshake
        except BaseException as exc:
            session.ended = True
            await self._teardown(session, exc)
            raise
        log.info("%s: connected over %s (connection id %s)", self.name, choice.value, session.connection_id)
        return session

    # -- receiving, keep-alive, timeouts ----------------------------------------------------------
    async def _receive_loop(self, session: _Session) -> None:
        reason: BaseException | None = None
        allow_reconnect = True
        try:
            async for data in session.transport.receive():
                try:
                    events = session.protocol.receive_data(data, time.monotonic())
                except ProtocolError as exc:
                    reason = exc
                    break
                reason = self._handle_events(session, events)
                if reason is not None:
                    allow_reconnect = not isinstance(reason, ServerClosedError) or reason.allow_reconnect
                    break
            else:
                session.protocol.receive_data(None, time.monotonic())  # TransportLost
                reason = ConnectionLostError("the server closed the transport")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = exc if isinstance(exc, HubClientError) else TransportError(str(exc))
        if reason is None:
            reason = ConnectionLostError("the server closed the transport")
        self._session_lost(session, reason, allow_reconnect)

    def _handle_events(self, session: _Session, events: list[Event]) -> BaseException | None:
        """Act on the session's events; the reason the connection ended, if one ended it."""
        for event in events:
            if isinstance(event, HandshakeCompleted):
                if not session.handshake.done():
                    session.handshake.set_result(None)
            elif isinstance(event, HandshakeRejected):
                return HandshakeError(event.error)
            elif isinstance(event, Closed):
                return ServerClosedError(event.error, event.allow_reconnect)
            elif isinstance(event, InvocationReceived):
                assert self._events is not None
                self._events.put_nowait((session, event.invocation))
            elif isinstance(event, CompletionReceived):
                future = session.futures.pop(event.invocation_id, None)
                if future is None or future.done():
                    continue  # the caller gave up waiting (timeout or cancellation)
                if event.error is not None:
                    future.set_exception(HubInvocationError(event.target, event.error))
                else:
                    future.set_result(event.result)
            elif isinstance(event, UnmatchedCompletion):
                log.warning("%s: Completion for unknown invocation %s", self.name,
                            event.completion.invocation_id)
            # Pings reset the server timeout inside the session; stream messages, Ack and
            # Sequence are nothing this client asked for.
        return None

    async def _timers(self, session: _Session) -> None:
        """Sleep until the session's next deadline; send the Ping it asks for, or end on timeout."""
        while not session.ended:
            deadline = session.protocol.next_deadline()
            if deadline is None:
                return
            wait = deadline - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            for event in session.protocol.tick(time.monotonic()):
                if isinstance(event, PingDue):
                    try:
                        await self._send_message(session, Ping())
                    except HubClientError:
                        return
                elif isinstance(event, ServerTimeout):
                    log.warning("%s: %s", self.name, SERVER_TIMEOUT_TEXT)
                    self._session_lost(session, ServerTimeoutError(event.message), True)
                    return
                elif isinstance(event, HandshakeTimeout):
                    error = HandshakeError("the server did not answer the handshake in time")
                    self._session_lost(session, error, True)
                    return

    # -- sending --------------------------------------------------------------------------------
    async def _send_message(self, session: _Session, message: HubMessage) -> None:
        if session.ended:
            raise ConnectionLostError(f"the connection has ended: {session.end_reason}")
        try:
            data = session.protocol.send(message, time.monotonic())
        except LocalProtocolError as exc:
            if session.protocol.state in (ClientState.CLOSED, ClientState.ERROR):
                raise ConnectionLostError(f"the connection has ended: {exc}") from exc
            raise
        await self._send_raw(session, data)

    async def _send_raw(self, session: _Session, data: bytes) -> None:
        if session.ended:
            raise ConnectionLostError(f"the connection has ended: {session.end_reason}")
        async with session.send_lock:
            try:
                await session.transport.send(data)
            except HubClientError as exc:
                self._session_lost(session, exc, True)
                raise ConnectionLostError(str(exc)) from exc

    # -- event dispatch -------------------------------------------------------------------------
    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._events = asyncio.Queue()
            self._dispatcher = asyncio.ensure_future(self._dispatch_loop(self._events))
            self._dispatcher.set_name(f"{self.name}: dispatcher")

    async def _stop_dispatcher(self) -> None:
        if self._dispatcher is not None and self._events is not None:
            self._events.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._dispatcher), 5)
            if not self._dispatcher.done():
                self._dispatcher.cancel()
        self._dispatcher = None

    async def _dispatch_loop(self, queue: asyncio.Queue[tuple[_Session, Invocation] | None]) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            session, invocation = item
            await self._dispatch(session, invocation)

    async def _dispatch(self, session: _Session, invocation: Invocation) -> None:
        handlers = list(self._handlers.get(invocation.target.lower(), []))
        if not handlers:
            log.warning("%s: no client method with the name '%s' found", self.name, invocation.target)
        result: Any = None
        error: str | None = None
        for handler in handlers:
            try:
                result = await _call(handler, *invocation.arguments)
            except Exception as exc:
                log.exception("%s: handler for %s failed", self.name, invocation.target)
                error = f"Client threw an exception: {exc}"
        if invocation.invocation_id is None or session.ended:
            return
        if not handlers:
            error = "Client didn't provide a result."
        completion = (Completion(invocation.invocation_id, error=error) if error is not None
                      else Completion(invocation.invocation_id, result=result))
        with contextlib.suppress(HubClientError):
            await self._send_message(session, completion)

    # -- losing a connection and reconnecting -----------------------------------------------------
    def _session_lost(self, session: _Session, reason: BaseException, allow_reconnect: bool) -> None:
        if session.ended:
            return
        session.ended = True
        session.end_reason = reason
        if not session.handshake.done():
            session.handshake.set_exception(reason)
            session.handshake.exception()  # retrieved: no "never retrieved" warning
        self._spawn(self._teardown(session, reason), "teardown")
        if session is not self._session:
            return  # still starting: start() sees ``ended``; or an old session
        self._session = None
        if self._state is not HubConnectionState.CONNECTED:
            return
        log.info("%s: connection lost: %s", self.name, reason)
        if allow_reconnect and self.reconnect_policy is not None:
            self._lifecycle = self._spawn(self._reconnect(reason), "reconnect")
        else:
            self._set_state(HubConnectionState.DISCONNECTED)
            self._lifecycle = self._spawn(self._notify(self._on_close, reason), "close")

    async def _teardown(self, session: _Session, reason: BaseException | None) -> None:
        current = asyncio.current_task()
        for task in session.tasks:
            if task is not current and not task.done():
                task.cancel()
        for future in session.futures.values():
            if not future.done():
                future.set_exception(ConnectionLostError(f"the connection ended: {reason}"))
        session.futures.clear()
        await session.transport.close()
        for task in session.tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _reconnect(self, reason: BaseException) -> None:
        schedule = RetrySchedule(self.reconnect_policy, time.monotonic(), reason)
        delay = schedule.next_delay(time.monotonic())
        if delay is None:
            self._set_state(HubConnectionState.DISCONNECTED)
            await self._notify(self._on_close, reason)
            return
        self._set_state(HubConnectionState.RECONNECTING)
        log.info("%s: reconnecting (%s)", self.name, reason)
        await self._notify(self._on_reconnecting, reason)
        while delay is not None:
            if self._state is not HubConnectionState.RECONNECTING:
                return
            if delay > 0:
                await asyncio.sleep(delay)
            if self._state is not HubConnectionState.RECONNECTING:
                return
            try:
                session = await self._open_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: reconnect attempt %d failed: %s", self.name, schedule.attempts, exc)
                failure: BaseException | None = exc
            else:
                if self._state is not HubConnectionState.RECONNECTING:
                    await self._teardown(session, None)
                    return
                if not session.ended:
                    self._session = session
                    self._set_state(HubConnectionState.CONNECTED)
                    log.info("%s: reconnected after %d attempt(s)", self.name, schedule.attempts)
                    await self._notify(self._on_reconnected, session.connection_id)
                    return
                failure = session.end_reason  # lost again before we could use it: a failed attempt
            if self._state is not HubConnectionState.RECONNECTING:
                return
            delay = schedule.next_delay(time.monotonic(), failure)
        log.info("%s: reconnect retries exhausted after %d attempt(s)", self.name, schedule.attempts)
        self._set_state(HubConnectionState.DISCONNECTED)
        last_error = schedule.last_error
        await self._notify(self._on_close, ReconnectExhaustedError(schedule.attempts, last_error))


__all__ = [
    "DEFAULT_RECONNECT_DELAYS",
    "CallablePolicy",
    "ConnectionLostError",
    "DelayListPolicy",
    "ExponentialBackoffPolicy",
    "HandshakeError",
    "HubClientError",
    "HubConnection",
    "HubConnectionState",
    "HubInvocationError",
    "LongPollingTransport",
    "MAX_REDIRECTS",
    "NegotiationError",
    "ReconnectExhaustedError",
    "RetryContext",
    "RetryPolicy",
    "ServerClosedError",
    "ServerSentEventsTransport",
    "ServerTimeoutError",
    "Transport",
    "TransportError",
    "TransportType",
    "WebSocketTransport",
    "as_retry_policy",
]
