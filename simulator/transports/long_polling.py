"""Long Polling transport (ASP LongPollingServerTransport).

The first poll of a new connection answers at once with an empty 200 (the TS client waits for it
before sending the handshake). Later polls wait up to the poll timeout: 200 with everything
buffered, 200 empty on timeout, 204 when replaced by a newer poll or when the connection ended.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from simulator.hubs.connection import CloseMode, ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime
from simulator.recorder import RecordKind

NO_CACHE = {
    "Cache-Control": "no-cache, no-store",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}


def _data(body: bytes) -> web.Response:
    return web.Response(status=200, body=body, content_type="application/octet-stream",
                        headers=NO_CACHE)


async def poll(request: web.Request, hub: HubLifetime, conn: ServerHubConnection) -> web.StreamResponse:
    if conn.transport is None:
        conn.attach(TransportKind.LONG_POLLING)
        conn.idle_since = time.monotonic()
        hub.recorder.record(RecordKind.TRANSPORT_START, hub=hub.path, **conn.describe())
        return _data(b"")
    if conn.active_poll is not None and not conn.active_poll.done():
        conn.active_poll.set_result(None)  # the older poll answers 204
    this_poll: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    conn.active_poll = this_poll
    conn.idle_since = None
    try:
        waiter = asyncio.ensure_future(conn.wait_outbound(hub.options.long_poll_timeout))
        done, _ = await asyncio.wait({waiter, this_poll}, return_when=asyncio.FIRST_COMPLETED)
        if this_poll in done and not waiter.done():
            waiter.cancel()
            return web.Response(status=204, headers=NO_CACHE)
        payloads = conn.drain()
        if payloads:
            return _data(b"".join(payloads))
        if conn.closing is not None or conn.removed:
            return web.Response(status=204, headers=NO_CACHE)
        return _data(b"")
    finally:
        if conn.active_poll is this_poll:
            conn.active_poll = None
            conn.idle_since = time.monotonic()
            if conn.closing is not None and not conn.has_outbound:
                hub.remove(conn, conn.closing.reason)


def terminate(hub: HubLifetime, conn: ServerHubConnection) -> web.Response:
    """DELETE: 202, and the pending poll (if any) finishes with 204."""
    hub.recorder.record(RecordKind.CLIENT_DELETE, hub=hub.path, **conn.describe())
    conn.request_close(CloseMode.GRACEFUL, "client sent DELETE")
    hub.remove(conn, "client sent DELETE")
    return web.Response(status=202)
