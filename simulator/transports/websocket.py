"""WebSockets transport: full duplex; frame type follows the negotiated protocol.

JSON goes out in Text frames and MessagePack in Binary frames, the handshake response included
(the TS client in Node cannot parse JSON from a Binary frame). The handshake is accepted in
either frame type because the TS client sends it as text even for MessagePack.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from simulator.hubs.connection import CloseMode, ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime

# aiohttp closes with 1009 above this; keep it well above the hub's own limit so the hub answers
# oversized messages with a SignalR Close instead.
FRAME_LIMIT_FACTOR = 4


async def serve(request: web.Request, hub: HubLifetime, conn: ServerHubConnection) -> web.StreamResponse:
    # heartbeat=None: signalrcore never answers WebSocket pings; autoping answers pysignalr's.
    ws = web.WebSocketResponse(
        autoping=True,
        heartbeat=None,
        max_msg_size=hub.options.max_message_size * FRAME_LIMIT_FACTOR,
    )
    await ws.prepare(request)
    conn.attach(TransportKind.WEBSOCKETS)
    hub.recorder.record("transport_start", hub=hub.path, **conn.describe())
    writer = asyncio.create_task(_write(ws, request, conn))
    reason = "client closed the WebSocket"
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await hub.receive(conn, msg.data.encode("utf-8"), binary=False)
            elif msg.type is WSMsgType.BINARY:
                await hub.receive(conn, msg.data, binary=True)
            elif msg.type is WSMsgType.ERROR:
                reason = f"WebSocket error: {ws.exception()}"
                break
    finally:
        if conn.closing is not None:
            reason = conn.closing.reason
        hub.remove(conn, reason)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(writer, timeout=5)
        if not writer.done():
            writer.cancel()
    return ws


async def _write(ws: web.WebSocketResponse, request: web.Request, conn: ServerHubConnection) -> None:
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
                if conn.protocol.is_binary:
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data.decode("utf-8"))
            if closing is not None and not conn.has_outbound:
                await ws.close(code=1000)
                return
    except (ConnectionError, RuntimeError) as exc:
        conn.request_close(CloseMode.ABORT, f"send failed: {exc}")
        if transport is not None:
            transport.abort()
