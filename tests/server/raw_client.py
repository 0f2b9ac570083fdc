"""A bare-bones SignalR client made of aiohttp and our own protocol core.

It can say things no polite client says (garbage handshakes, oversized frames, wrong frame
types), which is what the bad-input tests need. The protocol core is the same one the server uses.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from conduit_core.signalr import HubProtocolConnection, Role
from conduit_core.signalr.messages import HubMessage


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def negotiate(session: aiohttp.ClientSession, url: str, key: str, version: int | None = 1
                    ) -> dict[str, Any]:
    query = f"?negotiateVersion={version}" if version is not None else ""
    async with session.post(f"{url}/negotiate{query}", headers=auth(key)) as response:
        assert response.status == 200, await response.text()
        return json.loads(await response.text())


class RawHubSocket:
    """One WebSocket connection: negotiate, connect, optionally handshake."""

    def __init__(self, session: aiohttp.ClientSession, hub_url: str, key: str) -> None:
        self.session = session
        self.hub_url = hub_url
        self.key = key
        self.protocol = HubProtocolConnection(Role.CLIENT)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.negotiated: dict[str, Any] = {}

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        self.negotiated = await negotiate(self.session, self.hub_url, self.key)
        ws_url = self.hub_url.replace("http://", "ws://") + f"?id={self.negotiated['connectionToken']}"
        self.ws = await self.session.ws_connect(ws_url, headers=auth(self.key), autoping=True)
        return self.ws

    async def open(self, protocol: str = "json") -> list[Any]:
        """Connect and complete the handshake; returns what arrived with the response."""
        ws = await self.connect()
        await ws.send_str(self.protocol.initiate_handshake(protocol, 1).decode())
        return await self.receive()

    async def send(self, message: HubMessage) -> None:
        assert self.ws is not None
        data = self.protocol.send(message)
        if self.protocol.is_binary:
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data.decode())

    async def receive(self, timeout: float = 5.0) -> list[Any]:
        """The next frame's messages; ``[]`` plus ``closed`` set when the socket closed."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            return self.protocol.receive_data(msg.data)
        return []

    async def receive_until(self, predicate, timeout: float = 5.0) -> Any:
        """Messages until one satisfies ``predicate``; skips keep-alive Pings and the like."""
        assert self.ws is not None
        while True:
            for message in await self.receive(timeout):
                if predicate(message):
                    return message
            if self.ws.closed:
                raise AssertionError("socket closed before the expected message")
