"""The HTTP surface of one hub: negotiate, the transport GET, POST sends and DELETE.

Routing follows ASP's HttpConnectionDispatcher: ``POST {hub}/negotiate``; ``GET {hub}`` with an
Upgrade header is WebSockets, with ``Accept: text/event-stream`` is SSE, otherwise long polling;
``POST {hub}?id=`` carries client messages for SSE and long polling; ``DELETE`` ends a long-poll
connection. Errors use ASP's status codes and texts so clients react as they do in production.
"""

from __future__ import annotations

import json

from aiohttp import hdrs, web

from conduit_core.signalr import negotiate
from simulator.auth import KeyStore, credential_from
from simulator.hubs.connection import ServerHubConnection, TransportKind
from simulator.hubs.lifetime import HubLifetime
from simulator.recorder import RecordKind
from simulator.transports import long_polling, sse, websocket


class HubEndpoint:
    """aiohttp handlers for one hub; :meth:`routes` is the table the application mounts."""

    def __init__(self, hub: HubLifetime, keys: KeyStore) -> None:
        self.hub = hub
        self.keys = keys

    def routes(self) -> list[web.RouteDef]:
        path = self.hub.path.rstrip("/")
        return [
            web.post(path + "/negotiate", self.negotiate),
            web.get(path, self.connect, allow_head=False),
            web.post(path, self.send),
            web.delete(path, self.delete),
        ]

    # -- helpers ------------------------------------------------------------------------------
    def _authenticate(self, request: web.Request, stage: str) -> str:
        credential = credential_from(request, allow_query=True)
        key = self.keys.resolve(credential, allow_tokens=self.hub.definition.accepts_tokens)
        if key is None:
            self.hub.recorder.record(
                RecordKind.AUTH_REJECTED, hub=self.hub.path, stage=stage, method=request.method,
                reason="missing key" if credential is None else "unknown key",
            )
            raise web.HTTPUnauthorized(text="")
        return key

    def _connection(self, request: web.Request, key: str) -> ServerHubConnection:
        token = request.query.get("id")
        if not token:
            raise web.HTTPBadRequest(text="Connection ID required")
        conn = self.hub.by_token.get(token)
        if conn is None:
            raise web.HTTPNotFound(text="No Connection with that ID")
        if conn.key != key:
            # ASP refuses a connection used by another user than the one that negotiated it.
            raise web.HTTPForbidden(text="Forbidden")
        return conn

    def _refuse(self, stage: str, key: str) -> None:
        """The refuse_reconnects fault: 503 on negotiate or on the upgrade."""
        faults = getattr(self.hub.services, "faults", None)
        if faults is not None and faults.refusal(stage, key):
            self.hub.recorder.record(RecordKind.CONNECTION_REFUSED, hub=self.hub.path, stage=stage, key=key)
            raise web.HTTPServiceUnavailable(text="Service unavailable (simulated fault)")

    def _new_connection(self, key: str, version: int | None) -> ServerHubConnection:
        connection_id = negotiate.new_connection_id()
        token = negotiate.new_connection_id() if version and version >= 1 else connection_id
        conn = ServerHubConnection(
            connection_id=connection_id, token=token, key=key, negotiate_version=version,
            options=self.hub.options,
        )
        self.hub.add(conn)
        return conn

    # -- handlers -----------------------------------------------------------------------------
    async def negotiate(self, request: web.Request) -> web.Response:
        key = self._authenticate(request, "negotiate")
        self._refuse("negotiate", key)
        try:
            version = negotiate.requested_version(request.query)
        except negotiate.NegotiateError as exc:
            # ASP keeps HTTP 200 and puts the error in the body.
            return web.json_response(negotiate.error_response(str(exc)))
        conn = self._new_connection(key, version)
        body = negotiate.build_response(
            version, conn.connection_id, conn.token if version >= 1 else None,
        )
        self.hub.recorder.record(RecordKind.NEGOTIATE, hub=self.hub.path, requested=request.query.get(
            "negotiateVersion"), **conn.describe())
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def connect(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        wanted = (
            TransportKind.WEBSOCKETS if upgrade
            else TransportKind.SERVER_SENT_EVENTS
            if "text/event-stream" in request.headers.get(hdrs.ACCEPT, "")
            else TransportKind.LONG_POLLING
        )
        key = self._authenticate(request, wanted.value)
        if upgrade:
            self._refuse("upgrade", key)
        if upgrade and not request.query.get("id"):
            # skipNegotiation: the connection is made on the spot, as ASP GetOrCreateConnection.
            conn = self._new_connection(key, None)
            self.hub.recorder.record(RecordKind.SKIP_NEGOTIATION, hub=self.hub.path, **conn.describe())
        else:
            conn = self._connection(request, key)
        if conn.transport is not None and conn.transport is not wanted:
            raise web.HTTPBadRequest(
                text=f"Cannot change transports mid-connection; currently using {conn.transport.value}")
        if wanted is TransportKind.LONG_POLLING:
            return await long_polling.poll(request, self.hub, conn)
        if conn.transport is not None:
            raise web.HTTPConflict(text="Another active transport is already connected.")
        if wanted is TransportKind.WEBSOCKETS:
            return await websocket.serve(request, self.hub, conn)
        return await sse.serve(request, self.hub, conn)

    async def send(self, request: web.Request) -> web.Response:
        key = self._authenticate(request, "send")
        conn = self._connection(request, key)
        if conn.transport is TransportKind.WEBSOCKETS:
            raise web.HTTPMethodNotAllowed(
                "POST", ["GET"], text="POST requests are not allowed for WebSocket connections.")
        # No transport yet is fine: ASP buffers the body until the application starts, and
        # signalrcore's long polling POSTs its handshake before its first poll.
        body = await request.read()
        await self.hub.receive(conn, body, binary=None)
        # Empty body: signalrcore JSON-parses any non-empty reply.
        return web.Response(status=200, body=b"")

    async def delete(self, request: web.Request) -> web.Response:
        key = self._authenticate(request, "delete")
        conn = self._connection(request, key)
        if conn.transport is not TransportKind.LONG_POLLING:
            raise web.HTTPBadRequest(text="Cannot terminate this connection using the DELETE endpoint.")
        return long_polling.terminate(self.hub, conn)
