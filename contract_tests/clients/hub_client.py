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
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import inspect
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import aiohttp
from yarl import URL

from conduit_core.signalr import (
    Close,
    Completion,
    HandshakeResponse,
    HubProtocolConnection,
    Invocation,
    Ping,
    ProtocolError,
    Role,
)
from conduit_core.signalr import negotiate as negotiation
from conduit_core.signalr.messages import HubMessage

log = logging.getLogger(__name__)

SERVER_TIMEOUT_TEXT = "Server timeout elapsed without receiving a message from the server."
DEFAULT_RECONNECT_DELAYS: tuple[float, ...] = (0.0, 2.0, 10.0, 30.0)
MAX_REDIRECTS = 100  # the TS client's limit


# -- errors ---------------------------------------------------------------------------------------
class HubClientError(Exception):
    """Base class of everything this module raises about a connection."""


class NegotiationError(HubClientError):
    """Negotiate failed: a non-200 answer (``status``), an ``error`` body, or a network error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransportError(HubClientError):
    """The transport could not be opened or failed; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HandshakeError(HubClientError):
    """The server answered the handshake with an error, or never answered."""


class ConnectionLostError(HubClientError):
    """The connection ended (or was not connected) while something needed it."""


class ServerTimeoutError(ConnectionLostError):
    """Nothing was received for ``server_timeout`` seconds."""


class ServerClosedError(ConnectionLostError):
    """The server sent a Close message (``error`` and ``allow_reconnect`` as sent)."""

    def __init__(self, error: str | None, allow_reconnect: bool) -> None:
        text = f"Server returned an error on close: {error}" if error else "Server closed the connection."
        super().__init__(text)
        self.error = error
        self.allow_reconnect = allow_reconnect


class ReconnectExhaustedError(ConnectionLostError):
    """The reconnect policy gave up after ``attempts`` failed attempts; ``last_error`` is the last."""

    def __init__(self, attempts: int, last_error: BaseException | None) -> None:
        super().__init__(f"Reconnect retries have been exhausted after {attempts} failed attempt(s): "
                         f"{last_error}")
        self.attempts = attempts
        self.last_error = last_error


