"""The HTTP/1.1 client the webhook dispatcher POSTs with: one keep-alive connection, one request at a time.

Why not ``aiohttp.ClientSession.post``: a webhook POST is always the same shape (a small body
with a Content-Length, a response whose body nobody reads), and aiohttp's general client spends
~125 µs of CPU per request on that (URL and header merging, cookies, tracing, a request and a
response object, a payload writer); on the 2-core machines this harness runs on, that alone kept
signed deliveries below a bare aiohttp POST loop. Here the request head is bytes built once per
delivery, and the response is parsed by :class:`ResponseReader` (sans-I/O: bytes in, a status
out; no sockets, no clock), so a request costs ~30 µs.

Why not h11, the well-kept sans-I/O HTTP/1.1 library the project would otherwise take: it was
tried for both sides of this client and for the response side only, and measured with
``benchmarks/bench_webhooks.py`` (figures in ``benchmarks/README.md``, webhook section). Its
state machine costs ~30 µs of CPU per request/response cycle on its own (two ``send`` calls,
two ``next_event`` calls and ``start_next_cycle``, each through its event and state bookkeeping)
against ~5 µs for this reader, and 55-100 µs more per delivery inside the dispatcher: even with
h11 reading the answers only, the dispatcher's CPU efficiency against the bare aiohttp loop
(bare CPU per delivery / the dispatcher's) fell from 1.42× to 0.86× and its deliveries/s ratio
from 1.15× to 0.66× (medians over the same runs).

What the reader accepts, so that any real receiver works: ``HTTP/1.0`` and ``HTTP/1.1``;
informational ``1xx`` answers before the final one (skipped); bodies framed by
``Content-Length``, by ``Transfer-Encoding: chunked`` (extensions and trailers skipped) or by
the end of the connection; ``204``/``304`` without a body. The body is discarded as it arrives
(never stored). A connection is reused only when the answer allows it (HTTP/1.1 without
``Connection: close``, or HTTP/1.0 with ``keep-alive``) and was fully read. Anything malformed,
a head over :data:`MAX_HEAD` bytes or conflicting lengths is a :class:`ResponseError`, and the
connection is dropped. Redirects are answers like any other: never followed.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

MAX_HEAD = 64 * 1024  # status line + headers (aiohttp's and h11's defaults are of this order)
_MAX_CHUNK_LINE = 4096

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseError(Exception):
    """The receiver's answer is not valid HTTP/1.x (the connection cannot be reused)."""


class ServerDisconnected(ConnectionError):
    """The connection ended before the whole answer arrived."""


