"""The HTTP/1.1 client the webhook dispatcher POSTs with: one keep-alive connection, one request at a time.

Why not ``aiohttp.ClientSession.post``: a webhook POST is always the same shape (a small body
with a Content-Length, a response whose body nobody reads), and aiohttp's general client spends
~125 µs of CPU per request on that (URL and header merging, cookies, tracing, a request and a
response object, a payload writer); on the 2-core machines this harness runs on, that alone kept
signed deliveries below a bare aiohttp POST loop.

Reading the answers is h11's job (the sans-I/O HTTP/1.1 state machine): :class:`Http1Client`
keeps one ``h11.Connection`` for the life of a TCP connection and starts a cycle on it per
request; :class:`Http1Connection` is only the asyncio shell around it (sockets, TLS, the
per-request deadline). The request itself is bytes built once per delivery
(:func:`post_request`: a POST with a Content-Length, nothing for a library to decide) and re-sent
as is by retries and the duplicate.

What is accepted, so that any real receiver works: everything h11 accepts (``HTTP/1.0`` and
``HTTP/1.1``; bodies framed by ``Content-Length``, by ``Transfer-Encoding: chunked`` or by the
end of the connection; ``204``/``304`` without a body); informational ``1xx`` answers before the
final one are skipped; the body is discarded as it arrives. A connection is reused only when h11
says the cycle can restart (HTTP/1.1 without ``Connection: close`` on either side, whole answer
read) and nothing arrived after the answer. Anything malformed, a head over :data:`MAX_HEAD`
bytes, or a ``101`` nobody asked for is a :class:`ResponseError`, and the connection is dropped.
Redirects are answers like any other: never followed.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import h11

MAX_HEAD = 64 * 1024  # the most of an answer h11 may buffer without completing an event (its default: 16 KiB)

# What h11 is told each request was: the answer to a POST is read the same whatever its headers
# and body (it depends on the method, on keep-alive, which neither side of ours turns off, and on
# ``Expect: 100-continue``, which only relaxes h11's checks), so h11 reads the answers while the
# bytes on the wire are :func:`post_request`'s: building a validated ``h11.Request`` per delivery
# and serialising it per attempt cost ~15 µs of CPU per delivery, a tenth of the whole budget.
_STAND_IN = h11.Request(method=b"POST", target=b"/", headers=[(b"Host", b"webhook")])
_END = h11.EndOfMessage()


class ResponseError(Exception):
    """The receiver's answer is not valid HTTP/1.x (the connection cannot be reused)."""


class ServerDisconnected(ConnectionError):
    """The connection ended before the whole answer arrived."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a receiver URL's requests go, and the parts of its request head that never change."""

    host: str  # to connect to (IPv6 without brackets)
    port: int
    tls: bool
    target: str  # path and query, percent-encoded
    host_header: str  # host[:port], the port only when it is not the scheme's default
    authorization: str | None = None  # Basic credentials from the URL's user info, as aiohttp sent them


def post_request(endpoint: Endpoint, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The whole POST: ``headers`` (already free of CR, LF and NUL) plus Host and Content-Length,
    UTF-8 encoded. Built once per delivery; retries and the duplicate re-send these bytes."""
    head = "".join([f"POST {endpoint.target} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n",
                    *[f"{name}: {value}\r\n" for name, value in headers],
                    f"Content-Length: {len(body)}\r\n\r\n"])
    return head.encode("utf-8") + body


class Http1Client:
    """The sans-I/O half of one connection: bytes of a request out, bytes of its answer in, a status.

    :meth:`send` returns what to write; :meth:`receive` (``b""`` = the server closed its side)
    returns the final status once the whole answer has been read, ``None`` while more is needed;
    afterwards :attr:`reusable` says whether the next :meth:`send` may follow on this connection.
    """

    __slots__ = ("_h11", "_status")

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._status = 0

    @property
    def reusable(self) -> bool:
        """Idle between cycles (the last answer allowed keep-alive and was read to its end)."""
        return self._h11.our_state is h11.IDLE

    def send(self, request: bytes) -> bytes:
        """Start a cycle for ``request`` (:func:`post_request`'s bytes) and return what to write;
        h11 raises LocalProtocolError when not :attr:`reusable`."""
        connection = self._h11
        connection.send(_STAND_IN)
        connection.send(_END)
        return request

    def receive(self, data: bytes) -> int | None:
        """Feed what arrived; the status once the answer (body included) is complete, else ``None``.

        Raises :class:`ResponseError` for a malformed answer and :class:`ServerDisconnected` when
        the server closed the connection (``data == b""``) before the answer's end."""
        connection = self._h11
        connection.receive_data(data)
        try:
            while True:
                event = connection.next_event()
                kind = type(event)
                if kind is h11.Response:
                    self._status = event.status_code  # type: ignore[union-attr]
                elif kind is h11.EndOfMessage:
                    break
                elif event is h11.NEED_DATA:
                    return None
                # otherwise Data (discarded) or InformationalResponse (the final answer follows)
        except h11.RemoteProtocolError as exc:
            if not data:
                raise ServerDisconnected(f"the receiver closed the connection early ({exc})") from exc
            raise ResponseError(str(exc)) from exc
        if connection.their_state is h11.DONE and connection.our_state is h11.DONE \
                and not connection.trailing_data[0]:
            connection.start_next_cycle()  # else MUST_CLOSE, or bytes nobody asked for: not reusable
        return self._status


class Http1Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; :meth:`request` sends one request and waits for its answer."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._client = Http1Client()
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False
        self.idle_since = 0.0  # loop time it was last given back to a pool

    @classmethod
    async def open(cls, endpoint: Endpoint, ssl_context: ssl.SSLContext | None) -> Http1Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            cls, endpoint.host, endpoint.port,
            ssl=ssl_context if endpoint.tls else None,
            server_hostname=endpoint.host if endpoint.tls else None)
        return protocol

    @property
    def reusable(self) -> bool:
        return not self.closed and self._waiter is None and self._client.reusable

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: this connection cannot be trusted any more
            self.close()
            return
        self._receive(data)

    def eof_received(self) -> bool | None:
        if self._waiter is not None:
            self._receive(b"")
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            error = ServerDisconnected("the receiver closed the connection before answering")
            if exc is not None:
                error.__cause__ = exc
            waiter.set_exception(error)

    # -- requests ----------------------------------------------------------------------------------
    async def request(self, request: bytes, timeout_at: float, loop: asyncio.AbstractEventLoop) -> int:
        """Send ``request`` and wait for the answer's status; TimeoutError at loop time
        ``timeout_at`` (the connection is then aborted, its answer would come too late)."""
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            raise ServerDisconnected("the connection was closed")
        data = self._client.send(request)
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(timeout_at, self._timed_out, waiter)
        transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled():  # cancelled mid-request: never reuse it
                self.abort()

    def _receive(self, data: bytes) -> None:
        try:
            status = self._client.receive(data)
        except (ResponseError, ServerDisconnected) as exc:
            waiter, self._waiter = self._waiter, None
            self.abort()
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return
        if status is not None:
            waiter, self._waiter = self._waiter, None
            if not self._client.reusable:
                self.close()
            if waiter is not None and not waiter.done():
                waiter.set_result(status)

    def _timed_out(self, waiter: asyncio.Future[int]) -> None:
        if self._waiter is waiter:
            self._waiter = None
            self.abort()
            if not waiter.done():
                waiter.set_exception(TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