class HubInvocationError(HubClientError):
    """The server answered an invocation with an error Completion."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


# -- states and reconnect policies --------------------------------------------------------------
class HubConnectionState(enum.Enum):
    DISCONNECTED = "Disconnected"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    DISCONNECTING = "Disconnecting"
    RECONNECTING = "Reconnecting"


@dataclass(frozen=True)
class RetryContext:
    """What a reconnect policy is told before each attempt (the TS ``RetryContext``)."""

    previous_retry_count: int
    elapsed: float  # seconds since reconnecting began
    retry_reason: BaseException | None


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


def as_retry_policy(
    value: RetryPolicy | Sequence[float] | Callable[[RetryContext], float | None] | bool | None,
) -> RetryPolicy | None:
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
                 transport_type: TransportType) -> None:
        self.transport = transport
        self.transport_type = transport_type
        self.connection_id = connection_id
        self.protocol = HubProtocolConnection(Role.CLIENT)
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self.ids = itertools.count()
        now = time.monotonic()
        self.last_sent = now
        self.last_received = now
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
        invocation_id = str(next(session.ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        session.pending[invocation_id] = (method, future)
        try:
            await self._send_message(session, Invocation(method, list(args), invocation_id=invocation_id))
        except BaseException:
            session.pending.pop(invocation_id, None)
            raise
        if timeout is None:
            return await future
        return await asyncio.wait_for(future, timeout)

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
                         ) -> tuple[URL, negotiation.NegotiateResult, dict[str, str]]:
        http = self._ensure_http()
        for _ in range(MAX_REDIRECTS):
            path = url.path if url.path.endswith("/") else url.path + "/"
            target = url.with_path(path + "negotiate")
            if "negotiateVersion" not in target.query:
                target = target.update_query(negotiateVersion="1")
            try:
                async with http.post(target, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=self.negotiate_timeout)) as response:
                    if response.status != 200:
                        raise NegotiationError(f"negotiate failed: HTTP {response.status}", response.status)
                    body = await response.json(content_type=None)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                raise NegotiationError(f"negotiate failed: {exc}") from exc
            try:
                result = negotiation.parse_response(body)
            except negotiation.NegotiateError as exc:
                raise NegotiationError(str(exc)) from exc
            if not result.is_redirect:
                return url, result, headers
            assert result.url is not None
            url = URL(result.url)
            if result.access_token:
                headers = {**headers, "Authorization": f"Bearer {result.access_token}"}
        raise NegotiationError("negotiate redirected too many times")

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
            conn_url = url.update_query(id=negotiation.connection_url_id(result))
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
        session = _Session(transport, result.connection_id, choice)
        try:
            session.tasks.append(asyncio.ensure_future(self._receive_loop(session)))
            await self._send_raw(session, session.protocol.initiate_handshake("json", 1))
            try:
                await asyncio.wait_for(asyncio.shield(session.handshake), self.handshake_timeout)
            except TimeoutError:
                raise HandshakeError("the server did not answer the handshake in time") from None
            if session.ended:
                raise session.end_reason or ConnectionLostError("the connection ended during the handshake")
            if not transport.inherent_keep_alive:
                session.tasks.append(asyncio.ensure_future(self._keep_alive(session)))
                session.tasks.append(asyncio.ensure_future(self._watch_server_timeout(session)))
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
                session.last_received = time.monotonic()
                try:
                    events = session.protocol.receive_data(data)
                except ProtocolError as exc:
                    reason = exc
                    break
                stop = False
                for event in events:
                    if isinstance(event, HandshakeResponse):
                        if event.error is not None:
                            reason = HandshakeError(event.error)
                            stop = True
                            break
                        if not session.handshake.done():
                            session.handshake.set_result(None)
                    elif isinstance(event, Close):
                        allow_reconnect = bool(event.allow_reconnect)
                        reason = ServerClosedError(event.error, allow_reconnect)
                        stop = True
                        break
                    else:
                        self._handle_message(session, event)
                if stop:
                    break
            else:
                reason = ConnectionLostError("the server closed the transport")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = exc if isinstance(exc, HubClientError) else TransportError(str(exc))
        if reason is None:
            reason = ConnectionLostError("the server closed the transport")
        self._session_lost(session, reason, allow_reconnect)

    def _handle_message(self, session: _Session, message: HubMessage) -> None:
        if isinstance(message, Invocation):
            assert self._events is not None
            self._events.put_nowait((session, message))
        elif isinstance(message, Completion):
            entry = session.pending.pop(message.invocation_id, None)
            if entry is None:
                log.warning("%s: Completion for unknown invocation %s", self.name, message.invocation_id)
                return
            method, future = entry
            if future.done():
                return
            if message.error is not None:
                future.set_exception(HubInvocationError(method, message.error))
            else:
                future.set_result(message.result if message.has_result else None)
        # Ping: its arrival already reset the server timeout. Stream messages, Ack and Sequence:
        # nothing this client asked for.

    async def _keep_alive(self, session: _Session) -> None:
        while not session.ended:
            wait = session.last_sent + self.keep_alive_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self._send_message(session, Ping())
            except HubClientError:
                return

    async def _watch_server_timeout(self, session: _Session) -> None:
        while not session.ended:
            remaining = session.last_received + self.server_timeout - time.monotonic()
            if remaining <= 0:
                log.warning("%s: %s", self.name, SERVER_TIMEOUT_TEXT)
                self._session_lost(session, ServerTimeoutError(SERVER_TIMEOUT_TEXT), True)
                return
            await asyncio.sleep(remaining)

    # -- sending --------------------------------------------------------------------------------
    async def _send_message(self, session: _Session, message: HubMessage) -> None:
        await self._send_raw(session, session.protocol.send(message))

    async def _send_raw(self, session: _Session, data: bytes) -> None:
        if session.ended:
            raise ConnectionLostError(f"the connection has ended: {session.end_reason}")
        async with session.send_lock:
            try:
                await session.transport.send(data)
            except HubClientError as exc:
                self._session_lost(session, exc, True)
                raise ConnectionLostError(str(exc)) from exc
            session.last_sent = time.monotonic()

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
        for _method, future in session.pending.values():
            if not future.done():
                future.set_exception(ConnectionLostError(f"the connection ended: {reason}"))
        session.pending.clear()
        await session.transport.close()
        for task in session.tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _next_delay(self, count: int, started: float, reason: BaseException | None) -> float | None:
        assert self.reconnect_policy is not None
        try:
            delay = self.reconnect_policy.next_retry_delay(
                RetryContext(count, time.monotonic() - started, reason))
        except Exception:
            log.exception("%s: the reconnect policy failed; not reconnecting", self.name)
            return None
        return None if delay is None else max(0.0, float(delay))

    async def _reconnect(self, reason: BaseException) -> None:
        started = time.monotonic()
        attempts = 0
        delay = self._next_delay(0, started, reason)
        if delay is None:
            self._set_state(HubConnectionState.DISCONNECTED)
            await self._notify(self._on_close, reason)
            return
        self._set_state(HubConnectionState.RECONNECTING)
        log.info("%s: reconnecting (%s)", self.name, reason)
        await self._notify(self._on_reconnecting, reason)
        last_error: BaseException | None = reason
        while delay is not None:
            if self._state is not HubConnectionState.RECONNECTING:
                return
            if delay > 0:
                await asyncio.sleep(delay)
            if self._state is not HubConnectionState.RECONNECTING:
                return
            attempts += 1
            try:
                session = await self._open_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last_error = exc
                log.info("%s: reconnect attempt %d failed: %s", self.name, attempts, exc)
            else:
                if self._state is not HubConnectionState.RECONNECTING:
                    await self._teardown(session, None)
                    return
                if session.ended:  # lost again before we could use it: a failed attempt
                    last_error = session.end_reason
                    delay = self._next_delay(attempts, started, last_error)
                    continue
                self._session = session
                self._set_state(HubConnectionState.CONNECTED)
                log.info("%s: reconnected after %d attempt(s)", self.name, attempts)
                await self._notify(self._on_reconnected, session.connection_id)
                return
            if self._state is not HubConnectionState.RECONNECTING:
                return
            delay = self._next_delay(attempts, started, last_error)
        log.info("%s: reconnect retries exhausted after %d attempt(s)", self.name, attempts)
        self._set_state(HubConnectionState.DISCONNECTED)
        await self._notify(self._on_close, ReconnectExhaustedError(attempts, last_error))


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
