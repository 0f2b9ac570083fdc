"""WebSockets transport: full duplex; frame type follows the negotiated protocol.

JSON goes out in Text frames and MessagePack in Binary frames, the handshake response included
(the TS client in Node cannot parse JSON from a Binary frame). The handshake is accepted in
either frame type because the TS client sends it as text even for MessagePack.

A reader task feeds frames to the hub; a writer task drains the connection's outbox. An abort
(a client that stopped reading, a fault) cuts the TCP connection at once through
``conn.abort_transport``, since the writer may be blocked on the socket. When the
server ends the connection, the reader is stopped first and the close is done with no concurrent
reader, so aiohttp completes the closing handshake (waits for the client's Close frame) instead
of cutting the TCP connection, which the TS client would report as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from aiohttp import WSMsgType, web

from simulator.hubs.connection import CloseMode, ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime
from simulator.recorder import RecordKind

# aiohttp closes with 1009 above this; keep it well above the hub's own limit so the hub answers
# oversized messages with a SignalR Close instead.
FRAME_LIMIT_FACTOR = 4
# How long the server waits for the client's Close frame (ASP WebSockets.CloseTimeout).
CLOSE_TIMEOUT = 5.0
# Write a message straight to the socket (no writer task) while less than this is buffered.
DIRECT_WRITE_LIMIT = 64 * 1024
_LEN16 = struct.Struct("!BBH").pack
_LEN64 = struct.Struct("!BBQ").pack
_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode; server frames are unmasked


def _frame(opcode: int, payload: bytes) -> bytes:
    """One whole unmasked WebSocket frame (what aiohttp's writer sends without compression)."""
    n = len(payload)
    if n < 126:
        return bytes((opcode, n)) + payload
    if n < 65536:
        return _LEN16(opcode, 126, n) + payload
    return _LEN64(opcode, 127, n) + payload


# The last payload framed, per frame type: (payload, frame). A broadcast hands the *same* bytes
# object to every recipient (the hub encodes once per protocol), so it is framed once, not once
# per connection. Keyed by identity (the slot holds the payload, so its id cannot be reused) and
# by frame type (one payload, e.g. a handshake response, can go out as text and as binary). Each
# slot is replaced whole, so a simulator in another thread reads an old pair or a new one, never
# a mix.
_last_framed: list[tuple[bytes, bytes]] = [(b"", b""), (b"", b"")]


def _direct_sender(ws: web.WebSocketResponse, request: web.Request, conn: ServerHubConnection):
    """The fast path of :meth:`ServerHubConnection.enqueue`: frame the payload (server frames
    are unmasked; only used without permessage-deflate) and write it to the transport at once,
    unless the WebSocket is closing or the socket is pushing back. It runs once per recipient of
    every event, so it does only what one frame needs."""
    transport = request.transport
    protocol = conn.protocol

    def send(payload: bytes) -> bool:
        if ws.closed or transport is None or transport.is_closing() \
                or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
            return False
        binary = protocol.is_binary
        payload_framed, frame = _last_framed[binary]
        if payload_framed is not payload:
            frame = _frame(_BINARY if binary else _TEXT, payload)
            _last_framed[binary] = (payload, frame)
        transport.write(frame)
        return True

    return send


async def serve(request: web.Request, hub: HubLifetime, conn: ServerHubConnection) -> web.StreamResponse:
    # heartbeat=None: signalrcore never answers WebSocket pings; autoping answers pysignalr's.
    ws = web.WebSocketResponse(
        autoping=True,
        heartbeat=None,
        timeout=CLOSE_TIMEOUT,
        max_msg_size=hub.options.max_message_size * FRAME_LIMIT_FACTOR,
    )
    await ws.prepare(request)
    conn.attach(TransportKind.WEBSOCKETS)
    if request.transport is not None:
        conn.abort_transport = request.transport.abort
    if not ws.compress:
        conn.direct_send = _direct_sender(ws, request, conn)
    hub.recorder.record(RecordKind.TRANSPORT_START, hub=hub.path, **conn.describe())
    reader = asyncio.create_task(_read(ws, hub, conn))
    writer = asyncio.create_task(_write(ws, request, conn))
    reason = "client closed the WebSocket"
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            reason = reader.result() or reason
            conn.request_close(CloseMode.GRACEFUL, reason)  # flush what is queued, then stop
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), timeout=CLOSE_TIMEOUT)
        else:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            closing = conn.closing
            if closing is not None and closing.mode is not CloseMode.ABORT and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                    await ws.close(code=1000)
    finally:
        conn.direct_send = None
        conn.abort_transport = None
        for task in (reader, writer):
            if not task.done():
                task.cancel()
        if conn.closing is not None:
            reason = conn.closing.reason
        hub.remove(conn, reason)
    return ws


async def _read(ws: web.WebSocketResponse, hub: HubLifetime, conn: ServerHubConnection) -> str | None:
    """Feed frames to the hub until the client closes; returns why reading stopped."""
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await hub.receive(conn, msg.data.encode("utf-8"), binary=False)
        elif msg.type is WSMsgType.BINARY:
            await hub.receive(conn, msg.data, binary=True)
        elif msg.type is WSMsgType.ERROR:
            return f"WebSocket error: {ws.exception()}"
        if conn.closing is not None:
            # The hub wants this connection ended (protocol error, client Close): let the
            # writer flush and close; stop reading so the close needs no concurrent reader.
            await asyncio.Event().wait()
    return None


async def _write(ws: web.WebSocketResponse, request: web.Request, conn: ServerHubConnection) -> None:
    """Drain the outbox until a close is requested and everything queued is sent."""
    transport = request.transport
    try:
        while True:
            await conn.wait_outbound()
            closing = conn.closing
            if closing is not None and closing.mode is CloseMode.ABORT:
                if transport is not None:
                    transport.abort()
                return
            payloads = conn.drain()
            if payloads:
                data = b"".join(payloads)  # several messages may share one frame
                conn.writing(True)
                if conn.protocol.is_binary:
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data.decode("utf-8"))
                conn.writing(False)
            if closing is not None and not conn.has_outbound:
                return
    except (ConnectionError, RuntimeError) as exc:
        conn.request_close(CloseMode.ABORT, f"send failed: {exc}")
        if transport is not None:
            transport.abort()
