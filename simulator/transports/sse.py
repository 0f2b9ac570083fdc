"""Server-Sent Events transport: server to client only, Text (JSON) only.

Follows ASP's ServerSentEventsServerTransport: write ``:\\r\\n`` at once so EventSource fires
``open``, then each write as one event whose every line is prefixed ``data: ``.
"""

from __future__ import annotations

from aiohttp import web

from simulator.hubs.connection import CloseMode, ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime
from simulator.recorder import RecordKind

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache,no-store",
    "Pragma": "no-cache",
    "Content-Encoding": "identity",
    "X-Accel-Buffering": "no",
}


def format_event(payload: bytes) -> bytes:
    lines = payload.split(b"\n")
    return b"".join(b"data: " + line + b"\r\n" for line in lines) + b"\r\n"


async def serve(request: web.Request, hub: HubLifetime, conn: ServerHubConnection) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=HEADERS)
    await response.prepare(request)
    conn.attach(TransportKind.SERVER_SENT_EVENTS)
    if request.transport is not None:
        # An abort must not wait for a write blocked on a client that stopped reading.
        conn.abort_transport = request.transport.abort
    hub.recorder.record(RecordKind.TRANSPORT_START, hub=hub.path, **conn.describe())
    reason = "client dropped the event stream"
    try:
        await response.write(b":\r\n")
        while True:
            await conn.wait_outbound()
            closing = conn.closing
            if closing is not None and closing.mode is CloseMode.ABORT:
                if request.transport is not None:
                    request.transport.abort()
                break
            payloads = conn.drain()
            if payloads:
                conn.writing(True)
                await response.write(b"".join(format_event(payload) for payload in payloads))
                conn.writing(False)
            if closing is not None and not conn.has_outbound:
                break
    except (ConnectionError, RuntimeError):
        pass
    finally:
        conn.abort_transport = None
        if conn.closing is not None:
            reason = conn.closing.reason
        hub.remove(conn, reason)
    return response