class ResponseReader:
    """Sans-I/O parser of one HTTP/1.x response to a POST: feed bytes, read ``status`` when ``done``."""

    __slots__ = ("_buffer", "_state", "_remaining", "status", "keep_alive", "done", "leftover")

    def __init__(self) -> None:
        self._buffer = b""
        self._state = _HEAD
        self._remaining = 0
        self.status: int | None = None
        self.keep_alive = False
        self.done = False
        self.leftover = False  # bytes after the end of the answer: the connection is not reusable

    def feed(self, data: bytes) -> None:
        """Consume ``data``; sets ``done`` once the whole answer (body included) has arrived."""
        if self.done:
            self.leftover = self.leftover or bool(data)
            return
        if self._state == _LENGTH and not self._buffer:  # the common case: body bytes, counted
            if len(data) < self._remaining:
                self._remaining -= len(data)
                return
            data = data[self._remaining:]
            self._remaining = 0
            self._finish(data)
            return
        self._buffer += data
        self._step()

    def feed_eof(self) -> None:
        """The server closed its side: the end of a close-delimited body, else an error."""
        if self.done:
            return
        if self._state == _UNTIL_CLOSE:
            self._buffer = b""
            self.keep_alive = False
            self._state, self.done = _DONE, True
            return
        raise ServerDisconnected("the receiver closed the connection before the whole answer arrived")

    def _finish(self, rest: bytes) -> None:
        self._state, self.done = _DONE, True
        self._buffer = b""
        if rest:
            self.leftover = True

    def _step(self) -> None:  # noqa: C901 - one small state machine, clearer in one piece
        while not self.done:
            buffer = self._buffer
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise ResponseError(f"response head longer than {MAX_HEAD} bytes")
                    return
                if end > MAX_HEAD:
                    raise ResponseError(f"response head longer than {MAX_HEAD} bytes")
                self._buffer = buffer[end + 4:]
                self._head(buffer[:end])
            elif state == _LENGTH:
                if len(buffer) < self._remaining:
                    self._remaining -= len(buffer)
                    self._buffer = b""
                    return
                self._finish(buffer[self._remaining:])
            elif state in (_CHUNK_SIZE, _CHUNK_END, _TRAILERS):
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > (MAX_HEAD if state == _TRAILERS else _MAX_CHUNK_LINE):
                        raise ResponseError("chunk line or trailer too long")
                    return
                line, self._buffer = buffer[:end], buffer[end + 2:]
                if state == _CHUNK_SIZE:
                    size_text = line.split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        raise ResponseError(f"bad chunk size {size_text[:40]!r}") from None
                    if size < 0:
                        raise ResponseError("negative chunk size")
                    self._remaining = size
                    self._state = _CHUNK_DATA if size else _TRAILERS
                elif state == _CHUNK_END:
                    if line:
                        raise ResponseError("chunk data longer than its size")
                    self._state = _CHUNK_SIZE
                elif not line:  # the empty line after the trailers
                    self._finish(self._buffer)
            elif state == _CHUNK_DATA:
                if len(buffer) < self._remaining:
                    self._remaining -= len(buffer)
                    self._buffer = b""
                    return
                self._buffer = buffer[self._remaining:]
                self._state = _CHUNK_END
            else:  # _UNTIL_CLOSE: discard until feed_eof
                self._buffer = b""
                return

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit() \
                or rest[3:4] not in (b"", b" "):
            raise ResponseError(f"bad status line {lines[0][:80]!r}")
        status = int(code)
        if status < 100:
            raise ResponseError(f"bad status code {status}")
        if 100 <= status < 200:
            if status == 101:
                raise ResponseError("101 Switching Protocols to a POST that asked for no upgrade")
            return  # informational: the final answer follows
        length: int | None = None
        chunked = False
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise ResponseError(f"bad header line {line[:80]!r}")
            lower = name.lower()
            if lower == b"content-length":
                try:
                    n = int(value.strip())
                except ValueError:
                    raise ResponseError(f"bad Content-Length {value.strip()[:40]!r}") from None
                if n < 0 or (length is not None and n != length):
                    raise ResponseError("bad or conflicting Content-Length")
                length = n
            elif lower == b"transfer-encoding":
                chunked = value.strip().lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                connection += b"," + value.lower()
        tokens = {t.strip() for t in connection.split(b",")}
        self.status = status
        if version == b"HTTP/1.1":
            self.keep_alive = b"close" not in tokens
        else:
            self.keep_alive = b"keep-alive" in tokens
        if status in (204, 304):
            self._finish(self._buffer)
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._state, self._remaining = _LENGTH, length
            if length == 0:
                self._finish(self._buffer)
        else:
            self._state, self.keep_alive = _UNTIL_CLOSE, False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a receiver URL's requests go, and the parts of its request head that never change."""

    host: str  # to connect to (IPv6 without brackets)
    port: int
    tls: bool
    target: str  # path and query, percent-encoded
    host_header: str  # host[:port], the port only when it is not the scheme's default
    authorization: str | None = None  # Basic credentials from the URL's user info, as aiohttp sent them


class Http1Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; :meth:`request` sends one request and waits for its answer."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._reader: ResponseReader | None = None
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
        return not self.closed and self._waiter is None and self._reader is None

    # -- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:  # bytes nobody asked for: this connection cannot be trusted any more
            self.close()
            return
        try:
            reader.feed(data)
        except ResponseError as exc:
            self._fail(exc)
            return
        if reader.done:
            self._complete(reader)

    def eof_received(self) -> bool | None:
        reader = self._reader
        if reader is not None:
            try:
                reader.feed_eof()
            except ConnectionError as exc:
                self._fail(exc)
                return None
            self._complete(reader)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            error = ServerDisconnected("the receiver closed the connection before answering")
            if exc is not None:
                error.__cause__ = exc
            waiter.set_exception(error)
        self._waiter = self._reader = None

    # -- requests ----------------------------------------------------------------------------------
    async def request(self, data: bytes, timeout_at: float, loop: asyncio.AbstractEventLoop) -> int:
        """Write ``data`` (a whole request) and wait for the answer's status; TimeoutError at
        loop time ``timeout_at`` (the connection is then aborted, its answer would come too late)."""
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            raise ServerDisconnected("the connection was closed")
        reader = self._reader = ResponseReader()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_at(timeout_at, self._timed_out, waiter)
        transport.write(data)
        try:
            await waiter
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled():  # cancelled mid-request: never reuse it
                self.abort()
        status = reader.status
        assert status is not None
        return status

    def _complete(self, reader: ResponseReader) -> None:
        waiter, self._waiter, self._reader = self._waiter, None, None
        if not reader.keep_alive or reader.leftover:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(reader.status or 0)

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter, self._reader = self._waiter, None, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _timed_out(self, waiter: asyncio.Future[int]) -> None:
        if self._waiter is waiter:
            self._fail(TimeoutError())

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
